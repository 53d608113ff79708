"""Where the quickstart teacher stage's time goes: decoding, augmentation, compute (issue 23).

Builds exactly what ``run_mae_pretraining.py`` builds for ``scripts/quickstart.py``'s teacher stage
(``pretrain_videomae_nano_patch8``, 8 frames at stride 2, 32 px, random masks 0.75, batch 8, one
compute thread), on generated camera-scene videos like the quickstart's (96x72, 32 frames), and
times one core doing each part in turn, as CPU time of this process (``time.process_time``: less
sensitive to other load on a shared machine than wall time):

- ``decode_ms``: reading one clip's frames (``read_clip``: open, demux, decode, frame selection);
- ``augment_ms``: the rest of a training item (crop, flip, resize, mask);
- ``collate_ms``: stacking a batch, per clip;
- ``step_ms``: one optimiser step of the trainer's task (forward, backward, AdamW), per clip.

From these it predicts the stage's throughput on ``--cores`` cores with W DataLoader workers (each
worker does decode + augment + collate; the main process computes): clips/s =
``min(W / data, 1 / compute, cores / (data + compute))``, and the stage's seconds for the
quickstart's default 50 epochs x 3000 videos. ``bound`` says which limit binds with the
quickstart's worker count. Extra arguments after ``--`` are added to the teacher's command (e.g.
``-- --num_sample 2``). ``real_clips_per_s`` times the entry point itself on the same videos with
the quickstart's worker count (``--real_epochs`` after a warm-up epoch): what it loses against
the prediction is the trainer's and the DataLoader's own cost. Prints ONE JSON line.

    python3 benchmarks/bench_quickstart.py [--videos 200] [--clips 160] [--repeats 3] [-- FLAGS]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the quickstart's compute thread on 2 cores

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets.collate import collate_batch  # noqa: E402
from datasets.loading import read_clip  # noqa: E402
from datasets.synthetic import make_synthetic_dataset  # noqa: E402
from engine import args as cli_args  # noqa: E402
from engine.build import build_masked_clips  # noqa: E402
from engine.optim import build_optimizer  # noqa: E402
from run_mae_pretraining import build_task  # noqa: E402


def _quickstart():
    """scripts/quickstart.py as a module (a script, not a package): its defaults and stage flags."""
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "scripts" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["quickstart"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def _real_stage(flags: list[str], epochs: int, clips_per_step: int) -> float:
    """Clips/s of ``run_mae_pretraining.py`` with ``flags`` for ``epochs`` + 1 epochs (the first,
    warm-up, left out), from its per-epoch "Total time: ... (S s / it)" lines."""
    argv = [*flags, "--epochs", str(epochs + 1), "--warmup_epochs", "1", "--log_dir", ""]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}
    proc = subprocess.run([sys.executable, "-u", str(ROOT / "run_mae_pretraining.py"), *argv], cwd=ROOT,
                          capture_output=True, text=True, env=env)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(
            f"bench_quickstart: the teacher stage failed: {proc.stderr.strip().splitlines()[-1:]}"
        )
    per_step = [float(m) for m in re.findall(r"Total time: \S+ \(([0-9.]+) s / it\)", proc.stdout)][1:]
    return round(clips_per_step / statistics.median(per_step), 1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.machine()
    except OSError:  # not Linux
        return platform.processor() or platform.machine()


def _cpu_ms(fn, n: int) -> float:
    start = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - start) * 1000 / n


def measure(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    tmp = tempfile.mkdtemp(prefix="bench_qs_")
    quickstart = _quickstart()
    scene = quickstart.SCENE  # the quickstart's videos: size, speed, scene, key-frame interval
    width, height = (int(v) for v in scene["size"].split("x"))
    lists = make_synthetic_dataset(
        tmp, num_classes=5, videos_per_class=max(1, args.videos // 5), num_frames=32, width=width, height=height,
        seed=1, val_fraction=0.0, test_fraction=0.0, speed=float(scene["speed"]), scene=scene["scene"],
        gop=int(scene.get("gop", 0)), workers=1,
    )  # fmt: skip
    qs = quickstart.parse([])  # the quickstart's defaults
    flags = quickstart.pretrain_flags(qs, quickstart.TEACHER, qs.pretrain_epochs, 0, Path(lists["pretrain"]),
                                      Path(tmp) / "out", quickstart.TEACHER_FLAGS)  # fmt: skip
    flags += extra  # last, so that they override the stage's own (argparse keeps the last value)
    run = cli_args.parse("pretrain", flags)
    # the stage's clips with its own epochs and repeated sampling (the extra flags may change both)
    stage_clips = run.optim.epochs * qs.num_classes * qs.teacher_videos_per_class * run.masking.num_sample
    torch.manual_seed(0)
    task = build_task(run)
    dataset = build_masked_clips(run, task.model)
    n = min(args.clips, len(dataset))
    clips_per_item = run.masking.num_sample
    optimizer = build_optimizer(
        task.parameter_groups(run.optim.weight_decay), opt="adamw", lr=run.optim.lr, weight_decay=0.0
    )
    items = [dataset[i] for i in range(n)]  # warm-up, and the batches the step is timed on
    batches = [
        collate_batch(items[i : i + run.optim.batch_size])
        for i in range(0, n - run.optim.batch_size + 1, run.optim.batch_size)
    ]

    def step(i: int) -> None:
        loss = task(batches[i % len(batches)])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(0)
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # the best of interleaved rounds, per part
        rounds = {
            "decode_ms": _cpu_ms(lambda i: dataset.clips.load(i, read_clip), n) / clips_per_item,
            "item_ms": _cpu_ms(lambda i: dataset[i], n) / clips_per_item,
            "collate_ms": _cpu_ms(
                lambda i: collate_batch(items[i * run.optim.batch_size : (i + 1) * run.optim.batch_size]),
                len(batches),
            )
            / (run.optim.batch_size * clips_per_item),  # fmt: skip
            "step_ms": _cpu_ms(step, len(batches)) / (run.optim.batch_size * clips_per_item),
        }
        best = {k: min(v, best.get(k, v)) for k, v in rounds.items()}
    decode, augment = best["decode_ms"], max(0.0, best["item_ms"] - best["decode_ms"])
    data, compute = decode + augment + best["collate_ms"], best["step_ms"]
    predicted = {}
    for workers in (1, 2):
        limits = {"data": workers / data, "compute": 1 / compute, "cores": args.cores / (data + compute)}
        rate = min(limits.values()) * 1000
        predicted[f"workers_{workers}"] = {
            "clips_per_s": round(rate, 1),
            "stage_s": round(stage_clips / rate),
            "bound": min(limits, key=limits.get),
        }
    real = (
        _real_stage(flags, args.real_epochs, run.optim.batch_size * run.masking.num_sample)
        if args.real_epochs
        else None
    )
    return {
        "bench": "quickstart_teacher_stage",
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "threads": torch.get_num_threads(),
        "clips": n * clips_per_item,
        "extra_flags": extra,
        "decode_ms": round(decode, 3),
        "augment_ms": round(augment, 3),
        "collate_ms": round(best["collate_ms"], 3),
        "step_ms": round(compute, 3),
        "data_share": round(data / (data + compute), 3),
        "cores": args.cores,
        "stage_clips": stage_clips,
        "predicted": predicted,
        # the entry point itself, with the quickstart's workers: the parts above plus the trainer's
        # and the DataLoader's own costs (per-step bookkeeping, inter-process batches)
        "real_clips_per_s": real,
        "real_stage_s": round(stage_clips / real) if real else None,
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=200, help="generated teacher videos (5 classes)")
    p.add_argument("--clips", type=int, default=160, help="items timed per part and round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    p.add_argument("--cores", type=int, default=2, help="cores of the machine the prediction is for")
    p.add_argument(
        "--real_epochs",
        type=int,
        default=2,
        help="also time the entry point for this many epochs (0: do not)",
    )
    args = p.parse_args(own)
    if args.clips < 8 or args.videos < 8:
        p.error("--clips and --videos must be >= 8 (one batch of the teacher's 8)")
    print(json.dumps(measure(args, extra)))


if __name__ == "__main__":
    main()
