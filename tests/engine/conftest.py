"""Generated videos and a tiny VideoMAE teacher checkpoint for the end-to-end engine tests."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import timm
import torch

import models  # noqa: F401
from datasets.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]
# every run: 8 frames of 32x32 at stride 2, pico/nano presets (patch 8: 4x4x4 = 64 tokens)
CLIP = [
    "--num_frames",
    "8",
    "--sampling_rate",
    "2",
    "--input_size",
    "32",
    "--device",
    "cpu",
    "--num_workers",
    "0",
]


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Path:
    """3 classes x 6 videos of 24 frames (train 4 / val 1 / test 1 per class)."""
    out = tmp_path_factory.mktemp("videos")
    make_synthetic_dataset(
        out, num_classes=3, videos_per_class=6, num_frames=24, width=48, height=40, seed=1,
        val_fraction=1 / 6, test_fraction=1 / 6, workers=1,
    )  # fmt: skip
    return out


def videomae_checkpoint(size: str, folder: Path) -> Path:
    """A VideoMAE-format pre-training checkpoint (encoder + decoder) of a tiny preset, seeded."""
    torch.manual_seed(0)
    model = timm.create_model(f"pretrain_videomae_{size}_patch8", img_size=32, num_frames=8, decoder_depth=1)
    path = folder / f"videomae_{size}.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory) -> Path:
    """The nano teacher used by the distillation tests."""
    return videomae_checkpoint("nano", tmp_path_factory.mktemp("teacher"))


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def distilled(videos, teacher_ckpt, tmp_path_factory) -> Path:
    """One uninterrupted ``distill_argv`` run (2 epochs: checkpoint-0/1.pth, log.txt), in a fresh process.

    Shared by every test that only reads a distilled student; read-only (copy it before writing).
    """
    out = tmp_path_factory.mktemp("distilled") / "run"
    _ok(run_script("run_mmkd_distill.py", distill_argv(videos, teacher_ckpt, out)))
    return out


@pytest.fixture(scope="session")
def finetuned(videos, tmp_path_factory) -> Path:
    """One ``finetune_argv`` run (1 epoch of a pico classifier and its final multi-view test), in a fresh
    process. Shared by every test that only reads a fine-tuned classifier; read-only (copy it before writing).
    """
    out = tmp_path_factory.mktemp("finetuned") / "run"
    _ok(run_script("run_class_finetuning.py", finetune_argv(videos, out)))
    return out


def distill_argv(videos: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return [
        *CLIP, "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
        "--model_t", "pretrain_videomae_nano_patch8", "--path_t", str(teacher), "--mask_ratio", "0.5",
        "--num_k", "3", "--num_f", "4", "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1",
        "--lr", "1e-3", "--no_lr_scale", "--output_dir", str(out), "--save_ckpt_freq", "1", "--print_freq", "100",
        *extra,
    ]  # fmt: skip


def finetune_argv(videos: Path, out: Path, *extra: str) -> list[str]:
    return [
        *CLIP, "--data_path", str(videos), "--data_set", "UCF101", "--nb_classes", "3", "--model", "vit_pico_patch8",
        "--batch_size", "4", "--num_sample", "1", "--epochs", "1", "--warmup_epochs", "0", "--lr", "1e-3",
        "--no_lr_scale", "--aa", "none", "--reprob", "0", "--test_num_segment", "2", "--test_num_crop", "2",
        "--output_dir", str(out), "--print_freq", "100", *extra,
    ]  # fmt: skip


_FORK_SERVER: list = []  # at most one ForkServer per test process, started on first use


def _fork_server():
    """One session-wide fork server: it pays for ``import torch, timm, models, ...`` (3-6 s per launch
    on 2 cores) once, then each launch is a fresh forked process (tests/faults/forkserver.py)."""
    if not _FORK_SERVER:
        from tests.faults.forkserver import ForkServer

        server = ForkServer(Path(tempfile.mkdtemp(prefix="mmkd-engine-forkserver-")))
        atexit.register(shutil.rmtree, server.workdir, ignore_errors=True)
        atexit.register(server.close)
        _FORK_SERVER.append(server)
    return _FORK_SERVER[0]


def run_script(
    script: str, argv: list[str], *, torchrun: int = 0, timeout: int = 600, env: dict | None = None
):
    """Runs an entry point in a fresh process (as a user would); returns its returncode, stdout, stderr.

    A root ``run_*.py`` without ``torchrun`` or ``env`` runs in a process forked from the session's
    fork server (its own pid, files and exit status; ``sys.exit(run(main))`` as its ``__main__``);
    the rest in a new interpreter (``env`` may hold variables that torch reads at import).
    """
    if not torchrun and env is None and script.startswith("run_") and "/" not in script:
        return _fork_server().run(script, list(map(str, argv)), timeout=timeout)
    cmd = [sys.executable, "-u"]
    if torchrun:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
        # torch 2.14's shared rendezvous store now and then aborts (SIGABRT) a 2-rank CPU group at
        # start-up; one store per launch avoids it (README, troubleshooting)
        env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **(env or {})}
    cmd += [str(ROOT / script), *argv]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
