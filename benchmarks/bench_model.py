"""Throughput and peak memory of one MMKD distillation step at the paper's configuration.

Teacher forward (no grad) + student forward/backward + the four losses + AdamW step, ViT-S student,
ViT-B teacher, 16x224x224 clips, tube mask 0.9 (spec §5). Prints one JSON line, with the step's
FLOPs (torch's FLOP counter) and, on a GPU with a known 16-bit peak (or --peak_tflops), the MFU.

    python benchmarks/bench_model.py --device cpu --batch_size 2 --attn sdpa
    python benchmarks/bench_model.py --device cuda --batch_size 64 --precision bf16 --attn eager
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timm  # noqa: E402

import models  # noqa: E402,F401
from datasets.masking import TubeMaskingGenerator  # noqa: E402
from engine.optim import build_optimizer  # noqa: E402
from engine.precision import autocast_context  # noqa: E402
from engine.tasks import DistillTask  # noqa: E402
from models.distill import MMKDConfig, MMKDLoss  # noqa: E402
from models.vit import count_visible  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    p.add_argument("--student", default="pretrain_videomae_small_patch16_224")
    p.add_argument("--teacher", default="pretrain_videomae_base_patch16_224")
    p.add_argument("--num_frames", type=int, default=16)
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--mask_ratio", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--use_checkpoint", action="store_true")
    p.add_argument("--num_k", type=int, default=10, help="MM top-k (lower it for tiny clips)")
    p.add_argument("--num_f", type=int, default=10, help="hint / relation top-k (lower it for tiny clips)")
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="the device's dense peak for --precision, for the MFU (default: known GPUs' bf16/fp16 peak)",
    )
    return p.parse_args()


# dense (no sparsity) bf16 / fp16 tensor-core peaks in TFLOP/s, from the vendors' data sheets
PEAK_TFLOPS_16BIT = {"H200": 989.4, "H100 80GB HBM3": 989.4, "H100": 756.0, "A100": 312.0, "L40S": 362.1}


def peak_tflops(device: torch.device, precision: str, override: float | None) -> float | None:
    """The peak the MFU is taken against: --peak_tflops, or a known GPU's 16-bit peak."""
    if override is not None:
        return override
    if device.type != "cuda" or precision == "fp32":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS_16BIT.items() if k in name), None)


def main() -> None:
    args = parse()
    device = torch.device(args.device)
    kw = dict(decoder_depth=0, img_size=args.input_size, num_frames=args.num_frames)
    student = timm.create_model(args.student, use_checkpoint=args.use_checkpoint, drop_path_rate=0.1, **kw)
    teacher = timm.create_model(args.teacher, **kw)
    for m in (student, teacher):
        models.set_attn_impl(m, args.attn)
    heads = MMKDLoss(
        student.encoder.embed_dim, teacher.encoder.embed_dim, MMKDConfig(num_k=args.num_k, num_f=args.num_f)
    )
    task = DistillTask(student, teacher, heads, teacher_precision=args.precision).to(device)
    # the trainer's optimiser (timm factory, fused kernel where torch has one)
    opt = build_optimizer(task.parameter_groups(0.05), lr=1e-4, weight_decay=0.05, opt_betas=(0.9, 0.95))
    scaler = torch.amp.GradScaler(enabled=args.precision == "fp16")

    grid = student.encoder.grid_size
    gen = TubeMaskingGenerator(grid, args.mask_ratio)
    video = torch.randn(args.batch_size, 3, args.num_frames, args.input_size, args.input_size, device=device)
    mask = torch.stack([torch.as_tensor(gen()) for _ in range(args.batch_size)]).to(device)
    batch = {"video": video, "mask": mask, "num_visible": count_visible(mask)}  # as collate_batch ships it

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, args.precision):
            loss = task(batch)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter:  # one step, also the first warm-up step
        step()
    flops = counter.get_total_flops()
    for _ in range(max(args.warmup - 1, 0)):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed = time.perf_counter() - start
    peak_flops = peak_tflops(device, args.precision, args.peak_tflops)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        mem_kind = "cuda_max_allocated_MiB"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mem_kind = "process_max_rss_MiB"
    print(
        json.dumps(
            {
                "bench": "mmkd_distill_step",
                "device": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else f"cpu x{torch.get_num_threads()}",
                "student": args.student,
                "teacher": args.teacher,
                "clip": [args.num_frames, args.input_size, args.input_size],
                "mask_ratio": args.mask_ratio,
                "visible_tokens": int((~mask[0]).sum()),
                "batch_size": args.batch_size,
                "precision": args.precision,
                "attn": args.attn,
                "steps": args.steps,
                "sec_per_step": round(elapsed / args.steps, 4),
                "clips_per_s": round(args.batch_size * args.steps / elapsed, 3),
                "gflop_per_step": round(flops / 1e9, 2),
                "achieved_tflops": round(flops / (elapsed / args.steps) / 1e12, 2),
                "peak_tflops": peak_flops,
                "mfu": round(flops / (elapsed / args.steps) / (peak_flops * 1e12), 4) if peak_flops else None,
                mem_kind: round(peak, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
