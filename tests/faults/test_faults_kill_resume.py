"""kill -9 at many points of the three entry points, then relaunch the same command: the run resumes
from the newest complete checkpoint and ends bit-identical to an uninterrupted run; a torchrun
group survives the loss of one rank."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch

from engine.checkpoint import CheckpointManager
from tests.engine.conftest import ROOT, distill_argv
from tests.faults.harness import (
    DISTILL,
    EPOCHS,
    FINETUNE,
    KILLER,
    PRETRAIN,
    argv_for,
    clean_env,
    epochs_logged,
    latest,
    log_records,
    model_digest,
    ok,
    python_cmd,
    run_parallel,
    show,
    temp_files,
)

# (script, fault, newest complete checkpoint at the kill (None: none yet), a half-written temp file is left)
# 3 optimiser steps per epoch; 12 clip decodes per training epoch; 1 val batch (3 items); 12 test items.
POINTS = [
    (PRETRAIN, "kill_before_step:2", None, False),  # epoch 0, before its 2nd step
    (PRETRAIN, "kill_after_step:4", 0, False),  # epoch 1, right after its 1st step
    (PRETRAIN, "kill_load:20", 0, False),  # decoding clip 8 of epoch 1 (a true `python killer.py` process)
    (DISTILL, "kill_before_step:1", None, False),  # before the very first step
    (DISTILL, "kill_mid_save:1", None, True),  # writing checkpoint-0
    (DISTILL, "kill_mid_save:2", 0, True),  # writing checkpoint-1: must not shadow checkpoint-0
    (DISTILL, "kill_after_rename:1", 0, False),  # checkpoint-0 renamed into place, log line not yet written
    (DISTILL, "kill_after_step:5", 0, False),  # epoch 1, after its 2nd step
    (FINETUNE, "kill_eval:2", None, False),  # validation of epoch 0 (before checkpoint-0)
    (FINETUNE, "kill_after_step:4", 0, False),  # epoch 1, after its 1st step
    (FINETUNE, "kill_mid_save:2", 0, True),  # writing checkpoint-1
    (FINETUNE, "kill_after_rename:2", 1, False),  # checkpoint-1 in place, before the multi-view test
    (FINETUNE, "kill_test:5", 1, False),  # inside the multi-view test after training
]


def _id(point) -> str:
    return f"{point[0].split('_')[1]}-{point[1].replace(':', '')}"


@pytest.mark.parametrize("point", POINTS, ids=[_id(p) for p in POINTS])
def test_kill_and_relaunch_resumes_to_identical_weights(
    point, videos, teacher_ckpt, references, forkserver, tmp_path
):
    script, fault, good, half_written = point
    out = tmp_path / "run"
    argv = argv_for(script, videos, teacher_ckpt, out)

    # 1. the faulty run dies by SIGKILL at the chosen point
    if fault.startswith(
        "kill_load"
    ):  # the launcher as a user would run it: a true `python killer.py` process
        cmd = [sys.executable, "-u", str(ROOT / KILLER), script, *argv]
        env = clean_env(MMKD_FAULT=fault)
        killed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    else:
        killed = forkserver.run(script, argv, env={"MMKD_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, show(killed)

    # 2. what the kill left: the newest complete checkpoint is the last good one
    manager = CheckpointManager(out)
    expected = None if good is None else manager.path_for(good)
    assert latest(out) == expected, sorted(p.name for p in out.iterdir())
    assert [e for e, _ in manager.numbered()] == ([] if good is None else list(range(good + 1)))
    if expected is not None:
        torch.load(expected, weights_only=True)  # complete and loadable
    leftovers = temp_files(out)
    if half_written:  # killed inside torch.save: a hidden, truncated temp file that nothing picks up
        assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
        with pytest.raises(Exception):  # noqa: B017 - any unpickling/zip error
            torch.load(leftovers[0], weights_only=True)
    else:
        assert leftovers == []

    # 3. the same command, without the fault, resumes and ends where the uninterrupted run ends
    resumed = ok(forkserver.run(script, argv))
    if expected is None:
        assert "resumed from" not in resumed.stdout, show(resumed)
    else:
        assert f"resumed from {expected} (epoch {good})" in resumed.stdout, show(resumed)
    assert temp_files(out) == [], "temp file of the interrupted save was not cleaned up"
    final = out / f"checkpoint-{EPOCHS - 1}.pth"
    assert model_digest(final) == references[script]["final"], show(resumed)
    epochs = epochs_logged(out)
    assert epochs == sorted(set(epochs)), epochs  # no epoch logged twice
    assert epochs == list(range(EPOCHS)), epochs  # the log line is written before the checkpoint
    if script == FINETUNE:
        assert "multi-view test: top-1" in resumed.stdout
        assert log_records(out)[-1]["final_test"]["num_videos"] == 3


def test_truncated_numbered_checkpoint_never_shadows_the_last_good_one(
    videos, teacher_ckpt, references, forkserver, tmp_path
):
    """A half-written checkpoint-1.pth under the real name (e.g. copied by hand, disk trouble) is skipped
    with a warning; the relaunch resumes from checkpoint-0 and still ends bit-identical."""
    out = tmp_path / "run"
    argv = argv_for(DISTILL, videos, teacher_ckpt, out)
    assert (
        forkserver.run(DISTILL, argv, env={"MMKD_FAULT": "kill_after_step:5"}).returncode == -signal.SIGKILL
    )
    data = references[DISTILL]["out"].joinpath("checkpoint-1.pth").read_bytes()
    (out / "checkpoint-1.pth").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert latest(out) == out / "checkpoint-0.pth"
    resumed = ok(forkserver.run(DISTILL, argv))
    assert f"skipping unreadable checkpoint: checkpoint {out / 'checkpoint-1.pth'}" in resumed.stderr
    assert f"resumed from {out / 'checkpoint-0.pth'} (epoch 0)" in resumed.stdout, show(resumed)
    assert model_digest(out / "checkpoint-1.pth") == references[DISTILL]["final"]


def test_kill_between_checkpoint_rename_and_log_line_keeps_the_log_complete(
    videos, teacher_ckpt, forkserver, tmp_path
):
    out = tmp_path / "run"
    argv = argv_for(DISTILL, videos, teacher_ckpt, out)
    assert (
        forkserver.run(DISTILL, argv, env={"MMKD_FAULT": "kill_after_rename:1"}).returncode == -signal.SIGKILL
    )
    ok(forkserver.run(DISTILL, argv))
    assert epochs_logged(out) == list(range(EPOCHS))


@pytest.mark.slow
def test_reference_runs_are_reproducible_in_forked_processes(
    references, videos, teacher_ckpt, forkserver, tmp_path
):
    """The references are true subprocesses; a fork-server launch of the same command matches them."""
    out = tmp_path / "again"
    ok(forkserver.run(DISTILL, argv_for(DISTILL, videos, teacher_ckpt, out)))
    assert model_digest(out / f"checkpoint-{EPOCHS - 1}.pth") == references[DISTILL]["final"]


def _torchrun_kill_rank1(videos, teacher_ckpt, tmp_path, **env):
    out, marker = tmp_path / "ddp", tmp_path / "rank1-killed-once"
    argv = distill_argv(
        videos, teacher_ckpt, out, "--batch_size", "2", "--deterministic"
    )  # 3 steps/epoch/rank
    cmd = python_cmd(KILLER, [DISTILL, *argv], torchrun=2, max_restarts=1)
    env = {"MMKD_FAULT": "kill_after_step:4", "MMKD_FAULT_RANK": "1", "MMKD_FAULT_ONCE": str(marker), **env}
    (proc,) = run_parallel([cmd], env=env, timeout=240)
    assert marker.exists(), "the fault never fired\n" + show(proc)
    return proc, out


@pytest.mark.slow
def test_torchrun_restarts_group_after_one_rank_is_killed(videos, teacher_ckpt, tmp_path):
    """Rank 1 SIGKILLs itself mid-epoch 1 (once); torchrun --max-restarts=1 restarts the group, which
    auto-resumes from checkpoint-0 and finishes with identical weights on both ranks.

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 gives each attempt a fresh store: torchrun's default shared
    store (torch 2.14) keeps the killed attempt's keys, and a restarted rank that reads its peer's gloo
    address before the peer rewrote it connects to the dead process (a race; see the report)."""
    proc, out = _torchrun_kill_rank1(videos, teacher_ckpt, tmp_path, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    assert proc.returncode == 0, show(proc)
    assert f"resumed from {out / 'checkpoint-0.pth'} (epoch 0)" in proc.stdout, show(proc)
    assert "final weights identical on all 2 rank(s)" in proc.stdout, show(proc)
    assert (out / f"checkpoint-{EPOCHS - 1}.pth").is_file() and temp_files(out) == []
    assert epochs_logged(out) == list(range(EPOCHS))
