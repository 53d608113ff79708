"""Set-up and the epoch driver shared by the three entry points: seeds, loaders, optimiser,
schedules, and the `Trainer`, which drives every step (`engine.loop.TrainLoop`) through a backend
(`engine.backend`: torch / DDP or DeepSpeed) and saves / resumes through `engine.checkpointer`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV2
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from common import cpu_gemm
from common.cli import UsageError
from datasets import collate_batch
from engine import preempt
from engine.backend import build_backend
from engine.checkpoint import CheckpointError
from engine.checkpointer import Checkpointer
from engine.config import OptimConfig, TaskConfig
from engine.distributed import (
    DistEnv,
    Heartbeat,
    all_gather_object,
    barrier,
    broadcast_object,
    init_distributed,
)
from engine.logger import TensorboardLogger, append_json_line, save_args
from engine.loop import EpochState, TrainLoop, steps_in_epoch
from engine.optim import build_optimizer, cosine_scheduler
from engine.samplers import TrainSampler, VideoShardSampler


def setup(cfg: TaskConfig) -> DistEnv:
    """Process group, device, seeds (seed + rank), deterministic mode, stop-signal handlers."""
    run = cfg.run
    preempt.install(run.preempt_signal, run.requeue)
    cpu_gemm.set_enabled(cfg.model.cpu_gemm == "onednn")
    env = init_distributed(run.device, run.dist_url, run.dist_timeout)
    seed = run.seed + env.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return env


def _seed_worker(worker_id: int) -> None:
    # each worker derives python/numpy seeds from its torch seed (itself from the loader's RNG draw)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset, cfg: TaskConfig, env: DistEnv, train: bool, shard: bool = True
) -> DataLoader:
    """Training: shuffled, sharded over ranks, drop_last. Eval: ordered, sharded when ``shard``
    (by whole videos where the data set numbers its views video-major, see `VideoShardSampler`)."""
    views = getattr(dataset, "views_per_video", None)
    if train:
        sampler = TrainSampler(dataset, env.world_size, env.rank, seed=cfg.run.seed)
    elif env.distributed and shard and views is not None:
        sampler = VideoShardSampler(len(dataset), views, env.world_size, env.rank)
    elif env.distributed and shard:
        sampler = DistributedSampler(dataset, env.world_size, env.rank, shuffle=False)
    else:
        sampler = SequentialSampler(dataset)
    batch_size = cfg.optim.batch_size
    if train and len(sampler) < batch_size:
        raise UsageError(
            f"--batch_size {batch_size} is larger than the {len(sampler)} training clips per process; lower --batch_size"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=cfg.data.pin_mem and env.device.type == "cuda",
        drop_last=train,
        collate_fn=collate_batch,
        worker_init_fn=_seed_worker,
        persistent_workers=False,
        # the loader's own seed draws (worker seeds) stay off the global RNG, whose state a
        # mid-epoch checkpoint restores: a resumed epoch then draws dropout / mixup as the original
        generator=torch.Generator().manual_seed(cfg.run.seed + env.rank),
    )


def total_batch_size(optim: OptimConfig, env: DistEnv) -> int:
    """Clips per optimiser step: batch per process x --update_freq x processes."""
    return optim.batch_size * optim.update_freq * env.world_size


def scaled_lr(optim: OptimConfig, env: DistEnv) -> tuple[float, float]:
    """(lr, min_lr) scaled by the total batch / 256, as the reference scripts do."""
    if optim.no_lr_scale:
        return optim.lr, optim.min_lr
    factor = total_batch_size(optim, env) / 256
    return optim.lr * factor, optim.min_lr * factor


def build_schedules(optim: OptimConfig, env: DistEnv, steps_per_epoch: int):
    """Per-optimiser-step lr and wd schedules (the reference's; its warm-up starts at 0, not at the
    scaled --warmup_lr, which the reference computes but never passes on)."""
    lr, min_lr = scaled_lr(optim, env)
    epochs = optim.epochs
    lr_schedule = cosine_scheduler(
        lr, min_lr, epochs, steps_per_epoch, optim.warmup_epochs, 0.0, optim.warmup_steps
    )
    wd_schedule = cosine_scheduler(optim.weight_decay, optim.weight_decay_end, epochs, steps_per_epoch)
    return lr_schedule, wd_schedule


class Trainer:
    """Runs epochs of one task: resume, train, evaluate, save, log.

    It drives every step itself: the loop (`engine.loop.TrainLoop`) takes a micro-batch, the backend
    (`engine.backend`: plain torch / DDP, or DeepSpeed) does backward and the optimiser step, the
    `engine.checkpointer.Checkpointer` writes and resumes; what happens after a step (a checkpoint,
    a stop) is decided here, in `after_step`.
    """

    def __init__(
        self,
        cfg: TaskConfig,
        env: DistEnv,
        task: nn.Module,
        loader: Iterable[dict],
        evaluate: Callable[[nn.Module], dict] | None = None,
    ):
        """``task`` owns its parameter groups (``task.parameter_groups(weight_decay)``); ``loader`` is
        any sized iterable of batches; ``evaluate(model)`` (fine-tuning) validates a classifier."""
        self.cfg, self.env, self.task, self.loader = cfg, env, task.to(env.device), loader
        self.evaluate = evaluate
        optim, run = cfg.optim, cfg.run
        self.steps_per_epoch = steps_in_epoch(len(loader), optim.update_freq, run.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise UsageError(
                f"an epoch has {len(loader)} batches per process, fewer than --update_freq {optim.update_freq}; "
                "lower --update_freq or --batch_size"
            )
        self.lr_schedule, self.wd_schedule = build_schedules(optim, env, self.steps_per_epoch)
        print(
            f"total batch {total_batch_size(optim, env)} clips per step (--batch_size {optim.batch_size} x "
            f"--update_freq {optim.update_freq} x {env.world_size} processes), {self.steps_per_epoch} steps per epoch, "
            f"peak lr {self.lr_schedule.max():.3g}"
        )
        # the EMA starts from the initial weights, before any step (timm's ModelEmaV2: the reference's formula)
        self.ema = None
        if cfg.ema is not None and cfg.ema.model_ema:
            device = "cpu" if cfg.ema.model_ema_force_cpu else None
            self.ema = ModelEmaV2(task.model, decay=cfg.ema.model_ema_decay, device=device)
        self.optimizer = build_optimizer(
            task.parameter_groups(optim.weight_decay),
            opt=optim.opt,
            lr=self.lr_schedule[0] if len(self.lr_schedule) else optim.lr,
            weight_decay=optim.weight_decay,
            opt_betas=optim.opt_betas,
            opt_eps=optim.opt_eps,
            momentum=optim.momentum,
        )
        self.backend = build_backend(self.task, self.optimizer, cfg, env)
        self.state = EpochState()
        self.checkpointer = Checkpointer(cfg, env, self.task, self.backend, self.state, self.ema)
        self.tb = TensorboardLogger(run.log_dir if env.is_main else None)
        self.loop = TrainLoop(
            self.backend,
            self.state,
            self.lr_schedule,
            self.wd_schedule,
            self.steps_per_epoch,
            device=env.device,
            update_freq=optim.update_freq,
            print_freq=run.print_freq,
            max_bad_fraction=cfg.data.max_bad_fraction,
            tb=self.tb,
        )

    # ----- steps -------------------------------------------------------------------------
    def train_epoch(self, epoch: int, observer: Callable[[dict], None] | None = None) -> dict[str, float]:
        """One training epoch over ``self.loader`` (what :meth:`fit` runs per epoch); ``observer`` sees a
        record of each micro-batch (`engine.loop.TrainLoop.micro_batch`)."""
        start = self._position_data(epoch)
        loop = self.loop
        for i, batch in loop.batches(self.loader, epoch, start):
            log_now = loop.log_due(i)
            if loop.micro_batch(i, batch, need_norm=log_now or observer is not None, observer=observer):
                # the EMA follows every optimiser step, as the reference's (also a skipped fp16 one)
                if self.ema is not None:
                    self.ema.update(self.task.model)
                self.after_step(epoch, i + 1)
            if log_now:
                loop.log()
        return loop.end_epoch()

    def _position_data(self, epoch: int) -> int:
        """Sets the sampler / data set to ``epoch`` (past what a mid-epoch resume covers); returns the
        micro-batch the epoch starts at."""
        sampler = getattr(self.loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        start_clip = self.checkpointer.start_clip_of(epoch)
        if start_clip and isinstance(sampler, TrainSampler):
            sampler.skip(min(start_clip, sampler.total_size))  # clips of the global order
        dataset = getattr(self.loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):  # clips, crops and masks are drawn per (seed, epoch, item)
            dataset.set_epoch(epoch)
        return self.checkpointer.start_batch_of(epoch)

    def after_step(self, epoch: int, batches_done: int) -> None:
        """After every optimiser step (and its EMA update): a mid-epoch checkpoint every
        --save_ckpt_freq_steps steps, and on an agreed stop signal."""
        step = self.state.global_step
        # the stop flag is a collective with several ranks: asked every --print_freq steps (a host
        # sync), every step in a single process (a local flag)
        every = 1 if self.env.world_size == 1 else max(1, self.cfg.run.print_freq)
        stop = step % every == 0 and preempt.current().agreed()
        freq = self.cfg.run.save_ckpt_freq_steps
        if stop or (freq and step % freq == 0):
            self.loop.log()  # the pending non-finite check: a bad step never reaches a checkpoint
            path = self.checkpointer.save(epoch, batches_done=batches_done)
            if stop:
                self._leave(f"checkpoint {_name(path)} written after step {step}")

    def _leave(self, what: str) -> None:
        self.tb.close()
        preempt.leave(what)

    # ----- epochs ------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        # a collective failing because a rank died or hangs ends in one line naming it, not gloo's trace
        with Heartbeat.explain_failures():
            self.checkpointer.resume(self.steps_per_epoch)
            try:
                history = self._epochs()
            finally:  # also on a failed epoch: the scalars written so far reach the event file
                self.tb.close()
            self._check_ranks_agree()
        return history

    def _validate(self, epoch: int, record: dict) -> bool:
        """Validation of the model (and its EMA); returns whether this epoch is the best so far.

        The decision is rank 0's, broadcast: without --dist_eval every rank validates on its own,
        and a split decision would send only some ranks into the collectives of a save.
        """
        ckpt = self.checkpointer
        try:
            val = self.evaluate(self.task.model)
            ema_val = self.evaluate(self.ema.module) if self.ema is not None else None
        except preempt.Preempted:  # a stop signal during validation: keep the trained epoch
            path = ckpt.save(epoch, batches_done=self.steps_per_epoch * self.cfg.optim.update_freq)
            self._leave(f"validation of epoch {epoch} interrupted; checkpoint {_name(path)} written")
        for prefix, result in (("val", val), ("val_ema", ema_val)):
            if result is not None:
                record.update({f"{prefix}_{k}": v for k, v in result.items()})
                self.tb.update(
                    epoch, **{f"{prefix}/{k}": v for k, v in result.items() if isinstance(v, float)}
                )
        is_best = ckpt.best is None or val["acc1"] > ckpt.best
        is_best = bool(broadcast_object(is_best))
        ckpt.best = broadcast_object(max(ckpt.best or val["acc1"], val["acc1"]))
        return is_best

    def _epochs(self) -> list[dict]:
        epochs, run, ckpt = self.cfg.optim.epochs, self.cfg.run, self.checkpointer
        history = []
        for epoch in range(ckpt.start_epoch, epochs):
            stats = self.train_epoch(epoch)
            record = {"epoch": epoch, **{f"train_{k}": v for k, v in stats.items()}}
            is_best = self._validate(epoch, record) if self.evaluate is not None else False
            last = epoch + 1 == epochs
            # the log line goes first: a kill between the two repeats the epoch (and its line) on resume
            self._append_log(record)
            saved = (epoch + 1) % run.save_ckpt_freq == 0 or last or is_best
            if saved:
                ckpt.save(epoch, is_best)
            self.tb.flush()
            if preempt.current().agreed():  # a signal during the epoch's validation or save
                path = ckpt.path_for(epoch) if saved else ckpt.save(epoch)
                self._leave(f"epoch {epoch} complete, checkpoint {_name(path)} written")
            history.append(record)
            if run.stop_after_epoch is not None and epoch >= run.stop_after_epoch:
                print(
                    f"stopping after epoch {epoch} (--stop_after_epoch); relaunch the same command to resume"
                )
                break
        return history

    def _append_log(self, record: dict) -> None:
        """Rank 0 appends the epoch's line to log.txt; a failed write (disk full, read-only folder) is cut
        back to the last whole line and ends every rank with one line, as a failed save does."""
        failure = None
        if self.env.is_main and self.cfg.run.output_dir:
            log = Path(self.cfg.run.output_dir) / "log.txt"
            size = log.stat().st_size if log.is_file() else 0
            try:
                append_json_line(log, record)
            except OSError as err:
                with contextlib.suppress(OSError):  # a half line would break the next resume's reading
                    os.truncate(log, size)
                kept = self.checkpointer.kept(fallback=str(log.parent))
                failure = f"could not append to {log}: {type(err).__name__}: {err.strerror or err}; {kept}"
        failure = broadcast_object(failure)
        if failure is not None:
            raise CheckpointError(failure)

    def _check_ranks_agree(self) -> None:
        """Data-parallel replicas must end bit-identical; say so (or fail loudly) on every run."""
        digest = weights_digest(self.task.checkpoint_state())
        digests = all_gather_object(digest)
        if len(set(digests)) > 1:
            raise RuntimeError(f"data-parallel ranks ended with different weights: {digests}")
        print(f"final weights identical on all {len(digests)} rank(s) (sha1 {digest[:12]})")


def _name(path: Path | None) -> str:
    return path.name if path is not None else "(none: no --output_dir / --no_save_ckpt)"


def weights_digest(state: dict) -> str:
    """sha1 over the bytes of every tensor of a state dict, in key order."""
    h = hashlib.sha1()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def prepare_output(cfg: TaskConfig, env: DistEnv) -> None:
    """Creates the output / log folders and saves the resolved arguments (rank 0 only)."""
    run = cfg.run
    if env.is_main and run.output_dir:
        os.makedirs(run.output_dir, exist_ok=True)
        save_args(cfg.to_args(), run.output_dir)
    if env.is_main and run.log_dir:
        os.makedirs(run.log_dir, exist_ok=True)
    barrier()
