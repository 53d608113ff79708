"""The run's checkpoints: what goes into one, when it is written, and where a resumed run goes on.

`Checkpointer` assembles the state (weights, EMA, the backend's optimiser state, counters, best
accuracy, every rank's RNG state, arguments), saves it atomically through
`engine.checkpoint.CheckpointManager` (names and rotation), and resumes from ``--resume`` or the
newest readable file (``--auto_resume``), including a mid-epoch position: the clips of the epoch's
global order done (``checkpoint-<epoch>-<clips>.pth``), which any number of ranks goes on from.
"""

from __future__ import annotations

import json
from pathlib import Path

from timm.utils import ModelEmaV2
from torch import nn

from common.files import atomic_write_text
from engine.backend import Backend, tag_of
from engine.checkpoint import (
    CheckpointError,
    CheckpointManager,
    get_rng_state,
    saved_world_size,
    set_rng_state,
)
from engine.config import TaskConfig
from engine.distributed import DistEnv, all_gather_object, barrier, broadcast_object
from engine.loop import EpochState
from models.registry import model_args_of
from models.weights import read_checkpoint


class Checkpointer:
    """Saves and resumes one run (``task`` trained through ``backend``, counted in ``counters``).

    After `resume`: ``start_epoch`` is the epoch to run next, and `start_batch` / `start_clip` say
    where in it a mid-epoch checkpoint left off; ``best`` is the best validation accuracy so far.
    """

    def __init__(
        self,
        cfg: TaskConfig,
        env: DistEnv,
        task: nn.Module,
        backend: Backend,
        counters: EpochState,
        ema: ModelEmaV2 | None = None,
    ) -> None:
        self.cfg, self.env, self.task, self.backend, self.counters, self.ema = (
            cfg, env, task, backend, counters, ema
        )  # fmt: skip
        self.run = run = cfg.run
        self.optim = cfg.optim
        self.files = CheckpointManager(run.output_dir, keep_last=run.keep_last) if run.output_dir else None
        self.best: float | None = None
        self.start_epoch = run.start_epoch
        # a mid-epoch checkpoint's position: clips of start_epoch's global order it covers (on any
        # number of ranks), and the micro-batch of this run the loop goes on at (a step boundary)
        self.start_clip = 0
        self.start_batch = 0

    # ----- positions ---------------------------------------------------------------------
    def start_batch_of(self, epoch: int) -> int:
        """Micro-batches of ``epoch`` already done by the resumed checkpoint (0 for later epochs)."""
        return self.start_batch if epoch == self.start_epoch else 0

    def start_clip_of(self, epoch: int) -> int:
        """Clips of ``epoch``'s global order already done by the resumed checkpoint (0 for later epochs)."""
        return self.start_clip if epoch == self.start_epoch else 0

    def clips_done(self, epoch: int, batches_done: int) -> int:
        """Clips of ``epoch``'s global order covered once this rank has done ``batches_done`` micro-batches
        (every rank has done as many: each takes ``--batch_size`` clips of every ``world_size``)."""
        per_batch = self.optim.batch_size * self.env.world_size
        if epoch == self.start_epoch and self.start_clip:
            return self.start_clip + (batches_done - self.start_batch) * per_batch
        return batches_done * per_batch

    # ----- saving ------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        """The checkpoint of ``epoch`` (a collective: every rank's RNG state is gathered)."""
        rng = all_gather_object(get_rng_state())
        state = {
            "model": self.task.checkpoint_state(),
            "epoch": epoch,
            "world_size": self.env.world_size,
            **self.counters.counters(),
            "best": self.best,
            "rng": rng,
            "args": self.cfg.to_args(),  # plain values under the options' dests, as args.json
            "model_args": model_args_of(self.task),  # rebuilds the model: models.registry.rebuild
        }
        if self.ema is not None:
            state["model_ema"] = self.ema.module.state_dict()
        state.update(self.backend.state_dict())
        return state

    def path_for(self, epoch: int) -> Path | None:
        """The file of a complete ``epoch`` (None without --output_dir)."""
        return self.files.path_for(epoch) if self.files is not None else None

    def save(self, epoch: int, is_best: bool = False, batches_done: int | None = None) -> Path | None:
        """Checkpoint of a complete ``epoch``, or (``batches_done``) of its first micro-batches, stored
        as the clips of the epoch's global order they cover (`clips_done`), so any number of ranks resumes it.

        Every rank calls it (DeepSpeed shards and the RNG states are gathered); rank 0 writes, and a
        failed write (disk full, read-only folder) raises the same `CheckpointError` on every rank.
        """
        if self.files is None or not self.run.save_ckpt:  # --no_save_ckpt: auto-resume still reads old ones
            return None
        clips = None if batches_done is None else self.clips_done(epoch, batches_done)
        path = self.files.path_for(epoch, clips)
        pointers = self.backend.save(self.files.output_dir, tag_of(path))  # before our file points to it
        state = self.state(epoch)
        if clips is not None:
            state["clips_done"] = clips
            state["batches_done"] = batches_done  # this run's micro-batches (older readers)
        state.update(pointers)
        failure = None
        if self.env.is_main:
            try:
                if clips is None:
                    self.files.save(state, epoch, is_best=is_best)
                else:
                    self.files.save_mid_epoch(state, epoch, clips)
            except CheckpointError as err:
                failure = str(err)
            if failure is None:
                self.backend.prune(self.files)
        # rank 0's outcome on every rank: the others would otherwise wait for it in the next collective
        failure = broadcast_object(failure)
        if failure is not None:
            raise CheckpointError(failure)
        barrier()
        return path

    def kept(self, fallback: str) -> str:
        """What a failure's line adds: the folder's newest intact checkpoint and what to do."""
        return self.files.kept() if self.files is not None else fallback

    # ----- resuming ----------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        """The checkpoint to resume from, chosen on rank 0 and broadcast (every rank loads the same one)."""
        path = None
        if self.env.is_main:
            if self.run.resume:
                path = Path(self.run.resume)
            elif self.run.auto_resume and self.files is not None:
                self.files.cleanup_temp()
                path = self.files.latest()
        return broadcast_object(path)

    def resume(self, steps_per_epoch: int) -> None:
        """Loads the checkpoint to go on from, if any, and sets where the run goes on; trims log.txt
        to the epochs before that (``steps_per_epoch``: for the message)."""
        path = self._resume_path()
        if path is None:
            self._trim_log(self.start_epoch)  # a fresh start: lines of an earlier, unsaved attempt go
            return
        ckpt = read_checkpoint(path)
        self.task.load_checkpoint_state(ckpt["model"])
        if self.ema is not None:
            if "model_ema" in ckpt:
                self.ema.module.load_state_dict(ckpt["model_ema"], strict=True)
            else:
                print(f"note: {path} has no model_ema; the EMA restarts from the resumed weights")
                self.ema.set(self.task.model)
        output_dir = Path(self.run.output_dir or ".")
        self.backend.load(ckpt, path, output_dir, self.env.world_size)
        where = ""
        if "batches_done" in ckpt:  # a mid-epoch checkpoint: the same epoch goes on from the next clip
            self.start_epoch = int(ckpt["epoch"])
            where = self._continue_mid_epoch(path, ckpt, steps_per_epoch)
        else:
            self.start_epoch = int(ckpt["epoch"]) + 1
        self._trim_log(self.start_epoch)
        self.counters.restore(ckpt)
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

    def _continue_mid_epoch(self, path: Path, ckpt: dict, steps_per_epoch: int) -> str:
        """Sets ``start_clip`` / ``start_batch`` from a mid-epoch checkpoint written on any number of
        ranks; says in one line when its position is not a whole number of this run's global batches."""
        saved_world = saved_world_size(ckpt)
        clips = ckpt.get("clips_done")
        if clips is None:  # written before positions were global: micro-batches of its own ranks
            clips = int(ckpt["batches_done"]) * int(ckpt["args"]["batch_size"]) * saved_world
        clips = int(clips)
        step_clips = self.optim.batch_size * self.optim.update_freq * self.env.world_size
        steps, rest = divmod(clips, step_clips)
        self.start_clip, self.start_batch = clips, steps * self.optim.update_freq
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
        return f", clip {clips} (step {steps} of {steps_per_epoch})"

    def _trim_log(self, start_epoch: int) -> None:
        """Drops log.txt lines of epochs that will run again (a kill after logging, before saving)."""
        log = Path(self.run.output_dir or ".") / "log.txt"
        if not (self.env.is_main and self.run.output_dir and log.is_file()):
            return
        lines = log.read_text().splitlines(keepends=True)
        kept = [x for x in lines if json.loads(x).get("epoch", -1) < start_epoch] if lines else []
        if len(kept) != len(lines):
            atomic_write_text(log, "".join(kept))
