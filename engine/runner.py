"""Set-up and the epoch driver shared by the three entry points: seeds, loaders, optimiser,
schedules, DDP / DeepSpeed, checkpoint / resume and per-epoch logging."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from datasets import collate_batch
from engine.args import UsageError
from engine.checkpoint import CheckpointManager, get_rng_state, load_checkpoint, set_rng_state
from engine.distributed import DistEnv, all_gather_object, barrier, init_distributed
from engine.logger import TensorboardLogger, append_json_line, save_args
from engine.loop import EpochState, StepConfig, train_one_epoch
from engine.optim import build_optimizer, cosine_scheduler
from engine.precision import autocast_context, make_grad_scaler
from models.registry import model_args_of


def setup(args: argparse.Namespace) -> DistEnv:
    """Process group, device, seeds (seed + rank) and deterministic mode."""
    env = init_distributed(args.device, args.dist_url)
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
    """Training: shuffled, sharded over ranks, drop_last. Eval: ordered, sharded when ``shard``."""
    if env.distributed and (train or shard):
        sampler = DistributedSampler(
            dataset, env.world_size, env.rank, shuffle=train, seed=args.seed, drop_last=train
        )
    else:
        sampler = RandomSampler(dataset) if train else SequentialSampler(dataset)
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
    )


def scaled_lr(args: argparse.Namespace, env: DistEnv) -> tuple[float, float, float]:
    """(lr, warmup_lr, min_lr) scaled by total batch / 256, as the reference scripts assume."""
    if args.no_lr_scale:
        return args.lr, args.warmup_lr, args.min_lr
    factor = args.batch_size * env.world_size / 256
    return args.lr * factor, args.warmup_lr * factor, args.min_lr * factor


class Trainer:
    """Runs epochs of one task: resume, train, evaluate, save (atomically), log."""

    def __init__(
        self,
        args: argparse.Namespace,
        env: DistEnv,
        task: nn.Module,
        loader: DataLoader,
        evaluate: Callable[[nn.Module], dict] | None = None,
        layer_decay: float | None = None,
    ):
        self.args, self.env, self.task, self.loader = args, env, task.to(env.device), loader
        self.evaluate = evaluate
        self.iters_per_epoch = (
            len(loader) if not args.max_steps_per_epoch else min(len(loader), args.max_steps_per_epoch)
        )
        lr, warmup_lr, min_lr = scaled_lr(args, env)
        self.lr_schedule = cosine_scheduler(
            lr, min_lr, args.epochs, self.iters_per_epoch, args.warmup_epochs, warmup_lr, args.warmup_steps
        )
        self.wd_schedule = cosine_scheduler(
            args.weight_decay, args.weight_decay_end, args.epochs, self.iters_per_epoch
        )
        self.optimizer = build_optimizer(
            task,
            opt=args.opt,
            lr=lr,
            weight_decay=args.weight_decay,
            opt_betas=args.opt_betas,
            opt_eps=args.opt_eps,
            momentum=args.momentum,
            layer_decay=layer_decay,
            num_layers=task.model.get_num_layers() if layer_decay else None,
        )
        self.scaler = make_grad_scaler(env.device, args.precision)
        self.wrapped, self.ds_engine = self._wrap()
        self.ckpt = CheckpointManager(args.output_dir, keep_last=args.keep_last) if args.output_dir else None
        self.state = EpochState()
        self.best = None
        self.start_epoch = args.start_epoch
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
            "global_step": self.state.global_step,
            "skipped_steps": self.state.skipped_steps,
            "best": self.best,
            "rng": rng,
            "args": dict(vars(self.args)),
            "model_args": model_args_of(self.task),  # rebuilds the model: models.registry.rebuild
        }
        if self.ds_engine is None:
            state["optimizer"] = self.optimizer.state_dict()
            state["scaler"] = self.scaler.state_dict()
        return state

    def save(self, epoch: int, is_best: bool) -> None:
        if self.ckpt is None:
            return
        if self.ds_engine is not None:  # optimiser shards are written by every rank, before our file
            self.ds_engine.save_checkpoint(
                str(Path(self.args.output_dir) / "deepspeed"), tag=f"epoch-{epoch}"
            )
        state = self._state(epoch)
        if self.ds_engine is not None:
            state["deepspeed_tag"] = f"epoch-{epoch}"
        if self.env.is_main:
            self.ckpt.save(state, epoch, is_best=is_best)
        barrier()

    def resume(self) -> None:
        path = None
        if self.args.resume:
            path = Path(self.args.resume)
        elif self.args.auto_resume and self.ckpt is not None:
            if self.env.is_main:
                self.ckpt.cleanup_temp()
            path = self.ckpt.latest()
        if path is None:
            self._trim_log(self.start_epoch)  # a fresh start: lines of an earlier, unsaved attempt go
            return
        ckpt = load_checkpoint(path)
        self.task.load_checkpoint_state(ckpt["model"])
        if "deepspeed_tag" in ckpt and self.ds_engine is not None:
            self.ds_engine.load_checkpoint(
                str(Path(self.args.output_dir) / "deepspeed"),
                tag=ckpt["deepspeed_tag"],
                load_module_strict=False,
            )
        if "optimizer" in ckpt and self.ds_engine is None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self._trim_log(self.start_epoch)
        self.state.global_step = int(ckpt.get("global_step", 0))
        self.best = ckpt.get("best")
        rng = ckpt.get("rng")
        if isinstance(rng, list) and len(rng) == self.env.world_size:
            set_rng_state(rng[self.env.rank])
        print(f"resumed from {path} (epoch {ckpt['epoch']}); continuing at epoch {self.start_epoch}")

    def _trim_log(self, start_epoch: int) -> None:
        """Drops log.txt lines of epochs that will run again (a kill after logging, before saving)."""
        log = Path(self.args.output_dir or ".") / "log.txt"
        if not (self.env.is_main and self.args.output_dir and log.is_file()):
            return
        lines = log.read_text().splitlines(keepends=True)
        kept = [x for x in lines if json.loads(x).get("epoch", -1) < start_epoch] if lines else []
        if len(kept) != len(lines):
            tmp = log.with_name(".log.txt.tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, log)

    # ----- epochs ------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        args, env = self.args, self.env
        self.resume()
        step_cfg = StepConfig(
            device=env.device,
            autocast=partial(autocast_context, env.device, args.precision),
            scaler=self.scaler,
            clip_grad=args.clip_grad,
            print_freq=args.print_freq,
            max_steps=args.max_steps_per_epoch,
            max_bad_fraction=args.max_bad_fraction,
            deepspeed_engine=self.ds_engine,
        )
        try:
            history = self._epochs(step_cfg)
        finally:  # also on a failed epoch: the scalars written so far reach the event file
            self.tb.close()
        self._check_ranks_agree()
        return history

    def _epochs(self, step_cfg: StepConfig) -> list[dict]:
        args, env = self.args, self.env
        history = []
        for epoch in range(self.start_epoch, args.epochs):
            if isinstance(self.loader.sampler, DistributedSampler):
                self.loader.sampler.set_epoch(epoch)
            if hasattr(
                self.loader.dataset, "set_epoch"
            ):  # clips, crops and masks are drawn per (seed, epoch, item)
                self.loader.dataset.set_epoch(epoch)
            stats = train_one_epoch(
                self.wrapped,
                self.loader,
                self.optimizer,
                epoch,
                step_cfg,
                self.state,
                self.lr_schedule,
                self.wd_schedule,
                self.iters_per_epoch,
                self.tb,
            )
            record = {"epoch": epoch, **{f"train_{k}": v for k, v in stats.items()}}
            is_best = False
            if self.evaluate is not None:
                val = self.evaluate(self.task)
                record.update({f"val_{k}": v for k, v in val.items()})
                is_best = self.best is None or val["acc1"] > self.best
                self.best = max(self.best or val["acc1"], val["acc1"])
                self.tb.update(epoch, **{f"val/{k}": v for k, v in val.items() if isinstance(v, float)})
            last = epoch + 1 == args.epochs
            # the log line goes first: a kill between the two repeats the epoch (and its line) on resume
            if env.is_main and args.output_dir:
                append_json_line(Path(args.output_dir) / "log.txt", record)
            if (epoch + 1) % args.save_ckpt_freq == 0 or last or is_best:
                self.save(epoch, is_best)
            self.tb.flush()
            history.append(record)
            if args.stop_after_epoch is not None and epoch >= args.stop_after_epoch:
                print(
                    f"stopping after epoch {epoch} (--stop_after_epoch); relaunch the same command to resume"
                )
                break
        return history

    def _check_ranks_agree(self) -> None:
        """Data-parallel replicas must end bit-identical; say so (or fail loudly) on every run."""
        digest = weights_digest(self.task.checkpoint_state())
        digests = all_gather_object(digest)
        if len(set(digests)) > 1:
            raise RuntimeError(f"data-parallel ranks ended with different weights: {digests}")
        print(f"final weights identical on all {len(digests)} rank(s) (sha1 {digest[:12]})")


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
