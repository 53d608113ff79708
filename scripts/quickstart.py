"""The whole method on generated videos, on a laptop CPU, in minutes.

Stages (each one runs the real entry point in its own process, as a user would):
  1. generate a small action dataset (H.264 videos whose classes need motion to tell apart)
  2. VideoMAE pre-training of a teacher (nano preset)
  3. MMKD distillation of a smaller student (pico preset) from that teacher
  4. VideoMAE pre-training of the same student architecture for as many epochs (baseline)
  5. fine-tuning + multi-view test of three students: (a) MMKD, (b) VideoMAE, (c) from scratch
  6. teacher-vs-student attention visualisation of one test video
and prints a results table (top-1 / top-5, wall time, peak memory per stage).

    python scripts/quickstart.py                 # defaults: about 6 minutes on a 2-core CPU
    python scripts/quickstart.py --smoke         # a 1-2 minute check of the same path (CI)
    python scripts/quickstart.py --device cuda --scale 4 --out runs/qs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    name: str
    seconds: float
    peak_mib: float
    result: dict | None = None


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", default=str(ROOT / "quickstart_out"), help="where data, checkpoints, logs and figures go"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true", help="tiny settings that only check the path end to end")
    p.add_argument("--scale", type=float, default=1.0, help="multiply videos and epochs (e.g. 4 on a GPU)")
    p.add_argument("--num_classes", type=int, default=5)
    p.add_argument("--videos_per_class", type=int, default=100)
    p.add_argument("--input_size", type=int, default=32)
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--pretrain_epochs", type=int, default=30)
    p.add_argument("--distill_epochs", type=int, default=30)
    p.add_argument("--finetune_epochs", type=int, default=40)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--finetune_lr", type=float, default=3e-3)
    cores = os.cpu_count() or 1
    # Two cores: one loader worker and one compute thread beat two of each fighting (~20 % faster).
    p.add_argument("--workers", type=int, default=1 if cores <= 2 else 2, help="DataLoader workers per stage")
    args = p.parse_args()
    if args.smoke:
        args.num_classes, args.videos_per_class, args.batch_size = 3, 4, 2
        args.pretrain_epochs = args.distill_epochs = args.finetune_epochs = 1
    for name in ("videos_per_class", "pretrain_epochs", "distill_epochs", "finetune_epochs"):
        setattr(args, name, max(1, round(getattr(args, name) * args.scale)))
    return args


def run_stage(name: str, cmd: list[str], log: Path) -> Stage:
    """Runs one entry point as a child process; its output is shown and logged; peak RSS from wait4."""
    print(f"\n=== {name}\n$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            fh.write(line)
            if (
                "Epoch" in line
                or "test" in line
                or "error" in line
                or "validation" in line
                or "wrote" in line
            ):
                print("  " + line.rstrip()[:160], flush=True)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"quickstart: stage '{name}' failed; see {log}")
    return Stage(name, time.perf_counter() - start, usage.ru_maxrss / 1024)


def last_json(path: Path) -> dict:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return lines[-1] if lines else {}


def main() -> None:
    a = parse()
    # The stages' compute threads: the cores the loader workers leave (unless the user set it).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) - a.workers)))
    out = Path(a.out).resolve()
    data, logs = out / "data", out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-u"]
    stages: list[Stage] = []
    common = [
        "--device", a.device, "--num_frames", str(a.num_frames), "--sampling_rate", "2",
        "--input_size", str(a.input_size), "--num_workers", str(a.workers), "--seed", "0", "--print_freq", "20",
        "--no_lr_scale", "--no-auto_resume",
    ]  # fmt: skip
    frames = max(4 * a.num_frames, 32)
    # A clip (num_frames at stride 2) sees half of each video and so half of its motion; speed 2
    # makes that ~0.6 short sides of travel, which the tiny ViTs learn in a few dozen epochs.
    stages.append(run_stage("generate data", py + ["-m", "datasets.synthetic", "--out", str(data),
        "--num_classes", str(a.num_classes), "--videos_per_class", str(a.videos_per_class), "--frames", str(frames),
        "--size", "96x72", "--speed", "2", "--seed", "0"], logs / "data.log"))  # fmt: skip

    def pretrain(name: str, model: str, epochs: int) -> str:
        odir = out / name
        stages.append(run_stage(f"VideoMAE pre-train ({model})", py + ["run_mae_pretraining.py", *common,
            "--data_path", str(data / "pretrain.csv"), "--model", model, "--decoder_depth", "1",
            "--mask_ratio", "0.75", "--batch_size", str(a.batch_size), "--epochs", str(epochs), "--warmup_epochs", "1",
            "--lr", "1e-3", "--min_lr", "1e-5", "--save_ckpt_freq", "1000", "--output_dir", str(odir),
            "--log_dir", str(odir / "tb")], logs / f"{name}.log"))  # fmt: skip
        return str(odir / f"checkpoint-{epochs - 1}.pth")

    teacher = pretrain("teacher_videomae", "pretrain_videomae_nano_patch8", a.pretrain_epochs)
    odir = out / "student_mmkd"
    stages.append(run_stage("MMKD distillation (pico <- nano)", py + ["run_mmkd_distill.py", *common,
        "--data_path", str(data / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
        "--model_t", "pretrain_videomae_nano_patch8", "--path_t", teacher, "--distill", "hybrid",
        "--mask_ratio", "0.75", "--num_k", "4", "--num_f", "8", "--batch_size", str(a.batch_size),
        "--epochs", str(a.distill_epochs), "--warmup_epochs", "1", "--lr", "1e-3", "--min_lr", "1e-5",
        "--save_ckpt_freq", "1000", "--output_dir", str(odir), "--log_dir", str(odir / "tb")],
        logs / "student_mmkd.log"))  # fmt: skip
    distilled = str(odir / f"checkpoint-{a.distill_epochs - 1}.pth")
    videomae_student = pretrain("student_videomae", "pretrain_videomae_pico_patch8", a.distill_epochs)

    results = {}
    # Test views resize the short side to the input size, so they show the whole scene as the
    # training crops do (the default 224 would centre-crop 32 px of an upscaled frame: background).
    for label, init in (("MMKD (ours)", distilled), ("VideoMAE", videomae_student), ("scratch", "")):
        tag = label.split()[0].lower()
        odir = out / f"finetune_{tag}"
        stage = run_stage(f"fine-tune + test: {label}", py + ["run_class_finetuning.py", *common,
            "--data_path", str(data), "--data_set", "UCF101", "--nb_classes", str(a.num_classes),
            "--model", "vit_pico_patch8", "--batch_size", str(a.batch_size), "--num_sample", "1", "--epochs", str(a.finetune_epochs),
            "--warmup_epochs", "1", "--lr", str(a.finetune_lr), "--min_lr", "1e-5", "--layer_decay", "0.9", "--aa", "none",
            "--reprob", "0", "--smoothing", "0.1", "--short_side_size", str(a.input_size), "--test_num_segment", "2", "--test_num_crop", "2",
            "--save_ckpt_freq", "1000", "--output_dir", str(odir), "--log_dir", str(odir / "tb"),
            *(["--finetune", init] if init else [])], logs / f"finetune_{tag}.log")  # fmt: skip
        stage.result = last_json(odir / "log.txt").get("final_test", {})
        stages.append(stage)
        results[label] = stage.result

    vis_dir = out / "figures"
    test_video = (data / "test.csv").read_text().split("\n")[0].rsplit(" ", 1)[0]
    stages.append(run_stage("attention visualisation", py + ["run_vis.py", "--video", str(data / test_video),
        "--output_dir", str(vis_dir), "--model_path", distilled, "--teacher_path", teacher,
        "--model", "pretrain_videomae_pico_patch8", "--model_t", "pretrain_videomae_nano_patch8",
        "--num_frames", str(a.num_frames), "--sampling_rate", "2", "--input_size", str(a.input_size),
        "--idx", "2", "--idx_f", "1", "--num_k", "4", "--num_f", "8", "--mask_ratio", "0.75"],
        logs / "vis.log"))  # fmt: skip

    print("\n" + "=" * 86)
    print(f"{'stage':52s} {'top-1':>7s} {'top-5':>7s} {'time':>8s} {'peak MiB':>9s}")
    print("-" * 86)
    for s in stages:
        t1 = f"{s.result['top1']:.1f}" if s.result else ""
        t5 = f"{s.result['top5']:.1f}" if s.result else ""
        print(f"{s.name:52s} {t1:>7s} {t5:>7s} {s.seconds:7.1f}s {s.peak_mib:9.0f}")
    print("-" * 86)
    print(f"chance top-1: {100 / a.num_classes:.1f}%   total time: {sum(s.seconds for s in stages):.0f}s")
    print(
        f"checkpoints: {out}/<stage>/checkpoint-*.pth   logs: {logs}   TensorBoard: tensorboard --logdir {out}"
    )
    print(f"figures: {vis_dir}/grid.png (teacher vs student: MM-global, MM-local, MM-hint)")
    (out / "results.json").write_text(json.dumps({k: v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
