"""Non-finite values: an fp16 overflow is absorbed by the loss scaler (step skipped, logged, training
goes on); a persistent NaN stops the run with one line naming the term, the last good checkpoint
intact and resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine.backend import TorchBackend
from engine.loop import EpochState, TrainLoop
from tests.faults.harness import (
    DISTILL,
    EPOCHS,
    FINETUNE,
    PRETRAIN,
    argv_for,
    assert_one_line_error,
    epochs_logged,
    file_sha,
    latest,
    model_digest,
    ok,
    show,
    temp_files,
)


class _OverflowOnce(nn.Module):
    """A finite loss whose scaled gradients overflow on the given calls (as fp16 would)."""

    def __init__(self, overflow_calls=(1,)):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)
        self.calls, self.overflow_calls = 0, overflow_calls

    def forward(self, batch):
        self.calls += 1
        loss = self.lin(batch["video"]).pow(2).mean()
        if self.calls in self.overflow_calls:
            loss = loss * 1e36  # finite in float32; times the scale (65536) it is inf
        return {"loss": loss}


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _epoch(task, steps=3):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert scaler.is_enabled()
    backend = TorchBackend(task, torch.optim.SGD(task.parameters(), lr=0.1), scaler)
    state = EpochState()
    loop = TrainLoop(backend, state, np.full(steps, 0.1), np.zeros(steps), steps, device=torch.device("cpu"), print_freq=100)  # fmt: skip
    g = torch.Generator().manual_seed(1)
    data = [{"video": torch.randn(4, 4, generator=g), "n_bad": 0} for _ in range(steps)]
    snapshots = [_params(task)]
    original = backend.backward

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        snapshots.append(_params(task))
        return out

    backend.backward = spy
    for i, batch in loop.batches(data, 0):  # as engine.runner.Trainer.train_epoch drives it
        loop.micro_batch(i, batch, need_norm=loop.log_due(i))
        if loop.log_due(i):
            loop.log()
    return loop.end_epoch(), state, scaler, snapshots


def test_backward_step_with_inf_gradients_skips_and_lowers_the_scale(capsys):
    task = _OverflowOnce()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    backend = TorchBackend(task, torch.optim.SGD(task.parameters(), lr=0.1), scaler)
    before = _params(task)
    loss = task({"video": torch.randn(4, 4)})["loss"]
    assert torch.isfinite(loss)
    _, skipped = backend.backward(loss)
    assert int(skipped) == 1 and scaler.get_scale() == 2.0**15 and _same(before, _params(task))


def test_fp16_overflow_once_is_absorbed_and_training_continues(capsys):
    stats, state, scaler, snapshots = _epoch(_OverflowOnce(overflow_calls=(1,)))
    assert _same(snapshots[0], snapshots[1])  # step 1: skipped, weights untouched
    assert not _same(snapshots[1], snapshots[2]) and not _same(snapshots[2], snapshots[3])  # steps 2, 3 ran
    assert all(torch.isfinite(p).all() for p in snapshots[-1])
    assert scaler.get_scale() == 2.0**15 and state.global_step == 3
    out = capsys.readouterr().out  # said at the next log line (no host sync per step)
    assert out.count("fp16 overflow: 1 step(s) skipped since the last log line, loss scale 32768") == 1


def test_skipped_fp16_step_is_counted():
    stats, state, _, _ = _epoch(_OverflowOnce(overflow_calls=(1,)))
    assert state.skipped_steps == 1 and stats["skipped_steps"] == 1


# ----- a persistent NaN ------------------------------------------------------------------------------
NAN_TERMS = {PRETRAIN: "loss", DISTILL: "hint", FINETUNE: "loss"}


@pytest.mark.parametrize("script", list(NAN_TERMS))
def test_persistent_nan_stops_cleanly_and_keeps_last_good_checkpoint(
    script, videos, teacher_ckpt, references, forkserver, tmp_path
):
    out = tmp_path / "run"
    argv = argv_for(script, videos, teacher_ckpt, out)
    # 3 steps per epoch: every forward from epoch 1 on returns NaN in one named term
    proc = forkserver.run(script, argv, env={"MMKD_FAULT": "nan_after:3"})
    line = assert_one_line_error(proc, "non-finite loss term(s)", f"{NAN_TERMS[script]}=nan", exit_code=1)
    assert "last good checkpoint is intact" in line
    good = out / "checkpoint-0.pth"
    assert latest(out) == good and not (out / "checkpoint-1.pth").exists() and temp_files(out) == []
    assert model_digest(good) == references[script]["first"]  # exactly what the clean epoch 0 wrote
    assert epochs_logged(out) == [0]
    sha = file_sha(good)

    resumed = ok(forkserver.run(script, argv))  # same command, fault gone
    assert f"resumed from {good} (epoch 0)" in resumed.stdout, show(resumed)
    assert model_digest(out / f"checkpoint-{EPOCHS - 1}.pth") == references[script]["final"]
    assert file_sha(good) == sha  # never rewritten
