"""The training loop reads nothing back to the host per step: only at its log lines."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from torch import nn

from engine.backend import TorchBackend
from engine.loop import EpochState, NonFiniteLossError, TrainLoop


class _Task(nn.Module):
    def __init__(self, nan_from: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)
        self.calls, self.nan_from = 0, nan_from

    def forward(self, batch):
        self.calls += 1
        out = self.lin(batch["video"])
        term = out.pow(2).mean()
        if self.nan_from is not None and self.calls >= self.nan_from:
            term = term * float("nan")
        return {"loss": term + out.abs().mean(), "term": term, "metric": out.detach().mean()}


def _run(task, steps: int, print_freq: int, clip_grad=None):
    backend = TorchBackend(task, torch.optim.SGD(task.parameters(), lr=0.1), clip_grad=clip_grad)
    sched = np.full(steps, 0.1)
    loop = TrainLoop(backend, EpochState(), sched, np.zeros(steps), steps, device=torch.device("cpu"), print_freq=print_freq)  # fmt: skip
    g = torch.Generator().manual_seed(1)
    data = [{"video": torch.randn(4, 4, generator=g), "n_bad": 0} for _ in range(steps)]
    for i, batch in loop.batches(data, 0):  # as engine.runner.Trainer.train_epoch drives it
        loop.micro_batch(i, batch, need_norm=loop.log_due(i))
        if loop.log_due(i):
            loop.log()
    return loop.end_epoch()


@pytest.mark.parametrize("clip_grad", [None, 1.0])
def test_host_reads_happen_only_at_log_lines(monkeypatch, clip_grad):
    reads = []

    def counted(name):
        original = getattr(torch.Tensor, name)

        def read(self, *a, **k):
            if (
                self.is_floating_point() or self.dtype == torch.bool
            ):  # computed values, not the batch's counters
                reads.append(name)
            return original(self, *a, **k)

        return read

    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    stats = _run(_Task(), steps=40, print_freq=20, clip_grad=clip_grad)
    # log lines at micro-batches 0, 20 and 39: one tolist of the pending sums each, plus the
    # grad-norm meter (an item) at each line; never once per step
    assert len(reads) <= 8, reads
    assert stats["loss"] > 0 and np.isfinite(stats["term"]) and "metric" in stats


def test_a_nan_term_is_still_caught_and_named():
    with pytest.raises(NonFiniteLossError, match=r"term=nan"):
        _run(_Task(nan_from=5), steps=12, print_freq=100)


def test_a_steps_outputs_are_released_before_the_next_forward():
    """The loop keeps no step's outputs (and so no loss graph) alive into the next step's forward."""

    class _Watched(_Task):
        def __init__(self):
            super().__init__()
            self.previous, self.alive_at_forward = None, []

        def forward(self, batch):
            if self.previous is not None:
                self.alive_at_forward.append(self.previous() is not None)
            out = super().forward(batch)
            self.previous = weakref.ref(out["loss"])
            return out

    task = _Watched()
    _run(task, steps=6, print_freq=4)
    assert task.alive_at_forward == [False] * 5
