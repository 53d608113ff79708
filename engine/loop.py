"""The one training loop shared by pre-training, distillation and fine-tuning, and the eval loops."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from engine import preempt
from engine.distributed import all_reduce_mean, get_world_size
from engine.logger import MetricLogger, TensorboardLogger
from engine.optim import apply_schedules
from models.targets import normalized


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the message names the offending term(s)."""


class TooManyBadFilesError(RuntimeError):
    """More than the allowed fraction of training files failed to decode."""


@dataclass
class StepConfig:
    """How one optimisation step is run."""

    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    scaler: torch.amp.GradScaler | None = None
    clip_grad: float | None = None
    print_freq: int = 10
    max_steps: int = 0  # 0: whole epoch (counted in optimiser steps)
    max_bad_fraction: float = 0.5
    deepspeed_engine: object | None = None  # when set, it owns backward / step / clipping / scaling
    update_freq: int = 1  # micro-batches accumulated per optimiser step (--update_freq)
    ema: object | None = None  # timm ModelEmaV2 of ``ema_source``, updated after every optimiser step
    ema_source: nn.Module | None = None
    observer: Callable[[dict], None] | None = None  # called with a record of every micro-batch
    # after every optimiser step: after_step(epoch, micro-batches done this epoch, flush); it may save
    # (calling flush() first: the pending non-finite check), or raise (engine.preempt.Preempted)
    after_step: Callable[[int, int, Callable[[], None]], None] | None = None


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


def video_to_device(video: Tensor, device: torch.device) -> Tensor:
    """Clips to ``device``; uint8 clips (what the engine's data sets return) are normalised there."""
    return normalized(video.to(device, non_blocking=True))


def to_device(batch: dict, device: torch.device) -> dict:
    """A training batch's tensors to ``device``, clips as shipped: the task normalises what it uses
    (`engine.tasks`; distillation only the visible tubelets)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _grad_norm(params: Iterable[Tensor]) -> Tensor:
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return torch.stack([g.norm() for g in grads]).norm() if grads else torch.zeros(())


def steps_in_epoch(num_batches: int, update_freq: int, max_steps: int = 0) -> int:
    """Optimiser steps one epoch of ``num_batches`` micro-batches makes (trailing partial windows drop)."""
    steps = num_batches // update_freq
    return min(steps, max_steps) if max_steps else steps


def _no_sync(task: nn.Module, boundary: bool):
    # DDP all-reduces gradients in backward; accumulation micro-steps skip it until the last one
    if not boundary and isinstance(task, nn.parallel.DistributedDataParallel):
        return task.no_sync()
    return contextlib.nullcontext()


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


def train_one_epoch(
    task: nn.Module,
    loader: Iterable[dict],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    cfg: StepConfig,
    state: EpochState,
    lr_schedule: np.ndarray,
    wd_schedule: np.ndarray,
    steps_per_epoch: int,
    tb: TensorboardLogger | None = None,
    *,
    start_batch: int = 0,
) -> dict[str, float]:
    """One epoch of ``steps_per_epoch`` optimiser steps of ``cfg.update_freq`` micro-batches each.

    ``start_batch``: micro-batches of this epoch already done (a mid-epoch resume; ``loader`` then
    yields the rest).

    As the reference: the schedule index is ``epoch * steps_per_epoch + i // update_freq`` (lr / wd
    set on every micro-batch of a window), each micro-batch back-propagates ``loss / update_freq``,
    and clipping, the optimiser step, ``zero_grad`` and the EMA update happen on the window's last
    micro-batch. Micro-batches past the last full window are not used.

    No host synchronisation per step: the loss terms stay on the device and are read (with the
    gradient norm, which is only computed then unless clipping needs it) every ``print_freq``
    micro-batches, where the console line and TensorBoard scalars are written.
    """
    task.train()
    meters = MetricLogger()
    engine = cfg.deepspeed_engine
    opt = engine.optimizer if engine is not None else optimizer
    params = [p for p in task.parameters() if p.requires_grad]
    accum = cfg.update_freq
    total = min(steps_per_epoch, cfg.max_steps) * accum if cfg.max_steps else steps_per_epoch * accum
    if engine is None:
        optimizer.zero_grad(set_to_none=True)
    pending = _PendingMetrics()
    window_start, window_clips = time.perf_counter(), 0

    def flush(lr: float, wd: float, data_wait: float) -> None:
        nonlocal window_start, window_clips
        if not pending.clips:
            return
        grad_norm, clips = pending.grad_norm, pending.clips
        means, skipped = pending.flush()
        if skipped:
            state.skipped_steps += skipped
            print(
                f"fp16 overflow: {skipped} step(s) skipped since the last log line, loss scale {cfg.scaler.get_scale():g}"
            )
        clips_per_s = window_clips * get_world_size() / max(time.perf_counter() - window_start, 1e-9)
        window_start, window_clips = time.perf_counter(), 0
        meters.update(n=max(1, clips), **means)
        meters.update(lr=lr, wd=wd, grad_norm=grad_norm, data_wait=data_wait, clips_per_s=clips_per_s)
        if tb is not None:
            scalars = {f"train/{k}": v for k, v in means.items()}
            scalars.update({"opt/lr": lr, "opt/wd": wd, "opt/grad_norm": grad_norm})
            scalars.update({"perf/clips_per_s": clips_per_s, "perf/data_wait_s": data_wait})
            if cfg.scaler is not None and cfg.scaler.is_enabled():
                scalars["opt/loss_scale"] = cfg.scaler.get_scale()
            tb.update(state.global_step, **scalars)

    t_end = time.perf_counter()
    lr = wd = data_wait = 0.0
    batches = meters.log_every(loader, cfg.print_freq, f"Epoch [{epoch}]", total=total - start_batch)
    for i, batch in enumerate(batches, start=start_batch):
        if i >= total:
            break
        data_wait = time.perf_counter() - t_end
        it = epoch * steps_per_epoch + i // accum
        lr = float(lr_schedule[min(it, len(lr_schedule) - 1)])
        wd = float(wd_schedule[min(it, len(wd_schedule) - 1)])
        apply_schedules(opt, lr, wd)
        state.bad_files += int(torch.as_tensor(batch.get("n_bad", 0)).sum())
        # files, not clips: with --num_sample R a batch holds R clips of each of its videos, and
        # the collated n_bad [B] has one count per video
        n_bad = batch.get("n_bad")
        state.seen_files += len(n_bad) if isinstance(n_bad, torch.Tensor) else len(batch["video"])
        _check_bad_fraction(state, cfg.max_bad_fraction)
        batch = to_device(batch, cfg.device)
        n = len(batch["video"])
        log_now = (
            i - start_batch
        ) % cfg.print_freq == 0 or i == total - 1  # log_every prints after this body

        boundary = (i + 1) % accum == 0
        with _no_sync(task, boundary):
            with cfg.autocast():
                losses = (engine or task)(batch)
            loss_backward = losses["loss"] / accum if engine is None else losses["loss"]
            need_norm = log_now or cfg.observer is not None
            grad_norm, _, skipped = _backward_step(
                loss_backward, task, optimizer, params, cfg, boundary=boundary, need_norm=need_norm
            )
        pending.add(losses, n)
        window_clips += n
        if boundary:
            state.global_step += 1
            if skipped is not None:
                pending.skipped = skipped if pending.skipped is None else pending.skipped + skipped
            if grad_norm is not None:
                pending.grad_norm = grad_norm
            if cfg.ema is not None:  # after every optimiser step, as the reference (also a skipped fp16 one)
                cfg.ema.update(cfg.ema_source)
            if cfg.after_step is not None:
                cfg.after_step(epoch, i + 1, partial(flush, lr, wd, data_wait))
        if cfg.observer is not None:
            cfg.observer(
                {
                    "data_iter_step": i,
                    "schedule_index": it,
                    "lr": [g["lr"] for g in opt.param_groups],
                    "weight_decay": [g["weight_decay"] for g in opt.param_groups],
                    "losses": {k: v.detach() for k, v in losses.items()},
                    "loss_backward": loss_backward.detach(),
                    "step_taken": boundary and not bool(skipped),
                    "grad_norm": grad_norm if boundary else None,
                }
            )
        if log_now:
            flush(lr, wd, data_wait)
        # the step's loss graph, held until the next forward returns, kept ~20 MiB live through it at
        # the paper's configuration on a CPU (the steps' peak RSS then matched the bare step's)
        del losses, loss_backward
        t_end = time.perf_counter()
    flush(lr, wd, data_wait)  # the epoch's last terms (a no-op when just flushed)
    meters.synchronize_between_processes()
    stats = meters.global_averages()
    stats["skipped_steps"] = state.skipped_steps
    stats["bad_files"] = state.bad_files
    return stats


def _check_bad_fraction(state: EpochState, limit: float) -> None:
    if state.seen_files >= 20 and state.bad_files > limit * (state.seen_files + state.bad_files):
        raise TooManyBadFilesError(
            f"{state.bad_files} of {state.seen_files + state.bad_files} training videos failed to decode "
            f"(more than --max_bad_fraction {limit}); check --data_path / --data_root and the files"
        )


def _backward_step(
    loss, task, optimizer, params, cfg: StepConfig, boundary: bool = True, need_norm: bool = True
) -> tuple[Tensor | None, Tensor | float | None, Tensor | None]:
    """Backward of ``loss``; on a window's last micro-batch (``boundary``) the (clipped) optimiser step.

    Returns (pre-clip gradient norm, or None between steps and when neither clipping nor
    ``need_norm`` asks for it; loss scale or None; a 0-dim tensor that is 1 when the fp16 scaler
    skipped the step, or None). Nothing here reads a value back to the host.
    """
    engine = cfg.deepspeed_engine
    if engine is not None:  # it accumulates (gradient_accumulation_steps) and divides the loss itself
        skips_before = getattr(engine, "skipped_steps", 0)  # DeepSpeed counts its fp16 overflow skips
        engine.backward(loss)
        engine.step()
        if not boundary:
            return None, None, None
        norm = engine.get_global_grad_norm()
        scale = getattr(engine.optimizer, "cur_scale", None) if engine.fp16_enabled() else None
        skipped = torch.tensor(int(getattr(engine, "skipped_steps", 0) > skips_before))
        return (torch.as_tensor(norm) if norm is not None else None), scale, skipped
    scaler = cfg.scaler
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        if not boundary:
            return None, None, None
        scaler.unscale_(optimizer)
        norm = _clip(params, cfg.clip_grad, need_norm)
        before = _scale_tensor(scaler)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        after = _scale_tensor(scaler)
        return norm, after, (after < before).to(torch.int64)  # inf/NaN gradients: the step was skipped
    loss.backward()
    if not boundary:
        return None, None, None
    norm = _clip(params, cfg.clip_grad, need_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm, None, None


def _scale_tensor(scaler: torch.amp.GradScaler) -> Tensor:
    # the scaler's scale as a device tensor (get_scale() would read it back to the host every step)
    return (
        scaler._scale.detach().clone()
        if getattr(scaler, "_scale", None) is not None
        else torch.tensor(scaler.get_scale())
    )


def _clip(params: list[Tensor], clip_grad: float | None, need_norm: bool = True) -> Tensor | None:
    """Pre-clip total gradient norm; with ``clip_grad`` every gradient is scaled by min(1, clip/(norm+1e-6))."""
    if clip_grad:
        return torch.nn.utils.clip_grad_norm_(params, clip_grad)
    return _grad_norm(params) if need_norm else None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict],
    device: torch.device,
    autocast,
    print_freq: int = 10,
    reduce: bool = True,
) -> dict:
    """One-clip validation. Broken videos (``valid`` False) are excluded and counted, never replaced.

    ``reduce``: the loader is sharded over ranks (``--dist_eval``), so sum the counts over ranks.
    """
    model.eval()
    meters = MetricLogger()
    correct1 = correct5 = seen = excluded = 0
    loss_sum = 0.0
    for batch in meters.log_every(loader, print_freq, "Val"):
        if preempt.stop_requested():  # local: ranks may hold different numbers of batches
            preempt.leave("validation interrupted")
        valid = torch.as_tensor(batch.get("valid", torch.ones(len(batch["label"]), dtype=torch.bool)))
        excluded += int((~valid).sum())
        if not valid.any():
            continue
        video = video_to_device(batch["video"][valid], device)
        label = torch.as_tensor(batch["label"])[valid].to(device)
        with autocast():
            logits = model(video).float()
        loss_sum += float(torch.nn.functional.cross_entropy(logits, label, reduction="sum"))
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top5[:, 0] == label).sum())
        correct5 += int((top5 == label[:, None]).any(dim=1).sum())
        seen += len(label)
    totals = torch.tensor([correct1, correct5, seen, excluded, loss_sum], dtype=torch.float64)
    if reduce:
        totals = all_reduce_mean(totals) * get_world_size()
    c1, c5, n, ex, ls = totals.tolist()
    if ex:
        print(f"validation: {int(ex)} broken video(s) excluded from the metric")
    n = max(n, 1)
    return {
        "acc1": 100 * c1 / n,
        "acc5": 100 * c5 / n,
        "loss": ls / n,
        "num_videos": int(n),
        "excluded": int(ex),
    }


@torch.no_grad()
def predict_views(
    model: nn.Module, loader: Iterable[dict], device: torch.device, autocast, print_freq: int = 10
):
    """Multi-view test: yields (video_id, logits list, label, chunk, crop) per valid view; counts broken ones."""
    model.eval()
    meters = MetricLogger()
    rows, broken = [], set()
    for batch in meters.log_every(loader, print_freq, "Test"):
        if preempt.stop_requested():
            preempt.leave(
                "multi-view test interrupted (nothing of it written); training checkpoints are complete"
            )
        valid = torch.as_tensor(batch["valid"])
        for j in torch.nonzero(~valid).flatten().tolist():
            broken.add(batch["video_id"][j])
        if not valid.any():
            continue
        with autocast():
            logits = model(video_to_device(batch["video"][valid], device)).float().cpu()
        idx = torch.nonzero(valid).flatten().tolist()
        for row, j in zip(logits, idx):
            rows.append(
                (
                    batch["video_id"][j],
                    row.tolist(),
                    int(batch["label"][j]),
                    int(batch["chunk"][j]),
                    int(batch["crop"][j]),
                )
            )
    return rows, sorted(broken)
