"""Runs that change shape: a mid-epoch checkpoint resumed on another number of ranks (the same global
batch) ends at the uninterrupted run's weights; a rank that is SIGKILLed or SIGSTOPped ends the others
within --dist_timeout with one line naming it, and the job resumes with --auto_resume to the same result.

Fine-tuning, drop path / mixup / erasing off (their draws are per rank), 2 epochs x 3 steps of 4 clips.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch

from engine.checkpoint import CheckpointManager
from tests.faults.harness import (
    EPOCHS,
    FINETUNE,
    KILLER,
    argv_for,
    latest,
    ok,
    python_cmd,
    run_parallel,
    show,
)

# --print_freq 1: with several ranks the stop flag is agreed every --print_freq steps
PLAIN = ["--drop_path", "0", "--mixup", "0", "--cutmix", "0", "--print_freq", "1"]
SPLITS = {1: ["--batch_size", "4"], 2: ["--batch_size", "2"], 4: ["--batch_size", "1"]}  # global batch 4
STORE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def _argv(videos, out, *extra):
    return argv_for(FINETUNE, videos, None, out, *PLAIN, *extra)


def _cmd(videos, out, ranks: int, *extra, fault: bool = False):
    argv = _argv(videos, out, *SPLITS[ranks], *extra)
    script, argv = (KILLER, [FINETUNE, *argv]) if fault else (FINETUNE, argv)
    return python_cmd(script, argv, torchrun=ranks if ranks > 1 else 0)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _relative_gap(a, b) -> float:
    num = sum(float((a[k].float() - b[k].float()).norm() ** 2) for k in a)
    den = sum(float(a[k].float().norm() ** 2) for k in a)
    return (num / den) ** 0.5


@pytest.fixture(scope="module")
def plain_reference(videos, tmp_path_factory):
    """The uninterrupted run on one process, batch 4."""
    out = tmp_path_factory.mktemp("shape") / "ref"
    (proc,) = run_parallel([_cmd(videos, out, 1)])
    ok(proc)
    return _weights(out / f"checkpoint-{EPOCHS - 1}.pth")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("before", "after", "extra"),
    [(2, 1, ["--batch_size", "2", "--update_freq", "2"]), (1, 2, []), (2, 4, [])],
    ids=["2to1", "1to2", "2to4"],
)
def test_mid_epoch_resume_on_another_number_of_ranks(before, after, extra, videos, plain_reference, tmp_path):
    """SIGUSR1 after global step 4 (epoch 1, 4 of its 12 clips), resumed on ``after`` ranks."""
    out = tmp_path / "run"
    fault = {"MMKD_FAULT": "usr1_after_step:4", "MMKD_FAULT_RANK": "0", **STORE}
    (stopped,) = run_parallel([_cmd(videos, out, before, fault=True)], env=fault)
    assert stopped.returncode != 0 and "stopped by SIGUSR1" in stopped.stderr, show(stopped)
    assert latest(out) == CheckpointManager(out).path_for(1, 4), sorted(p.name for p in out.iterdir())
    resume = _cmd(videos, out, after, *extra)  # later flags win: 1 process x batch 2 x --update_freq 2
    (resumed,) = run_parallel([resume], env=STORE)
    ok(resumed)
    assert "continuing at epoch 1, clip 4 (step 1 of 3)" in resumed.stdout, show(resumed)
    assert f"written by {before} processes, this run has {after}" in resumed.stdout, show(resumed)
    gap = _relative_gap(plain_reference, _weights(out / f"checkpoint-{EPOCHS - 1}.pth"))
    assert gap < 1e-5, gap  # the old per-rank batch count ended 1e-1 away


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "fault"), [("slurm", "kill_after_step:4"), ("torchrun", "stop_after_step:4")]
)
def test_a_dead_or_stopped_rank_ends_the_job_naming_it(launcher, fault, videos, plain_reference, tmp_path):
    """Rank 1 dies (SIGKILL) or hangs (SIGSTOP) in epoch 1; rank 0 stops within --dist_timeout (+ a few
    beats) with one line naming rank 1; one process resumes from checkpoint-0 to the reference weights."""
    out, marker, timeout = tmp_path / "run", tmp_path / "fired", 8
    env = {"MMKD_FAULT": fault, "MMKD_FAULT_RANK": "1", "MMKD_FAULT_ONCE": str(marker), **STORE}
    argv = ["--dist_timeout", str(timeout)]
    if launcher == "torchrun":
        (proc,) = run_parallel([_cmd(videos, out, 2, *argv, fault=True)], env=env, timeout=300)
        lines = [x for x in proc.stderr.splitlines() if "has not answered" in x]
    else:  # two srun tasks: SLURM_* variables only, rank 0 hosts the store
        port = str(_port())
        cmd = python_cmd(KILLER, [FINETUNE, *_argv(videos, out, *SPLITS[2], *argv)])
        procs = []
        for rank in range(2):
            slurm = {"SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank)}
            slurm.update(SLURM_NODELIST="localhost", MASTER_PORT=port, **env)
            procs.append((cmd, slurm))
        start = time.monotonic()
        results = _run_tasks(procs)
        proc = results[0]
        assert results[1].returncode == -9, show(results[1])
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, show(proc)
        print(
            f"rank 0 ended {time.monotonic() - start:.1f} s after the launch, {_since(marker):.1f} s after the kill"
        )
    assert marker.exists(), show(proc)
    assert proc.returncode != 0 and lines and "rank 1 of 2 has not answered" in lines[0], show(proc)
    assert "Traceback" not in "\n".join(lines)
    assert latest(out) == out / "checkpoint-0.pth"
    (resumed,) = run_parallel([_cmd(videos, out, 1, "--update_freq", "1")], timeout=300)
    assert f"resumed from {out / 'checkpoint-0.pth'}" in ok(resumed).stdout
    assert _relative_gap(plain_reference, _weights(out / f"checkpoint-{EPOCHS - 1}.pth")) < 1e-5


def _since(marker) -> float:
    return time.time() - os.path.getmtime(marker)


def _run_tasks(tasks):
    """Starts each (cmd, env) as its own process and waits for all (the dead one's -9 included)."""
    import subprocess

    from tests.faults.harness import ROOT, clean_env

    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=clean_env(**e), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c, e in tasks
    ]
    out = []
    try:
        for (cmd, _), p in zip(tasks, procs):
            o, e = p.communicate(timeout=300)
            out.append(subprocess.CompletedProcess(cmd, p.returncode, o, e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out
