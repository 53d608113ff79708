"""Throughput, peak memory and MFU of a training step at the paper's configuration, through the trainer.

By default the step is the one users run: the entry point's own ``build_task`` (from its own argument
parser), the real `engine.runner.Trainer` and its loop (`Trainer.train_epoch`: uint8 clips moved to
the device, where the task normalises them, the schedules, logging every ``--print_freq`` steps, the fused AdamW), fed with synthetic
in-memory batches shaped as ``collate_batch`` ships them. ``--isolated`` times the bare distillation
step instead (forward, backward, optimiser step on the same uint8 batch; no loop), so the loop's overhead can be read off.

    python benchmarks/bench_model.py --device cpu --batch_size 2                  # MMKD, ViT-S <- ViT-B
    python benchmarks/bench_model.py --task pretrain --device cpu --batch_size 2  # VideoMAE, same ViT-S
    python benchmarks/bench_model.py --device cuda --batch_size 64 --precision bf16

Prints one JSON line (``"step": "trainer"`` or ``"isolated"``), with the step's FLOPs (torch's FLOP
counter, forward + backward) and, on a GPU with a known 16-bit peak (or --peak_tflops), the MFU.

``--count_syncs`` times nothing: it counts the host synchronisations of every step through the
trainer (on CUDA torch's sync debug mode, elsewhere the host reads and the ops that synchronise
on a GPU) and exits 1 if a step other than the one after a log line has any.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timm  # noqa: E402

import models  # noqa: E402,F401
import run_class_finetuning  # noqa: E402
import run_mae_pretraining  # noqa: E402
import run_mmkd_distill  # noqa: E402
from common.cpu_gemm import CPU_GEMMS  # noqa: E402
from datasets import collate_batch  # noqa: E402
from datasets.masking import TubeMaskingGenerator  # noqa: E402
from engine import args as cli_args  # noqa: E402
from engine.loop import to_device  # noqa: E402
from engine.precision import autocast_context  # noqa: E402
from engine.runner import Trainer, setup  # noqa: E402

# dense (no sparsity) bf16 / fp16 tensor-core peaks in TFLOP/s, from the vendors' data sheets
PEAK_TFLOPS_16BIT = {"H200": 989.4, "H100 80GB HBM3": 989.4, "H100": 756.0, "A100": 312.0, "L40S": 362.1}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("distill", "pretrain", "finetune"), default="distill")
    p.add_argument("--isolated", action="store_true", help="the bare step, without the trainer's loop")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    p.add_argument(
        "--teacher_precision",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="the distillation teacher's precision (default: --precision), as the entry point's flag",
    )
    p.add_argument(
        "--student", default="small", help="the trained ViT: a size (small, base, ...) or a model name"
    )
    p.add_argument("--teacher", default="base", help="the distillation teacher: a size or a model name")
    p.add_argument("--num_frames", type=int, default=16)
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--mask_ratio", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--print_freq",
        type=int,
        default=10,
        help="the trainer's log cadence (the default of the entry points)",
    )
    p.add_argument("--use_checkpoint", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cpu_gemm", choices=CPU_GEMMS, default="auto", help="as the entry point's flag")
    p.add_argument("--num_k", type=int, default=10, help="MM top-k (lower it for tiny clips)")
    p.add_argument("--num_f", type=int, default=10, help="hint / relation top-k (lower it for tiny clips)")
    p.add_argument(
        "--count_syncs",
        action="store_true",
        help="count each step's host synchronisations instead of timing (exit 1 on one between log lines)",
    )
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="the device's dense peak for --precision, for the MFU (default: known GPUs' bf16/fp16 peak)",
    )
    return p.parse_args()


def reset_peak_rss() -> bool:
    """Linux: sets the process's peak RSS (VmHWM) back to its current RSS, so the peak of the timed
    steps alone can be read (the whole-process peak also holds the model build and checkpoint load)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            line = next(x for x in fh if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def peak_tflops(device: torch.device, precision: str, override: float | None) -> float | None:
    """The peak the MFU is taken against: --peak_tflops, or a known GPU's 16-bit peak."""
    if override is not None:
        return override
    if device.type != "cuda" or precision == "fp32":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS_16BIT.items() if k in name), None)


def _model_name(prefix: str, spec: str) -> str:
    """``small`` or a registered name -> ``<prefix>_small_patch16_224`` (prefix: pretrain_videomae | vit)."""
    base = spec.removeprefix("pretrain_videomae_").removeprefix("vit_")
    if "_" in base:
        return f"{prefix}_{base}"
    return f"{prefix}_{base}_{'patch16_224' if models.registry.SIZES[base][5] == 16 else 'patch8'}"


def entry_argv(b: argparse.Namespace, tmp: Path) -> tuple[str, list[str]]:
    """The entry point's mode and command line for this benchmark (data lists are stand-ins)."""
    common = [
        "--device", b.device, "--batch_size", str(b.batch_size), "--num_frames", str(b.num_frames),
        "--input_size", str(b.input_size), "--num_workers", "0", "--epochs", "1", "--warmup_epochs", "0",
        "--print_freq", str(b.print_freq), "--attn_impl", b.attn, "--precision", b.precision,
        "--cpu_gemm", b.cpu_gemm,
    ]  # fmt: skip
    common += ["--use_checkpoint"] * b.use_checkpoint + ["--compile"] * b.compile
    (tmp / "list.csv").write_text("unused.mp4 0\n")
    if b.task == "finetune":
        for split in ("train", "val", "test"):
            (tmp / f"{split}.csv").write_text("unused.mp4 0\n")
        model = _model_name("vit", b.student)
        return "finetune", [*common, "--model", model, "--data_path", str(tmp), "--nb_classes", "400"]
    model = _model_name("pretrain_videomae", b.student)
    argv = [
        *common,
        "--model",
        model,
        "--data_path",
        str(tmp / "list.csv"),
        "--mask_ratio",
        str(b.mask_ratio),
    ]
    if b.task == "pretrain":
        return "pretrain", argv
    teacher = _model_name("pretrain_videomae", b.teacher)
    kw = dict(decoder_depth=0, img_size=b.input_size, num_frames=b.num_frames)
    torch.save(
        {"model": timm.create_model(teacher, **kw).state_dict()}, tmp / "teacher.pth"
    )  # random weights
    extra = [
        "--model_t",
        teacher,
        "--path_t",
        str(tmp / "teacher.pth"),
        "--num_k",
        str(b.num_k),
        "--num_f",
        str(b.num_f),
    ]
    extra += ["--teacher_precision", b.teacher_precision] if b.teacher_precision else []
    return "distill", [*argv, *extra, "--drop_path", "0.1"]


def synthetic_batch(b: argparse.Namespace, task, mode: str) -> dict:
    """One batch as ``collate_batch`` ships it: uint8 clips (frames last in memory), masks / labels."""
    g = torch.Generator().manual_seed(0)
    items = []
    model = task.student if mode == "distill" else task.model
    for _ in range(b.batch_size):
        frames = torch.randint(
            0, 256, (b.num_frames, b.input_size, b.input_size, 3), dtype=torch.uint8, generator=g
        )
        item = {"video": frames.permute(3, 0, 1, 2), "n_bad": 0}
        if mode == "finetune":
            item["label"] = int(torch.randint(0, 400, (1,), generator=g))
        else:
            grid = (model.encoder if hasattr(model, "encoder") else model).grid_size
            item["mask"] = torch.as_tensor(TubeMaskingGenerator(grid, b.mask_ratio)())
        items.append(item)
    return collate_batch(items)


def step_flops(task, batch: dict, device: torch.device, precision: str) -> float:
    """Forward + backward FLOPs of one step (the optimiser's are negligible)."""
    task.train()
    with FlopCounterMode(display=False) as counter, autocast_context(device, precision):
        task(to_device(batch, device))["loss"].backward()
    task.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    b = parse()
    device = torch.device(b.device)
    if b.isolated and b.task != "distill":
        raise SystemExit("--isolated times the bare distillation step; use it with --task distill")
    with tempfile.TemporaryDirectory() as tmp:
        mode, argv = entry_argv(b, Path(tmp))
        args = cli_args.parse(mode, argv)
        env = setup(args)
        entry = {
            "distill": run_mmkd_distill,
            "pretrain": run_mae_pretraining,
            "finetune": run_class_finetuning,
        }[mode]
        task = entry.build_task(args, 400, device) if mode == "finetune" else entry.build_task(args)
    batch = synthetic_batch(b, task, mode)
    n = b.warmup + b.steps
    trainer = Trainer(args, env, task, [batch] * n)
    if b.count_syncs:
        sys.exit(count_syncs(trainer, b, device, mode, n))
    flops = step_flops(trainer.task, batch, device, args.run.precision)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    marks: list[float] = []

    def timer(epoch: int, done: int) -> None:
        if done in (b.warmup, n):
            sync()
            if done == b.warmup:
                reset_memory_peaks(device)
            marks.append(time.perf_counter())

    if b.isolated:
        elapsed = isolated_steps(trainer, batch, device, b, sync)
    else:
        trainer.after_step = timer  # in place of checkpoints / stop checks: the step timer
        trainer.train_epoch(0)
        elapsed = marks[-1] - marks[0]
    report(b, device, args, flops, elapsed, mode, batch)


_STEP_RSS = {"reset": False}


def reset_memory_peaks(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _STEP_RSS["reset"] = reset_peak_rss()


def isolated_steps(trainer: Trainer, batch: dict, device: torch.device, b: argparse.Namespace, sync) -> float:
    """The bare step: zero_grad, forward under autocast, backward, optimiser step (no loop, no logging)."""
    task, opt, scaler = trainer.task, trainer.optimizer, trainer.backend.scaler
    batch = to_device(batch, device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, trainer.cfg.run.precision):
            loss = task(batch)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    task.train()
    for _ in range(b.warmup):
        step()
    sync()
    reset_memory_peaks(device)
    start = time.perf_counter()
    for _ in range(b.steps):
        step()
    sync()
    return time.perf_counter() - start


def _computed(t: torch.Tensor) -> bool:
    # a computed value (float / bool), not one of the batch's integer counters (host tensors on a GPU too)
    return t.is_floating_point() or t.dtype == torch.bool


class _GpuSyncingOps(TorchDispatchMode):
    """Off CUDA: the ops that would make the host wait for a GPU (reading a value back, and the ops
    whose output size depends on the data), counted into ``seen``."""

    SHAPE_FROM_DATA = ("aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
                       "aten::unique_consecutive", "aten::equal", "aten::is_nonzero")  # fmt: skip

    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name == "aten::_local_scalar_dense":  # .item(), float(), int(), bool() of a tensor
            if _computed(args[0]):
                self.seen.append(name)
        elif name in self.SHAPE_FROM_DATA or (
            name == "aten::index" and any(t is not None and t.dtype == torch.bool for t in args[1])
        ):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def host_syncs(device: torch.device):
    """Yields a function that returns how many host synchronisations have happened inside so far."""
    if device.type == "cuda":
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield lambda: sum("synchroniz" in str(w.message) for w in caught)
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        return
    seen: list[str] = []
    tolist = torch.Tensor.tolist  # no dispatch op: counted here

    def counted_tolist(self, *a, **k):
        if _computed(self):
            seen.append("tolist")
        return tolist(self, *a, **k)

    torch.Tensor.tolist = counted_tolist
    try:
        with _GpuSyncingOps(seen):
            yield lambda: len(seen)
    finally:
        torch.Tensor.tolist = tolist


def count_syncs(trainer: Trainer, b: argparse.Namespace, device: torch.device, mode: str, n: int) -> int:
    """Each step's host syncs through the trainer; 1 if any step not right after a log line has one.

    Step i's count holds the syncs between the ends of steps i - 1 and i: the log line of step i - 1
    (the loss terms and the gradient norm read back, every ``--print_freq`` steps) falls in it.
    """
    ends: list[int] = []
    with host_syncs(device) as syncs:
        (torch.ones((), device=device) * 2).item()  # a known sync: the counter must see it
        calibrated = syncs()
        trainer.after_step = lambda *_: ends.append(syncs())
        trainer.train_epoch(0)
    if calibrated < 1:
        print(f"bench_model: the sync counter missed a known sync (.item()) on {device}; it cannot check")
        return 1
    per_step = [end - start for start, end in zip([calibrated, *ends], ends)]
    logged = [i % b.print_freq == 0 or i == n - 1 for i in range(n)]
    unexpected = [i for i in range(b.warmup, n) if per_step[i] and not (i > 0 and logged[i - 1])]
    record = {
        "bench": f"{mode}_host_syncs",
        "step": "trainer",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "counted": "cuda sync debug mode" if device.type == "cuda" else "host reads, data-dependent shapes",
        "precision": trainer.cfg.run.precision,
        "print_freq": b.print_freq,
        "steps": n,
        "syncs_per_step": per_step,
        "log_lines": sum(logged[:-1]),  # the last step's log line comes after its end
        "unexpected_steps": unexpected,
        "ok": not unexpected,
    }
    print(json.dumps(record))
    return 0 if record["ok"] else 1


def report(b, device, args, flops: float, elapsed: float, mode: str, batch: dict) -> None:
    peak_flops = peak_tflops(device, args.run.precision, b.peak_tflops)
    if device.type == "cuda":
        peak, mem_kind = torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated_MiB"
    else:
        peak, mem_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_max_rss_MiB"
    sec = elapsed / b.steps
    record = {
        "bench": f"{mode}_step",
        "step": "isolated" if b.isolated else "trainer",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}",
        "model": args.model.model,
        "teacher": args.teacher.model_t if mode == "distill" else None,
        "clip": [b.num_frames, b.input_size, b.input_size],
        "mask_ratio": b.mask_ratio if mode != "finetune" else None,
        "visible_tokens": int(batch["num_visible"]) if "num_visible" in batch else None,
        "batch_size": b.batch_size,
        "precision": args.run.precision,
        "teacher_precision": args.teacher.teacher_precision if mode == "distill" else None,
        "attn": b.attn,
        "compile": b.compile,
        "cpu_gemm": args.model.cpu_gemm if device.type == "cpu" else None,  # auto resolved by the entry point
        "print_freq": b.print_freq,
        "steps": b.steps,
        "sec_per_step": round(sec, 4),
        "clips_per_s": round(b.batch_size / sec, 3),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_tflops": round(flops / sec / 1e12, 2),
        "peak_tflops": peak_flops,
        "mfu": round(flops / sec / (peak_flops * 1e12), 4) if peak_flops else None,
        mem_kind: round(peak, 1),
    }
    if device.type != "cuda":
        step_peak = peak_rss_mib() if _STEP_RSS["reset"] else None
        record["steps_max_rss_MiB"] = round(step_peak, 1) if step_peak is not None else None
    print(json.dumps(record))


if __name__ == "__main__":
    main()
