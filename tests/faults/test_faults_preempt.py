"""Stop signals (SLURM's warning SIGUSR1, SIGTERM) at many points of the three entry points: the run
writes a checkpoint at the next step, exits with code 75, and the same command resumes, mid-epoch
if need be, to the weights of an uninterrupted run."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from engine.checkpoint import CheckpointManager
from engine.preempt import EXIT_PREEMPTED
from tests.faults.harness import (
    DISTILL,
    EPOCHS,
    FINETUNE,
    KILLER,
    PRETRAIN,
    argv_for,
    assert_one_line_error,
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

# 3 optimiser steps per epoch (12 clips, batch 4); one validation batch of 3 items; 12 test items.
# (script, fault, signal name, the checkpoint the stop leaves: (epoch, clips of its order done) or epoch)
POINTS = [
    (PRETRAIN, "usr1_after_step:2", "SIGUSR1", (0, 8)),  # mid-epoch 0
    (PRETRAIN, "term_after_step:4", "SIGTERM", (1, 4)),  # first step of epoch 1, SIGTERM
    (DISTILL, "usr1_after_step:1", "SIGUSR1", (0, 4)),  # the very first step
    (DISTILL, "usr1_after_step:5", "SIGUSR1", (1, 8)),
    (DISTILL, "usr1_mid_save:1", "SIGUSR1", 0),  # while writing checkpoint-0: it completes, then stop
    (DISTILL, "usr1_twice:2", "SIGUSR1", (0, 8)),  # a second signal in the middle of the stop's save
    (FINETUNE, "usr1_after_step:3", "SIGUSR1", (0, 12)),  # the epoch's last step, before validation
    (FINETUNE, "usr1_after_step:5", "SIGUSR1", (1, 8)),
    (FINETUNE, "usr1_eval:2", "SIGUSR1", (0, 12)),  # during validation: the trained epoch is kept
    (FINETUNE, "usr1_test:5", "SIGUSR1", EPOCHS - 1),  # during the multi-view test after training
]


def _id(point) -> str:
    return f"{point[0].split('_')[1]}-{point[1].replace(':', '')}"


def _expected_path(out, where):
    manager = CheckpointManager(out)
    return manager.path_for(*where) if isinstance(where, tuple) else manager.path_for(where)


@pytest.mark.parametrize("point", POINTS, ids=[_id(p) for p in POINTS])
def test_stop_signal_checkpoints_exits_75_and_resumes_to_identical_weights(
    point, videos, teacher_ckpt, references, forkserver, tmp_path
):
    script, fault, name, where = point
    out = tmp_path / "run"
    argv = argv_for(script, videos, teacher_ckpt, out)
    stopped = forkserver.run(script, argv, env={"MMKD_FAULT": fault})
    line = assert_one_line_error(
        stopped, f"stopped by {name}", "relaunch the same command", exit_code=EXIT_PREEMPTED
    )
    expected = _expected_path(out, where)
    assert latest(out) == expected, (line, sorted(p.name for p in out.iterdir()))
    assert ("multi-view test interrupted" if "test" in fault else expected.name) in line
    torch.load(expected, weights_only=True)  # complete
    assert temp_files(out) == []

    resumed = ok(forkserver.run(script, argv))
    assert f"resumed from {expected}" in resumed.stdout, show(resumed)
    assert model_digest(out / f"checkpoint-{EPOCHS - 1}.pth") == references[script]["final"], show(resumed)
    assert epochs_logged(out) == list(range(EPOCHS))  # every epoch logged once
    assert not CheckpointManager(out).mid_epoch()  # superseded by the complete epochs
    if script == FINETUNE:
        assert log_records(out)[-1]["final_test"]["num_videos"] == 3


def test_mid_epoch_checkpoints_survive_sigkill(videos, teacher_ckpt, references, forkserver, tmp_path):
    """--save_ckpt_freq_steps 2: killed after step 5, the run resumes from step 4 (epoch 1, clip 4)."""
    out = tmp_path / "run"
    argv = argv_for(DISTILL, videos, teacher_ckpt, out, "--save_ckpt_freq_steps", "2", "--keep_last", "1")
    killed = forkserver.run(DISTILL, argv, env={"MMKD_FAULT": "kill_after_step:5"})
    assert killed.returncode == -9, show(killed)
    manager = CheckpointManager(out)
    assert [key for key, _ in manager.mid_epoch()] == [(1, 4)]  # step 2's was superseded by checkpoint-0
    assert latest(out) == manager.path_for(1, 4)
    resumed = ok(forkserver.run(DISTILL, argv))
    assert "continuing at epoch 1, clip 4 (step 1 of 3)" in resumed.stdout
    assert model_digest(out / f"checkpoint-{EPOCHS - 1}.pth") == references[DISTILL]["final"]


def test_requeue_under_slurm_calls_scontrol(videos, teacher_ckpt, forkserver, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "scontrol.txt"
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "run"
    argv = argv_for(PRETRAIN, videos, teacher_ckpt, out, "--requeue")
    env = {
        "MMKD_FAULT": "usr1_after_step:2",
        "SLURM_JOB_ID": "4242",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    stopped = forkserver.run(PRETRAIN, argv, env=env)
    assert_one_line_error(stopped, "SLURM job 4242 requeued", exit_code=EXIT_PREEMPTED)
    assert record.read_text().split() == ["requeue", "4242"]


def test_bad_preempt_signal_is_a_usage_error(videos, teacher_ckpt, forkserver, tmp_path):
    proc = forkserver.run(
        PRETRAIN, argv_for(PRETRAIN, videos, teacher_ckpt, tmp_path / "x", "--preempt_signal", "HUP")
    )
    assert_one_line_error(proc, "--preempt_signal", "unknown signal", exit_code=2)


@pytest.mark.slow
@pytest.mark.parametrize("script, extra", [(DISTILL, []), (FINETUNE, []), (DISTILL, ["--enable_deepspeed"])])
def test_two_ranks_stop_together_and_resume_to_identical_weights(
    script, extra, videos, teacher_ckpt, tmp_path
):
    """Only rank 1 gets the signal; the collective on the flag stops both after the same step."""
    two = ["--batch_size", "2", "--print_freq", "1", *extra]  # 6 clips per rank: 3 steps per epoch
    ref, out = tmp_path / "ref", tmp_path / "run"
    fault = {
        "MMKD_FAULT": "usr1_after_step:4",
        "MMKD_FAULT_RANK": "1",
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
    }
    reference, stopped = run_parallel(
        [
            python_cmd(script, argv_for(script, videos, teacher_ckpt, ref, *two), torchrun=2),
            python_cmd(KILLER, [script, *argv_for(script, videos, teacher_ckpt, out, *two)], torchrun=2),
        ],
        env=fault,  # MMKD_FAULT acts in killer.py only: the reference run is clean
        timeout=600,
    )
    ok(reference)
    assert stopped.returncode != 0 and stopped.stderr.count("stopped by SIGUSR1") == 2, show(stopped)
    assert latest(out) == CheckpointManager(out).path_for(1, 4), sorted(p.name for p in out.iterdir())
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    (resumed,) = run_parallel(
        [python_cmd(script, argv_for(script, videos, teacher_ckpt, out, *two), torchrun=2)],
        env=env,
        timeout=600,
    )
    ok(resumed)
    final = f"checkpoint-{EPOCHS - 1}.pth"
    assert model_digest(out / final) == model_digest(ref / final), show(resumed)


def test_stop_inside_an_accumulation_window_waits_for_its_step(videos, teacher_ckpt, tmp_path):
    """--update_freq 2: a signal after micro-batch 3 stops after micro-batch 4 (the step), not between."""
    acc = ["--batch_size", "2", "--update_freq", "2"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    reference, stopped = run_parallel(
        [
            python_cmd(PRETRAIN, argv_for(PRETRAIN, videos, teacher_ckpt, ref, *acc)),
            python_cmd(KILLER, [PRETRAIN, *argv_for(PRETRAIN, videos, teacher_ckpt, out, *acc)]),
        ],
        env={"MMKD_FAULT": "usr1_after_step:3"},
    )
    ok(reference)
    assert_one_line_error(stopped, "checkpoint-0-8.pth", exit_code=EXIT_PREEMPTED)
    (resumed,) = run_parallel([python_cmd(PRETRAIN, argv_for(PRETRAIN, videos, teacher_ckpt, out, *acc))])
    assert "continuing at epoch 0, clip 8 (step 2 of 3)" in ok(resumed).stdout
    final = f"checkpoint-{EPOCHS - 1}.pth"
    assert model_digest(out / final) == model_digest(ref / final)
