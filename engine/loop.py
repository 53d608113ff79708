"""The one training loop shared by pre-training, distillation and fine-tuning (evaluation: `engine.evaluation`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.distributed import get_world_size
from engine.logger import MetricLogger, TensorboardLogger
from engine.optim import apply_schedules


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the offending term(s)."""


class TooManyBadFilesError(RuntimeError):
    """More than the allowed fraction of training files failed to decode."""


@dataclass
class EpochState:
    """Counters carried across epochs (part of every checkpoint)."""

    global_step: int = 0  # optimiser steps taken so far
    skipped_steps: int = 0
    bad_files: int = 0
    seen_files: int = 0

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("global_step", "skipped_steps", "bad_files", "seen_files")}

    def restore(self, saved: dict) -> None:
        for k in self.counters():
            setattr(self, k, int(saved.get(k, 0)))


def to_device(batch: dict, device: torch.device) -> dict:
    """A training batch's tensors to ``device``, clips as shipped: the task normalises what it uses
    (`engine.tasks`; distillation only the visible tubelets)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def steps_in_epoch(num_batches: int, update_freq: int, max_steps: int = 0) -> int:
    """Optimiser steps one epoch of ``num_batches`` micro-batches makes (trailing partial windows drop)."""
    steps = num_batches // update_freq
    return min(steps, max_steps) if max_steps else steps


class _PendingMetrics:
    """Loss terms summed on the device between log lines: one host transfer per ``--print_freq`` steps.

    The non-finite check goes with it: a NaN / inf term is remembered on the device and raised (by
    name) at the next flush, which the loop runs at every log line, before any checkpoint is
    written and at the end of the epoch, so a bad step still never reaches a saved file.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.finite: dict[str, Tensor] = {}
        self.clips = 0
        self.grad_norm: Tensor | None = None
        self.skipped: Tensor | None = None

    def add(self, losses: dict[str, Tensor], n: int) -> None:
        for k, v in losses.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v * n if k in self.sums else v * n
            if k == "loss" or losses[k].requires_grad:  # loss terms; a metric (class_acc) is not checked
                ok = torch.isfinite(v)
                self.finite[k] = self.finite[k] & ok if k in self.finite else ok
        self.clips += n

    def flush(self) -> tuple[dict[str, float], int]:
        """(mean of every term since the last flush, steps skipped by the fp16 scaler); raises on NaN."""
        keys = list(self.sums)
        if not keys:
            return {}, 0
        extra = [
            self.skipped if self.skipped is not None else torch.zeros((), device=self.sums[keys[0]].device)
        ]
        flags = [self.finite[k] for k in self.finite]
        # one transfer for everything: sums, the skipped-step count and the finite flags
        values = torch.stack(
            [*(self.sums[k] for k in keys), *(e.float() for e in extra), *(f.float() for f in flags)]
        )
        host = values.tolist()
        means = {k: host[j] / self.clips for j, k in enumerate(keys)}
        skipped = int(host[len(keys)])
        bad = [k for j, k in enumerate(self.finite) if not host[len(keys) + 1 + j]]
        if bad:
            terms = [k for k in bad if k != "loss"] or ["loss"]
            values_txt = ", ".join(f"{k}={host[keys.index(k)]}" for k in terms)
            raise NonFiniteLossError(
                f"non-finite loss term(s) {values_txt}; stopping without saving "
                "(the last good checkpoint is intact: lower --lr, use --clip_grad or --precision bf16/fp32, then resume)"
            )
        self.__init__()
        return means, skipped


class TrainLoop:
    """Takes a run's micro-batches through a backend (`engine.backend`): schedules, counters, logging.

    Whoever drives it (`engine.runner.Trainer.train_epoch`) iterates :meth:`batches`, runs each with
    :meth:`micro_batch`, which says when a window's optimiser step was taken, and calls :meth:`log` at
    :meth:`log_due` micro-batches (and before writing a checkpoint), then :meth:`end_epoch`.

    As the reference: the schedule index is ``epoch * steps_per_epoch + i // update_freq`` (lr / wd
    set on every micro-batch of a window), each micro-batch back-propagates ``loss / update_freq``,
    and clipping, the optimiser step and ``zero_grad`` happen on the window's last micro-batch.
    Micro-batches past the last full window are not used.

    No host synchronisation per step: the loss terms stay on the device and are read (with the
    gradient norm, which is only computed then unless clipping needs it) at the log lines, every
    ``print_freq`` micro-batches, where the console line and TensorBoard scalars are written.
    """

    def __init__(
        self,
        backend,
        state: EpochState,
        lr_schedule: np.ndarray,
        wd_schedule: np.ndarray,
        steps_per_epoch: int,
        *,
        device: torch.device,
        update_freq: int = 1,
        print_freq: int = 10,
        max_bad_fraction: float = 0.5,
        tb: TensorboardLogger | None = None,
    ) -> None:
        self.backend, self.state, self.tb = backend, state, tb
        self.lr_schedule, self.wd_schedule, self.steps_per_epoch = lr_schedule, wd_schedule, steps_per_epoch
        self.device, self.update_freq, self.print_freq = device, update_freq, print_freq
        self.max_bad_fraction = max_bad_fraction

    def batches(self, loader: Iterable[dict], epoch: int, start_batch: int = 0) -> Iterator[tuple[int, dict]]:
        """(index in the epoch, micro-batch) of ``epoch``'s ``steps_per_epoch`` windows; ``start_batch``:
        micro-batches already done (a mid-epoch resume; ``loader`` then yields the rest)."""
        self.backend.train()
        self.meters = MetricLogger()
        self.epoch, self.start_batch = epoch, start_batch
        self.total = self.steps_per_epoch * self.update_freq
        self.backend.zero_grad()
        self.pending = _PendingMetrics()
        self.window_start, self.window_clips = time.perf_counter(), 0
        self.lr = self.wd = self.data_wait = 0.0
        t_end = time.perf_counter()
        header = f"Epoch [{epoch}]"
        batches = self.meters.log_every(loader, self.print_freq, header, total=self.total - start_batch)
        for i, batch in enumerate(batches, start=start_batch):
            if i >= self.total:
                break
            self.data_wait = time.perf_counter() - t_end
            yield i, batch
            t_end = time.perf_counter()

    def log_due(self, i: int) -> bool:
        """Whether micro-batch ``i`` ends with a log line (as the console progress line: log_every
        prints after it)."""
        return (i - self.start_batch) % self.print_freq == 0 or i == self.total - 1

    def micro_batch(
        self, i: int, batch: dict, need_norm: bool, observer: Callable[[dict], None] | None = None
    ) -> bool:
        """Forward and backward of micro-batch ``i``; True when it ended a window (an optimiser step).

        ``need_norm``: compute the gradient norm (for a log line or ``observer``) even without clipping;
        ``observer`` is called with a record of the micro-batch (the reference replay reads it).
        """
        state, backend = self.state, self.backend
        it = self.epoch * self.steps_per_epoch + i // self.update_freq
        self.lr = float(self.lr_schedule[min(it, len(self.lr_schedule) - 1)])
        self.wd = float(self.wd_schedule[min(it, len(self.wd_schedule) - 1)])
        apply_schedules(backend.optimizer, self.lr, self.wd)
        state.bad_files += int(torch.as_tensor(batch.get("n_bad", 0)).sum())
        # files, not clips: with --num_sample R a batch holds R clips of each of its videos, and
        # the collated n_bad [B] has one count per video
        n_bad = batch.get("n_bad")
        state.seen_files += len(n_bad) if isinstance(n_bad, torch.Tensor) else len(batch["video"])
        _check_bad_fraction(state, self.max_bad_fraction)
        batch = to_device(batch, self.device)
        n = len(batch["video"])
        boundary = (i + 1) % self.update_freq == 0
        with backend.accumulating(boundary):
            losses = backend.forward(batch)
            loss_backward = backend.loss_for_backward(losses["loss"], self.update_freq)
            grad_norm, skipped = backend.backward(loss_backward, boundary=boundary, need_norm=need_norm)
        self.pending.add(losses, n)
        self.window_clips += n
        if boundary:
            state.global_step += 1
            if skipped is not None:
                self.pending.skipped = (
                    skipped if self.pending.skipped is None else self.pending.skipped + skipped
                )
            if grad_norm is not None:
                self.pending.grad_norm = grad_norm
        if observer is not None:
            groups = backend.optimizer.param_groups
            observer(
                {
                    "data_iter_step": i,
                    "schedule_index": it,
                    "lr": [g["lr"] for g in groups],
                    "weight_decay": [g["weight_decay"] for g in groups],
                    "losses": {k: v.detach() for k, v in losses.items()},
                    "loss_backward": loss_backward.detach(),
                    "step_taken": boundary and not bool(skipped),
                    "grad_norm": grad_norm if boundary else None,
                }
            )
        # returning drops the step's loss graph before the next forward: held through it, it kept
        # ~20 MiB live at the paper's configuration on a CPU
        return boundary

    def log(self) -> None:
        """The terms since the last log line to the meters and TensorBoard (one host read); raises
        `NonFiniteLossError` on a NaN / inf term, so it runs before any checkpoint is written."""
        if not self.pending.clips:
            return
        grad_norm, clips = self.pending.grad_norm, self.pending.clips
        means, skipped = self.pending.flush()
        if skipped:
            self.state.skipped_steps += skipped
            print(
                f"fp16 overflow: {skipped} step(s) skipped since the last log line, loss scale {self.backend.loss_scale():g}"
            )
        now = time.perf_counter()
        clips_per_s = self.window_clips * get_world_size() / max(now - self.window_start, 1e-9)
        self.window_start, self.window_clips = time.perf_counter(), 0
        lr, wd, data_wait = self.lr, self.wd, self.data_wait
        self.meters.update(n=max(1, clips), **means)
        self.meters.update(lr=lr, wd=wd, grad_norm=grad_norm, data_wait=data_wait, clips_per_s=clips_per_s)
        if self.tb is not None:
            scalars = {f"train/{k}": v for k, v in means.items()}
            scalars.update({"opt/lr": lr, "opt/wd": wd, "opt/grad_norm": grad_norm})
            scalars.update({"perf/clips_per_s": clips_per_s, "perf/data_wait_s": data_wait})
            scale = self.backend.loss_scale()
            if scale is not None:
                scalars["opt/loss_scale"] = scale
            self.tb.update(self.state.global_step, **scalars)

    def end_epoch(self) -> dict[str, float]:
        """The epoch's last log line; its averages over ranks, with the run's skipped steps and bad files."""
        self.log()
        self.meters.synchronize_between_processes()
        stats = self.meters.global_averages()
        stats["skipped_steps"] = self.state.skipped_steps
        stats["bad_files"] = self.state.bad_files
        return stats


def _check_bad_fraction(state: EpochState, limit: float) -> None:
    if state.seen_files >= 20 and state.bad_files > limit * (state.seen_files + state.bad_files):
        raise TooManyBadFilesError(
            f"{state.bad_files} of {state.seen_files + state.bad_files} training videos failed to decode "
            f"(more than --max_bad_fraction {limit}); check --data_path / --data_root and the files"
        )
