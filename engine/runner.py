"""Set-up and the epoch driver shared by the three entry points: seeds, loaders, optimiser,
schedules, DDP / DeepSpeed, checkpoint / resume and per-epoch logging."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV2
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from common.files import atomic_write_text
from datasets import collate_batch
from engine import preempt
from engine.args import UsageError
from engine.checkpoint import (
    CheckpointError,
    CheckpointManager,
    get_rng_state,
    load_checkpoint,
    set_rng_state,
)
from engine.distributed import (
    DEFAULT_TIMEOUT_S,
    DistEnv,
    Heartbeat,
    all_gather_object,
    barrier,
    broadcast_object,
    init_distributed,
)
from engine.logger import TensorboardLogger, append_json_line, save_args
from engine.loop import EpochState, StepConfig, steps_in_epoch, train_one_epoch
from engine.optim import build_optimizer, cosine_scheduler
from engine.precision import autocast_context, make_grad_scaler
from engine.samplers import TrainSampler, VideoShardSampler
from models import onednn
from models.registry import model_args_of


def setup(args: argparse.Namespace) -> DistEnv:
    """Process group, device, seeds (seed + rank), deterministic mode, stop-signal handlers."""
    preempt.install(getattr(args, "preempt_signal", "none"), getattr(args, "requeue", False))
    onednn.set_enabled(getattr(args, "cpu_gemm", "onednn") == "onednn")
    timeout = getattr(args, "dist_timeout", DEFAULT_TIMEOUT_S)
    if not timeout > 0:
        raise UsageError(f"--dist_timeout must be a positive number of seconds, got {timeout}")
    env = init_distributed(args.device, args.dist_url, timeout)
    seed = args.seed + env.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if args.deterministic:
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
    dataset: Dataset, args: argparse.Namespace, env: DistEnv, train: bool, shard: bool = True
) -> DataLoader:
    """Training: shuffled, sharded over ranks, drop_last. Eval: ordered, sharded when ``shard``
    (by whole videos where the data set numbers its views video-major, see `VideoShardSampler`)."""
    views = getattr(dataset, "views_per_video", None)
    if train:
        sampler = TrainSampler(dataset, env.world_size, env.rank, seed=args.seed)
    elif env.distributed and shard and views is not None:
        sampler = VideoShardSampler(len(dataset), views, env.world_size, env.rank)
    elif env.distributed and shard:
        sampler = DistributedSampler(dataset, env.world_size, env.rank, shuffle=False)
    else:
        sampler = SequentialSampler(dataset)
    batch_size = args.batch_size
    if train and len(sampler) < batch_size:
        raise UsageError(
            f"--batch_size {batch_size} is larger than the {len(sampler)} training clips per process; lower --batch_size"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=args.num_workers,
        pin_memory=args.pin_mem and env.device.type == "cuda",
        drop_last=train,
        collate_fn=collate_batch,
        worker_init_fn=_seed_worker,
        persistent_workers=False,
        # the loader's own seed draws (worker seeds) stay off the global RNG, whose state a
        # mid-epoch checkpoint restores: a resumed epoch then draws dropout / mixup as the original
        generator=torch.Generator().manual_seed(args.seed + env.rank),
    )


def total_batch_size(args: argparse.Namespace, env: DistEnv) -> int:
    """Clips per optimiser step: batch per process x --update_freq x processes."""
    return args.batch_size * args.update_freq * env.world_size


def scaled_lr(args: argparse.Namespace, env: DistEnv) -> tuple[float, float]:
    """(lr, min_lr) scaled by the total batch / 256, as the reference scripts do."""
    if args.no_lr_scale:
        return args.lr, args.min_lr
    factor = total_batch_size(args, env) / 256
    return args.lr * factor, args.min_lr * factor


def build_schedules(args: argparse.Namespace, env: DistEnv, steps_per_epoch: int):
    """Per-optimiser-step lr and wd schedules (the reference's; its warm-up starts at 0, not at the
    scaled --warmup_lr, which the reference computes but never passes on)."""
    lr, min_lr = scaled_lr(args, env)
    lr_schedule = cosine_scheduler(
        lr, min_lr, args.epochs, steps_per_epoch, args.warmup_epochs, 0.0, args.warmup_steps
    )
    wd_schedule = cosine_scheduler(args.weight_decay, args.weight_decay_end, args.epochs, steps_per_epoch)
    return lr_schedule, wd_schedule


class Trainer:
    """Runs epochs of one task: resume, train, evaluate, save (atomically), log."""

    def __init__(
        self,
        args: argparse.Namespace,
        env: DistEnv,
        task: nn.Module,
        loader: Iterable[dict],
        evaluate: Callable[[nn.Module], dict] | None = None,
    ):
        """``task`` owns its parameter groups (``task.parameter_groups(weight_decay)``); ``loader`` is
        any sized iterable of batches; ``evaluate(model)`` (fine-tuning) validates a classifier."""
        self.args, self.env, self.task, self.loader = args, env, task.to(env.device), loader
        self.evaluate = evaluate
        self.steps_per_epoch = steps_in_epoch(len(loader), args.update_freq, args.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise UsageError(
                f"an epoch has {len(loader)} batches per process, fewer than --update_freq {args.update_freq}; "
                "lower --update_freq or --batch_size"
            )
        self.lr_schedule, self.wd_schedule = build_schedules(args, env, self.steps_per_epoch)
        print(
            f"total batch {total_batch_size(args, env)} clips per step (--batch_size {args.batch_size} x "
            f"--update_freq {args.update_freq} x {env.world_size} processes), {self.steps_per_epoch} steps per epoch, "
            f"peak lr {self.lr_schedule.max():.3g}"
        )
        # the EMA starts from the initial weights, before any step (timm's ModelEmaV2: the reference's formula)
        self.ema = None
        if getattr(args, "model_ema", False):
            self.ema = ModelEmaV2(
                task.model, decay=args.model_ema_decay, device="cpu" if args.model_ema_force_cpu else None
            )
        self.optimizer = build_optimizer(
            task.parameter_groups(args.weight_decay),
            opt=args.opt,
            lr=self.lr_schedule[0] if len(self.lr_schedule) else args.lr,
            weight_decay=args.weight_decay,
            opt_betas=args.opt_betas,
            opt_eps=args.opt_eps,
            momentum=args.momentum,
        )
        self.scaler = make_grad_scaler(env.device, args.precision)
        self.wrapped, self.ds_engine = self._wrap()
        self.ckpt = CheckpointManager(args.output_dir, keep_last=args.keep_last) if args.output_dir else None
        self.state = EpochState()
        self.best = None
        self.start_epoch = args.start_epoch
        # a mid-epoch checkpoint's position: clips of start_epoch's global order it covers (on any
        # number of ranks), and the micro-batch of this run the loop goes on at (a step boundary)
        self.start_clip = 0
        self.start_batch = 0
        self.tb = TensorboardLogger(args.log_dir if env.is_main else None)

    def _wrap(self):
        if self.args.enable_deepspeed:
            from engine.deepspeed_utils import initialize

            engine = initialize(self.task, self.optimizer, self.args, self.env)
            return engine, engine
        if self.env.distributed:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(self.task, device_ids=ids), None
        return self.task, None

    # ----- checkpoints -------------------------------------------------------------------
    def _state(self, epoch: int) -> dict:
        rng = all_gather_object(get_rng_state())
        state = {
            "model": self.task.checkpoint_state(),
            "epoch": epoch,
            "world_size": self.env.world_size,
            **self.state.counters(),
            "best": self.best,
            "rng": rng,
            "args": dict(vars(self.args)),
            "model_args": model_args_of(self.task),  # rebuilds the model: models.registry.rebuild
        }
        if self.ema is not None:
            state["model_ema"] = self.ema.module.state_dict()
        if self.ds_engine is None:
            state["optimizer"] = self.optimizer.state_dict()
            state["scaler"] = self.scaler.state_dict()
        return state

    def _deepspeed_dir(self) -> Path:
        return Path(self.args.output_dir) / "deepspeed"

    def clips_done(self, epoch: int, batches_done: int) -> int:
        """Clips of ``epoch``'s global order covered once this rank has done ``batches_done`` micro-batches
        (every rank has done as many: each takes ``--batch_size`` clips of every ``world_size``)."""
        per_batch = self.args.batch_size * self.env.world_size
        if epoch == self.start_epoch and self.start_clip:
            return self.start_clip + (batches_done - self.start_batch) * per_batch
        return batches_done * per_batch

    def save(self, epoch: int, is_best: bool = False, batches_done: int | None = None) -> Path | None:
        """Checkpoint of a complete ``epoch``, or (``batches_done``) of its first micro-batches, stored
        as the clips of the epoch's global order they cover (`clips_done`), so any number of ranks resumes it.

        Every rank calls it (DeepSpeed shards and the RNG states are gathered); rank 0 writes, and a
        failed write (disk full, read-only folder) raises the same `CheckpointError` on every rank.
        """
        if self.ckpt is None or not self.args.save_ckpt:  # --no_save_ckpt: auto-resume still reads old ones
            return None
        clips = None if batches_done is None else self.clips_done(epoch, batches_done)
        path = self.ckpt.path_for(epoch, clips)
        tag = "epoch-" + path.stem.removeprefix("checkpoint-")
        if self.ds_engine is not None:  # optimiser shards are written by every rank, before our file
            self.ds_engine.save_checkpoint(str(self._deepspeed_dir()), tag=tag)
        state = self._state(epoch)
        if clips is not None:
            state["clips_done"] = clips
            state["batches_done"] = batches_done  # this run's micro-batches (older readers)
        if self.ds_engine is not None:
            state["deepspeed_tag"] = tag
        failure = None
        if self.env.is_main:
            try:
                if clips is None:
                    self.ckpt.save(state, epoch, is_best=is_best)
                else:
                    self.ckpt.save_mid_epoch(state, epoch, clips)
            except CheckpointError as err:
                failure = str(err)
            if failure is None and self.ds_engine is not None:
                self._rotate_deepspeed()
        # rank 0's outcome on every rank: the others would otherwise wait for it in the next collective
        failure = broadcast_object(failure)
        if failure is not None:
            raise CheckpointError(failure)
        barrier()
        return path

    def _rotate_deepspeed(self) -> None:
        """Drops DeepSpeed tag folders that no kept checkpoint (numbered, mid-epoch or best) points to."""
        kept = [p for _, p in self.ckpt.numbered()] + [p for _, p in self.ckpt.mid_epoch()]
        keep = {"epoch-" + p.stem.removeprefix("checkpoint-") for p in kept}
        if self.ckpt.best_path.is_file():
            with contextlib.suppress(CheckpointError):  # an unreadable best copy points nowhere
                keep.add(str(load_checkpoint(self.ckpt.best_path, mmap=True).get("deepspeed_tag")))
        for folder in self._deepspeed_dir().glob("epoch-*"):
            if folder.is_dir() and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    def _resume_path(self) -> Path | None:
        """The checkpoint to resume from, chosen on rank 0 and broadcast (every rank loads the same one)."""
        path = None
        if self.env.is_main:
            if self.args.resume:
                path = Path(self.args.resume)
            elif self.args.auto_resume and self.ckpt is not None:
                self.ckpt.cleanup_temp()
                path = self.ckpt.latest()
        return broadcast_object(path)

    def resume(self) -> None:
        path = self._resume_path()
        if path is None:
            self._trim_log(self.start_epoch)  # a fresh start: lines of an earlier, unsaved attempt go
            return
        ckpt = load_checkpoint(path)
        self.task.load_checkpoint_state(ckpt["model"])
        if self.ema is not None:
            if "model_ema" in ckpt:
                self.ema.module.load_state_dict(ckpt["model_ema"], strict=True)
            else:
                print(f"note: {path} has no model_ema; the EMA restarts from the resumed weights")
                self.ema.set(self.task.model)
        if "deepspeed_tag" in ckpt and self.ds_engine is not None:
            _check_deepspeed_world(path, ckpt, self.env.world_size)
            self.ds_engine.load_checkpoint(
                str(self._deepspeed_dir()), tag=ckpt["deepspeed_tag"], load_module_strict=False
            )
        if "optimizer" in ckpt and self.ds_engine is None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        where = ""
        if "batches_done" in ckpt:  # a mid-epoch checkpoint: the same epoch goes on from the next clip
            self.start_epoch = int(ckpt["epoch"])
            where = self._continue_mid_epoch(path, ckpt)
        else:
            self.start_epoch = int(ckpt["epoch"]) + 1
        self._trim_log(self.start_epoch)
        self.state.restore(ckpt)
        self.best = ckpt.get("best")
        rng = ckpt.get("rng")
        if isinstance(rng, list) and len(rng) == self.env.world_size:
            set_rng_state(rng[self.env.rank])
        elif isinstance(rng, list):
            print(
                f"note: {path} holds the RNG states of {len(rng)} processes, this run has {self.env.world_size}: "
                "they are not restored (dropout, drop path and mixup draw differently from the uninterrupted run)"
            )
        print(f"resumed from {path} (epoch {ckpt['epoch']}); continuing at epoch {self.start_epoch}{where}")

    def _continue_mid_epoch(self, path: Path, ckpt: dict) -> str:
        """Sets ``start_clip`` / ``start_batch`` from a mid-epoch checkpoint written on any number of
        ranks; says in one line when its position is not a whole number of this run's global batches."""
        saved_world = _saved_world_size(ckpt)
        clips = ckpt.get("clips_done")
        if clips is None:  # written before positions were global: micro-batches of its own ranks
            clips = int(ckpt["batches_done"]) * int(ckpt["args"]["batch_size"]) * saved_world
        clips = int(clips)
        step_clips = total_batch_size(self.args, self.env)
        steps, rest = divmod(clips, step_clips)
        self.start_clip, self.start_batch = clips, steps * self.args.update_freq
        if rest:
            print(
                f"note: {path} stopped {clips} clips into epoch {ckpt['epoch']}, not a whole number of this run's "
                f"global batches of {step_clips} clips: the epoch goes on from clip {clips} with every step's "
                f"clips shifted by {rest} (no clip repeated or skipped; the weights differ from an uninterrupted run's)"
            )
        elif saved_world != self.env.world_size:
            print(
                f"note: {path} was written by {saved_world} processes, this run has {self.env.world_size}: "
                f"the epoch goes on from clip {clips} of its global order (step {steps})"
            )
        return f", clip {clips} (step {steps} of {self.steps_per_epoch})"

    def _trim_log(self, start_epoch: int) -> None:
        """Drops log.txt lines of epochs that will run again (a kill after logging, before saving)."""
        log = Path(self.args.output_dir or ".") / "log.txt"
        if not (self.env.is_main and self.args.output_dir and log.is_file()):
            return
        lines = log.read_text().splitlines(keepends=True)
        kept = [x for x in lines if json.loads(x).get("epoch", -1) < start_epoch] if lines else []
        if len(kept) != len(lines):
            atomic_write_text(log, "".join(kept))

    # ----- epochs ------------------------------------------------------------------------
    def step_config(self, observer: Callable[[dict], None] | None = None) -> StepConfig:
        """How every step of this run is taken (``observer`` sees a record of each micro-batch)."""
        args = self.args
        return StepConfig(
            device=self.env.device,
            autocast=partial(autocast_context, self.env.device, args.precision),
            scaler=self.scaler,
            clip_grad=args.clip_grad,
            print_freq=args.print_freq,
            max_steps=args.max_steps_per_epoch,
            max_bad_fraction=args.max_bad_fraction,
            deepspeed_engine=self.ds_engine,
            update_freq=args.update_freq,
            ema=self.ema,
            ema_source=self.task.model if self.ema is not None else None,
            observer=observer,
            after_step=self._after_step,
        )

    def _after_step(self, epoch: int, batches_done: int, flush) -> None:
        """Mid-epoch checkpoint every --save_ckpt_freq_steps steps, and on an agreed stop signal."""
        step = self.state.global_step
        # the stop flag is a collective with several ranks: asked every --print_freq steps (a host
        # sync), every step in a single process (a local flag)
        every = 1 if self.env.world_size == 1 else max(1, self.args.print_freq)
        stop = step % every == 0 and preempt.current().agreed()
        freq = self.args.save_ckpt_freq_steps
        if stop or (freq and step % freq == 0):
            flush()  # the pending non-finite check: a bad step never reaches a checkpoint
            path = self.save(epoch, batches_done=batches_done)
            if stop:
                self._leave(f"checkpoint {_name(path)} written after step {step}")

    def _leave(self, what: str) -> None:
        self.tb.close()
        preempt.leave(what)

    def train_epoch(self, epoch: int, step_cfg: StepConfig | None = None) -> dict[str, float]:
        """One training epoch over ``self.loader`` (what :meth:`fit` runs per epoch)."""
        sampler = getattr(self.loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        start_batch = self.start_batch if epoch == self.start_epoch else 0
        if epoch == self.start_epoch and self.start_clip and isinstance(sampler, TrainSampler):
            sampler.skip(min(self.start_clip, sampler.total_size))  # clips of the global order
        dataset = getattr(self.loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):  # clips, crops and masks are drawn per (seed, epoch, item)
            dataset.set_epoch(epoch)
        return train_one_epoch(
            self.wrapped,
            self.loader,
            self.optimizer,
            epoch,
            step_cfg or self.step_config(),
            self.state,
            self.lr_schedule,
            self.wd_schedule,
            self.steps_per_epoch,
            self.tb,
            start_batch=start_batch,
        )

    def fit(self) -> list[dict]:
        # a collective failing because a rank died or hangs ends in one line naming it, not gloo's trace
        with Heartbeat.explain_failures():
            self.resume()
            try:
                history = self._epochs(self.step_config())
            finally:  # also on a failed epoch: the scalars written so far reach the event file
                self.tb.close()
            self._check_ranks_agree()
        return history

    def _validate(self, epoch: int, record: dict) -> bool:
        """Validation of the model (and its EMA); returns whether this epoch is the best so far.

        The decision is rank 0's, broadcast: without --dist_eval every rank validates on its own,
        and a split decision would send only some ranks into the collectives of a save.
        """
        try:
            val = self.evaluate(self.task.model)
            ema_val = self.evaluate(self.ema.module) if self.ema is not None else None
        except preempt.Preempted:  # a stop signal during validation: keep the trained epoch
            path = self.save(epoch, batches_done=self.steps_per_epoch * self.args.update_freq)
            self._leave(f"validation of epoch {epoch} interrupted; checkpoint {_name(path)} written")
        for prefix, result in (("val", val), ("val_ema", ema_val)):
            if result is not None:
                record.update({f"{prefix}_{k}": v for k, v in result.items()})
                self.tb.update(
                    epoch, **{f"{prefix}/{k}": v for k, v in result.items() if isinstance(v, float)}
                )
        is_best = self.best is None or val["acc1"] > self.best
        is_best = bool(broadcast_object(is_best))
        self.best = broadcast_object(max(self.best or val["acc1"], val["acc1"]))
        return is_best

    def _epochs(self, step_cfg: StepConfig) -> list[dict]:
        args = self.args
        history = []
        for epoch in range(self.start_epoch, args.epochs):
            stats = self.train_epoch(epoch, step_cfg)
            record = {"epoch": epoch, **{f"train_{k}": v for k, v in stats.items()}}
            is_best = self._validate(epoch, record) if self.evaluate is not None else False
            last = epoch + 1 == args.epochs
            # the log line goes first: a kill between the two repeats the epoch (and its line) on resume
            self._append_log(record)
            saved = (epoch + 1) % args.save_ckpt_freq == 0 or last or is_best
            if saved:
                self.save(epoch, is_best)
            self.tb.flush()
            if preempt.current().agreed():  # a signal during the epoch's validation or save
                path = self.ckpt.path_for(epoch) if saved and self.ckpt else self.save(epoch)
                self._leave(f"epoch {epoch} complete, checkpoint {_name(path)} written")
            history.append(record)
            if args.stop_after_epoch is not None and epoch >= args.stop_after_epoch:
                print(
                    f"stopping after epoch {epoch} (--stop_after_epoch); relaunch the same command to resume"
                )
                break
        return history

    def _append_log(self, record: dict) -> None:
        """Rank 0 appends the epoch's line to log.txt; a failed write (disk full, read-only folder) is cut
        back to the last whole line and ends every rank with one line, as a failed save does."""
        failure = None
        if self.env.is_main and self.args.output_dir:
            log = Path(self.args.output_dir) / "log.txt"
            size = log.stat().st_size if log.is_file() else 0
            try:
                append_json_line(log, record)
            except OSError as err:
                with contextlib.suppress(OSError):  # a half line would break the next resume's reading
                    os.truncate(log, size)
                kept = self.ckpt._kept() if self.ckpt is not None else str(log.parent)
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


def _saved_world_size(ckpt: dict) -> int:
    """Processes that wrote ``ckpt`` (older files: one RNG state per rank)."""
    if "world_size" in ckpt:
        return int(ckpt["world_size"])
    rng = ckpt.get("rng")
    return len(rng) if isinstance(rng, list) else 1


def _check_deepspeed_world(path: Path, ckpt: dict, world_size: int) -> None:
    """DeepSpeed cannot re-split ZeRO-1/2 optimiser state over another number of processes: one line."""
    saved, stage = _saved_world_size(ckpt), int(ckpt.get("args", {}).get("zero_stage", 0) or 0)
    if stage and saved != world_size:
        raise CheckpointError(
            f"{path} was written by DeepSpeed ZeRO stage {stage} on {saved} processes, whose optimizer state is "
            f"split {saved} ways and does not load on {world_size}: relaunch on {saved} processes (DeepSpeed's "
            "'python -m deepspeed.checkpoint.ds_to_universal' converts the tag folder to its universal format, "
            "which this trainer does not read), or save with --zero_stage 0, whose checkpoints load on any number"
        )


def _name(path: Path | None) -> str:
    return path.name if path is not None else "(none: no --output_dir / --no_save_ckpt)"


def weights_digest(state: dict) -> str:
    """sha1 over the bytes of every tensor of a state dict, in key order."""
    h = hashlib.sha1()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def prepare_output(args: argparse.Namespace, env: DistEnv) -> None:
    """Creates the output / log folders and saves the resolved arguments (rank 0 only)."""
    if env.is_main and args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        save_args(args, args.output_dir)
    if env.is_main and args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)
    barrier()
