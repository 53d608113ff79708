"""The whole method on generated videos, on a laptop CPU, in minutes.

Stages (each one runs the real entry point in its own process, as a user would; on Linux that
process is forked from this one after it has imported torch, timm and the packages once, which
spares each stage ~5 s of interpreter start on a 2-core CPU):
  1. generate a small action dataset (H.264 videos of camera motions, every frame a key frame: no
     single frame tells the class) and a 10x larger unlabelled set from the same generator for the teacher
  2. VideoMAE pre-training of a teacher (nano preset) on the unlabelled set
  3. MMKD distillation of a smaller student (pico preset) from that teacher
  4. VideoMAE pre-training of the same student architecture for as many epochs (baseline)
  5. fine-tuning + multi-view test of three students: (a) MMKD, (b) VideoMAE, (c) from scratch
  6. linear probes on frozen features of the teacher, the three students and random networks
  7. teacher-vs-student attention visualisation of one test video
and prints a results table (fine-tune and linear-probe top-1, wall time, peak memory per stage).
Each stage shows one progress line (live on a terminal, printed once the stage ends elsewhere); the
full logs go to <out>/logs. ``--seeds N`` repeats the
students' stages (and the teacher's and a random network's probes) with N seeds and reports
mean ± std.

    python scripts/quickstart.py                 # defaults (the teacher's stage takes about 60 % of the time)
    python scripts/quickstart.py --seeds 3       # the students' stages three times, mean ± std
    python scripts/quickstart.py --smoke         # a ~20 s check of the same path (CI)
    python scripts/quickstart.py --device cuda --scale 4 --out runs/qs
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import runpy
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    name: str
    seconds: float
    peak_mib: float
    result: dict | None = None


def parse(argv: list[str] | None = None) -> argparse.Namespace:
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
    # The teacher sees 10x more (unlabelled) videos than the students, as VideoMAE teachers do (K400 /
    # SSv2): trained on the 300 labelled videos alone, its probe stayed within a few points of a
    # random network's. 50 epochs: 47 % probe top-1 where 25 gave 36 % (random nano 28 %).
    p.add_argument(
        "--teacher_videos_per_class", type=int, default=600, help="unlabelled videos for the teacher"
    )
    # Repeated sampling for the teacher (--teacher_num_sample R: R clips per decoded video, batches of
    # batch_size / R videos; with --pretrain_epochs 50 / R the same clips and steps from 1/R of the
    # decodes) is measured, not the default: R = 4 and 13 epochs took the decode off the critical path
    # but the teacher probed 40.0 +- 2.6 against a random nano's 28.3 over 3 seeds (50 epochs of R = 1:
    # 49.3), below the 15 points the quickstart is meant to show (README section 1).
    p.add_argument("--teacher_num_sample", type=int, default=1, help="clips per decoded video, teacher")
    p.add_argument("--pretrain_epochs", type=int, default=50, help="teacher pre-training epochs")
    p.add_argument("--distill_epochs", type=int, default=30)
    p.add_argument("--finetune_epochs", type=int, default=40)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--finetune_lr", type=float, default=3e-3)
    p.add_argument("--probe_epochs", type=int, default=90)
    p.add_argument(
        "--seeds", type=int, default=1, help="repeat the students' stages and the probes with seeds 0..N-1"
    )
    cores = os.cpu_count() or 1
    # Two cores: one loader worker and one compute thread beat two of each fighting (~20 % faster).
    p.add_argument("--workers", type=int, default=1 if cores <= 2 else 2, help="DataLoader workers per stage")
    args = p.parse_args(argv)
    if args.smoke:
        args.num_classes, args.videos_per_class, args.batch_size = 3, 4, 2
        args.teacher_videos_per_class, args.teacher_num_sample = 4, 2
        args.pretrain_epochs = args.distill_epochs = args.finetune_epochs = 1
        args.probe_epochs = 2
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.teacher_num_sample < 1 or args.batch_size % args.teacher_num_sample:
        p.error(f"--batch_size ({args.batch_size}) must be a multiple of --teacher_num_sample ({args.teacher_num_sample})")
    for name in (
        "videos_per_class",
        "teacher_videos_per_class",
        "pretrain_epochs",
        "distill_epochs",
        "finetune_epochs",
    ):
        setattr(args, name, max(1, round(getattr(args, name) * args.scale)))
    return args


_EPOCH = re.compile(r"Epoch \[(\d+)\]")

TEACHER = "pretrain_videomae_nano_patch8"
# Random masking for the teacher (VideoMAE's --mask_type random): with tube masking its frozen
# features read out no better than a random network's here; the students keep tube masking
# (MM-local needs it).
TEACHER_FLAGS = ("--mask_type", "random")


# The generated videos (both sets), as datasets.synthetic flags. "--gop 1": every frame an H.264 key
# frame (x264, crf 23, fastdecode), so a clip decodes only its 8 frames instead of the ~24 from frame 0
# on (x264's defaults): 1.9 ms a clip instead of 3.0 on a 2-core AVX2 Zen 3, and the teacher's stage in
# about half the time. Measured and not taken (README §1): Motion JPEG (1.2 ms) left the teacher's
# probe 6-7 points above a random network's (its sharper frames make the normalised-pixel target
# noisier: the loss barely left its plateau), and "--gop 16" (2.5 ms) put the MMKD student's probe
# below the VideoMAE student's over --seeds 3 (31.7 vs 32.7).
SCENE = {"size": "96x72", "speed": "2", "scene": "camera", "gop": "1"}


def scene_flags() -> list[str]:
    return [x for key, value in SCENE.items() for x in (f"--{key}", value)]


def clip_flags(a: argparse.Namespace) -> list[str]:
    """The clip, loader and device flags every stage shares."""
    return ["--num_frames", str(a.num_frames), "--sampling_rate", "2", "--input_size", str(a.input_size),
            "--num_workers", str(a.workers), "--device", a.device]  # fmt: skip


def common_flags(a: argparse.Namespace) -> list[str]:
    """The flags every training stage shares."""
    return [*clip_flags(a), "--print_freq", "20", "--no_lr_scale", "--no-auto_resume"]


def pretrain_flags(
    a: argparse.Namespace, model: str, epochs: int, seed: int, list_file: Path, odir: Path, extra: tuple = (),
    num_sample: int = 1,
) -> list[str]:
    """``run_mae_pretraining.py``'s arguments for a VideoMAE stage (the teacher's, a student's);
    benchmarks/bench_quickstart.py times the teacher's through the same list. A batch holds
    ``batch_size`` clips: ``batch_size / num_sample`` videos, ``num_sample`` clips of each."""
    return [*common_flags(a), *extra, "--seed", str(seed), "--data_path", str(list_file), "--model", model,
            "--decoder_depth", "1", "--mask_ratio", "0.75", "--num_sample", str(num_sample),
            "--batch_size", str(a.batch_size // num_sample), "--epochs", str(epochs),
            "--warmup_epochs", "1", "--lr", "1e-3", "--min_lr", "1e-5", "--save_ckpt_freq", "1000",
            "--output_dir", str(odir), "--log_dir", str(odir / "tb")]  # fmt: skip


_forking = False  # set by preload(): stages are forked from this process, not started afresh


def preload() -> bool:
    """Imports what every stage imports (torch, timm, PyAV, the packages), so that each stage can be
    a fork of this process instead of a new interpreter. Linux only, where forking a process that has
    imported torch but run no tensor operation is safe (no thread pool exists yet); elsewhere, or with
    ``QUICKSTART_FORK=0``, every stage starts a new interpreter."""
    global _forking
    if sys.platform != "linux" or os.environ.get("QUICKSTART_FORK", "1") == "0":
        return False
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import av  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401

    import datasets.synthetic  # noqa: F401
    import engine.build  # noqa: F401
    import engine.evaluation  # noqa: F401
    import engine.runner  # noqa: F401
    import models  # noqa: F401

    _forking = True
    return True


def _forked_main(argv: list[str]) -> None:
    """In the forked child: runs ``python -u argv...`` (a script or ``-m module``) as ``__main__``,
    then exits as that interpreter would (exit status, the atexit handlers the stage registered,
    flushed streams). Never returns."""
    code = 1
    # The parent's exit handlers are not the stage's: a new interpreter would not run them (one that
    # removes the parent's temporary folder would remove it under the parent's feet).
    atexit._clear()
    try:
        os.chdir(ROOT)
        # new streams on the pipe (fds 1 and 2), line-buffered as -u: the parent reads line by line;
        # the inherited objects may hold the parent's unwritten output or not write to fd 1 at all
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115 (the process ends with os._exit)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        if argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"), as the interpreter prints it
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _start(cmd: list[str]):
    """Starts ``cmd``; returns (its pid, a text stream of its stdout + stderr)."""
    if _forking and cmd[:2] == [sys.executable, "-u"]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.dup2(write, 1)
            os.dup2(write, 2)
            os.close(write)
            _forked_main(cmd[2:])
        os.close(write)
        return pid, os.fdopen(read, "r", encoding="utf-8", errors="replace")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.pid, proc.stdout


def run_stage(name: str, cmd: list[str], log: Path, epochs: int = 0) -> Stage:
    """Runs one entry point as a child process, the whole output in ``log``. On a terminal one live
    progress line (rewritten per epoch); elsewhere (a log file, CI, ``tee``) one line when it ends."""
    live = sys.stdout.isatty()
    if live:
        print(f"{name:58s}", end="", flush=True)
    start = time.perf_counter()
    shown = ""
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()  # not written twice by a forked child
        pid, output = _start(cmd)
        for line in output:
            fh.write(line)
            found = _EPOCH.search(line)
            if found and epochs:
                shown = f"epoch {int(found.group(1)) + 1}/{epochs}"
                if live:
                    print(f"\r{name:58s} {shown:14s} {time.perf_counter() - start:6.0f}s", end="", flush=True)
            elif "error" in line:
                print(f"\n  {line.rstrip()[:160]}" if live else f"{name}: {line.rstrip()[:160]}", flush=True)
        output.close()
        _, status, usage = os.wait4(pid, 0)
    print(f"{chr(13) if live else ''}{name:58s} {shown:14s} {time.perf_counter() - start:6.0f}s", flush=True)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"quickstart: stage '{name}' failed; see {log}")
    return Stage(name, time.perf_counter() - start, usage.ru_maxrss / 1024)


def last_json(path: Path) -> dict:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return lines[-1] if lines else {}


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    a = parse()
    # The stages' compute threads: the cores the loader workers leave (unless the user set it).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) - a.workers)))
    preload()  # after OMP_NUM_THREADS: the OpenMP runtime reads it when torch loads
    out = Path(a.out).resolve()
    data, teacher_data, logs = out / "data", out / "teacher_data", out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-u"]
    stages: list[Stage] = []
    clip, common = clip_flags(a), common_flags(a)
    frames = max(4 * a.num_frames, 32)
    # A clip (num_frames at stride 2) sees half of each video and so half of its motion; speed 2
    # makes that ~0.6 short sides of travel, which the tiny ViTs learn in a few dozen epochs.
    # Camera motions (the whole view pans / zooms): in the object scene a small shape's motion covers
    # a few patches, and a VideoMAE teacher of this size learnt it for fine-tuning but not so that its
    # frozen features told the classes apart better than a random network's.
    scene = ["--frames", str(frames), *scene_flags()]
    stages.append(run_stage("generate data", py + ["-m", "datasets.synthetic", "--out", str(data),
        "--num_classes", str(a.num_classes), "--videos_per_class", str(a.videos_per_class), *scene, "--seed", "0"],
        logs / "data.log"))  # fmt: skip
    stages.append(run_stage("generate the teacher's unlabelled videos", py + ["-m", "datasets.synthetic",
        "--out", str(teacher_data), "--num_classes", str(a.num_classes), "--videos_per_class",
        str(a.teacher_videos_per_class), *scene, "--seed", "1", "--val_fraction", "0", "--test_fraction", "0"],
        logs / "teacher_data.log"))  # fmt: skip

    def pretrain(
        name: str, model: str, epochs: int, seed: int, videos: Path = data, extra: tuple = (), num_sample: int = 1
    ) -> str:
        odir = out / name
        flags = pretrain_flags(a, model, epochs, seed, videos / "pretrain.csv", odir, extra, num_sample)
        stages.append(run_stage(f"VideoMAE pre-train {name}", py + ["run_mae_pretraining.py", *flags],
                                logs / f"{name}.log", epochs))  # fmt: skip
        return str(odir / f"checkpoint-{epochs - 1}.pth")

    def probe(label: str, model: str, weights: str, seed: int) -> float:
        """Linear probe (frozen features) trained on train.csv, scored on test.csv; returns top-1.

        The classes are motion directions, which a mean over the whole clip erases, so the probe reads
        the T' temporal slices (--pool temporal). SGD: LARS at 450 steps left every probe under-fitted
        (train top-1 ~27 %), which measured nothing.
        """
        odir = out / f"probe_{label}"
        stages.append(run_stage(f"linear probe {label}", py + ["run_linear_probe.py", *clip, "--seed", str(seed),
            "--model", model, "--data_path", str(data), "--val_split", "test", "--short_side_size", str(a.input_size),
            "--test_num_segment", "2", "--test_num_crop", "1", "--batch_size", "32", "--output_dir", str(odir),
            "--epochs", str(a.probe_epochs), "--warmup_epochs", str(min(10, a.probe_epochs - 1)),
            "--probe_batch_size", "64", "--opt", "sgd", "--blr", "1", "--pool", "temporal", *(["--finetune", weights] if weights else [])],
            logs / f"probe_{label}.log"))  # fmt: skip
        top1 = json.loads((odir / "result.json").read_text())["top1"]
        stages[-1].result = {"probe": top1}
        return top1

    def finetune(label: str, init: str, seed: int) -> float:
        odir = out / f"finetune_{label}"
        # Test views resize the short side to the input size, so they show the whole scene as the
        # training crops do (the default 224 would centre-crop 32 px of an upscaled frame: background).
        stage = run_stage(f"fine-tune + test {label}", py + ["run_class_finetuning.py", *common, "--seed", str(seed),
            "--data_path", str(data), "--data_set", "UCF101", "--nb_classes", str(a.num_classes),
            "--model", "vit_pico_patch8", "--batch_size", str(a.batch_size), "--num_sample", "1", "--epochs", str(a.finetune_epochs),
            "--warmup_epochs", "1", "--lr", str(a.finetune_lr), "--min_lr", "1e-5", "--layer_decay", "0.9", "--aa", "none",
            "--reprob", "0", "--smoothing", "0.1", "--short_side_size", str(a.input_size), "--test_num_segment", "2", "--test_num_crop", "2",
            "--disable_eval_during_finetuning",
            "--save_ckpt_freq", "1000", "--output_dir", str(odir), "--log_dir", str(odir / "tb"),
            *(["--finetune", init] if init else [])], logs / f"finetune_{label}.log", a.finetune_epochs)  # fmt: skip
        stage.result = {"top1": last_json(odir / "log.txt").get("final_test", {}).get("top1", float("nan"))}
        stages.append(stage)
        return stage.result["top1"]

    teacher = pretrain("teacher_videomae", TEACHER, a.pretrain_epochs, 0, teacher_data, TEACHER_FLAGS,
                       a.teacher_num_sample)  # fmt: skip
    rows: dict[str, dict[str, list[float]]] = {}
    rows["teacher (nano, VideoMAE)"] = {"finetune": [], "probe": []}
    rows["random nano (no training)"] = {"finetune": [], "probe": []}
    distilled = ""
    for seed in range(a.seeds):
        tag = f"_s{seed}" if a.seeds > 1 else ""
        # the one teacher probed with each seed; a random nano drawn with each seed
        rows["teacher (nano, VideoMAE)"]["probe"].append(
            probe(f"teacher{tag}", "vit_nano_patch8", teacher, seed)
        )
        rows["random nano (no training)"]["probe"].append(
            probe(f"random_nano{tag}", "vit_nano_patch8", "", seed)
        )
        odir = out / f"student_mmkd{tag}"
        stages.append(run_stage(f"MMKD distillation (pico <- nano){tag}", py + ["run_mmkd_distill.py", *common,
            "--seed", str(seed), "--data_path", str(data / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
            "--model_t", "pretrain_videomae_nano_patch8", "--path_t", teacher, "--distill", "hybrid",
            "--mask_ratio", "0.75", "--num_k", "4", "--num_f", "8", "--batch_size", str(a.batch_size),
            "--epochs", str(a.distill_epochs), "--warmup_epochs", "1", "--lr", "1e-3", "--min_lr", "1e-5",
            "--save_ckpt_freq", "1000", "--output_dir", str(odir), "--log_dir", str(odir / "tb")],
            logs / f"student_mmkd{tag}.log", a.distill_epochs))  # fmt: skip
        distilled = distilled or str(odir / f"checkpoint-{a.distill_epochs - 1}.pth")
        mmkd = str(odir / f"checkpoint-{a.distill_epochs - 1}.pth")
        videomae = pretrain(f"student_videomae{tag}", "pretrain_videomae_pico_patch8", a.distill_epochs, seed)
        for label, init in (("MMKD (ours)", mmkd), ("VideoMAE", videomae), ("scratch / random init", "")):
            key = label.split()[0].lower() + tag
            row = rows.setdefault(f"student (pico): {label}", {"finetune": [], "probe": []})
            row["finetune"].append(finetune(key, init, seed))
            row["probe"].append(probe(key, "vit_pico_patch8", init, seed))

    vis_dir = out / "figures"
    test_video = (data / "test.csv").read_text().split("\n")[0].rsplit(" ", 1)[0]
    stages.append(run_stage("attention visualisation", py + ["run_vis.py", "--video", str(data / test_video),
        "--output_dir", str(vis_dir), "--model_path", distilled, "--teacher_path", teacher, "--device", a.device,
        "--model", "pretrain_videomae_pico_patch8", "--model_t", "pretrain_videomae_nano_patch8",
        "--num_frames", str(a.num_frames), "--sampling_rate", "2", "--input_size", str(a.input_size),
        "--idx", "2", "--idx_f", "1", "--num_k", "4", "--num_f", "8", "--mask_ratio", "0.75"],
        logs / "vis.log"))  # fmt: skip

    seeds = f" (mean ± std over {a.seeds} seeds)" if a.seeds > 1 else ""
    print("\n" + "=" * 86)
    print(f"{'model' + seeds:50s} {'fine-tune top-1':>17s} {'linear probe top-1':>18s}")
    print("-" * 86)
    for name, r in rows.items():
        print(f"{name:50s} {_mean_std(r['finetune']):>17s} {_mean_std(r['probe']):>18s}")
    print("-" * 86)
    print(f"{'stage':58s} {'time':>8s} {'peak MiB':>9s}")
    for s in stages:
        print(f"{s.name:58s} {s.seconds:7.1f}s {s.peak_mib:9.0f}")
    print("-" * 86)
    print(f"chance top-1: {100 / a.num_classes:.1f}%   total time: {sum(s.seconds for s in stages):.0f}s")
    print(
        f"checkpoints: {out}/<stage>/checkpoint-*.pth   logs: {logs}   TensorBoard: tensorboard --logdir {out}"
    )
    print(f"figures: {vis_dir}/grid.png (teacher vs student: MM-global, MM-local, MM-hint)")
    (out / "results.json").write_text(json.dumps({"seeds": a.seeds, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
