"""Shared helpers of the fault-injection tests: argument lists, parallel subprocess runs, checks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from engine.checkpoint import CheckpointManager
from engine.runner import weights_digest
from tests.engine.conftest import CLIP, ROOT, distill_argv, finetune_argv

PRETRAIN, DISTILL, FINETUNE = "run_mae_pretraining.py", "run_mmkd_distill.py", "run_class_finetuning.py"
KILLER = "tests/faults/killer.py"
EPOCHS = 2  # every resumable run: 2 epochs x 3 steps (12 clips, batch 4), a checkpoint per epoch


def pretrain_argv(videos: Path, out: Path, *extra: str) -> list[str]:
    return [
        *CLIP, "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
        "--decoder_depth", "1", "--mask_ratio", "0.75", "--batch_size", "4", "--epochs", str(EPOCHS),
        "--warmup_epochs", "1", "--lr", "1e-3", "--no_lr_scale", "--output_dir", str(out), "--save_ckpt_freq", "1",
        "--print_freq", "100", *extra,
    ]  # fmt: skip


def argv_for(script: str, videos: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    """The deterministic 2-epoch command of ``script`` writing to ``out``."""
    if script == PRETRAIN:
        return pretrain_argv(videos, out, "--deterministic", *extra)
    if script == DISTILL:
        return distill_argv(videos, teacher, out, "--deterministic", *extra)
    return finetune_argv(videos, out, "--epochs", str(EPOCHS), "--deterministic", *extra)


def python_cmd(script: str, argv: list[str], torchrun: int = 0, max_restarts: int = 0) -> list[str]:
    cmd = [sys.executable, "-u"]
    if torchrun:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
        cmd += [f"--max-restarts={max_restarts}"]
    return [*cmd, str(ROOT / script), *map(str, argv)]


# launcher variables: a leftover RANK / WORLD_SIZE (e.g. leaked by another test into os.environ) would make
# a plain run wait forever for a process group
LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "MMKD_FAULT",
    "MMKD_FAULT_RANK",
)


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without launcher variables (nor SLURM_*), one OpenMP thread, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def run_parallel(cmds: list[list[str]], env: dict | None = None, timeout: int = 300):
    """Runs true subprocesses side by side (imports overlap); returns CompletedProcess objects."""
    full_env = clean_env(**(env or {}))
    procs = [
        subprocess.Popen(
            c,
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so a hung run (and e.g. its torchrun workers) can be stopped as a group
        )
        for c in cmds
    ]
    results = []
    try:
        for cmd, proc in zip(cmds, procs):
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the session we started
                proc.wait()
    return results


def show(proc) -> str:
    args = proc.args if isinstance(proc.args, list) else [str(proc.args)]
    return f"$ {' '.join(map(str, args))}\nrc={proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"


def ok(proc):
    assert proc.returncode == 0, show(proc)
    return proc


def model_digest(path: Path) -> str:
    return weights_digest(torch.load(path, map_location="cpu", weights_only=True)["model"])


def file_sha(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def temp_files(out: Path) -> list[Path]:
    """Hidden temp files of interrupted atomic writes."""
    return sorted(p for p in Path(out).glob(".*.tmp")) if Path(out).is_dir() else []


def latest(out: Path) -> Path | None:
    return CheckpointManager(out).latest()


def log_records(out: Path) -> list[dict]:
    path = Path(out) / "log.txt"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def epochs_logged(out: Path) -> list[int]:
    return [r["epoch"] for r in log_records(out) if "epoch" in r]


def error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_no_traceback(proc) -> None:
    for text in (proc.stdout, proc.stderr):
        assert "Traceback" not in text, show(proc)


def assert_one_line_error(proc, *needles: str, exit_code: int | None = None) -> str:
    """Non-zero exit, exactly one non-empty stderr line containing every needle, no traceback."""
    assert proc.returncode != 0, show(proc)
    if exit_code is not None:
        assert proc.returncode == exit_code, show(proc)
    assert_no_traceback(proc)
    lines = error_lines(proc)
    assert len(lines) == 1, show(proc)
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_untouched(out: Path) -> None:
    """The output folder was not created, or is empty."""
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())
