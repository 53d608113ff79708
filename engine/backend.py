"""How a step executes: the one seam between plain torch (optionally DDP) and DeepSpeed.

The loop and the checkpointer talk to a backend only; `build_backend` is the one place that looks
at ``--enable_deepspeed``. Both backends have the same methods:

- ``train()``, ``forward(batch)`` (under the run's autocast), ``accumulating(boundary)`` (the context a
  micro-batch's forward and backward run in), ``loss_for_backward(loss, update_freq)``,
  ``backward(loss, boundary, need_norm)`` (and the optimiser step on a window's last micro-batch),
  ``zero_grad()``, ``optimizer`` (what the schedules set), ``loss_scale()``;
- checkpoints: ``state_dict()`` (entries of the checkpoint file), ``save(output_dir, tag)`` (files of
  its own, returning entries that point to them), ``load(ckpt, path, output_dir, world_size)`` and
  ``prune(files)`` (drops its own files that no kept checkpoint points to).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.checkpoint import CheckpointError, CheckpointManager, saved_world_size
from engine.config import TaskConfig
from engine.distributed import DistEnv
from engine.precision import autocast_context, make_grad_scaler
from models.weights import read_checkpoint

Autocast = Callable[[], contextlib.AbstractContextManager]

DEEPSPEED_DIR = "deepspeed"  # DeepSpeed's tag folders, beside our checkpoint files


class _Forward:
    """What both backends run alike: ``module``'s forward under the run's autocast."""

    module: nn.Module
    autocast: Autocast

    def train(self) -> None:
        self.module.train()

    def forward(self, batch: dict) -> dict[str, Tensor]:
        with self.autocast():
            return self.module(batch)


class TorchBackend(_Forward):
    """Our optimiser and GradScaler on the task itself or its DDP wrap.

    Args:
        module: what the forward runs on (the task, or its `DistributedDataParallel` wrap).
        optimizer: the task's optimiser.
        scaler: fp16 loss scaler (disabled for bf16 / fp32).
        clip_grad: max total gradient norm, or None.
        autocast: the run's precision context.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        clip_grad: float | None = None,
        autocast: Autocast = contextlib.nullcontext,
    ) -> None:
        self.module, self.optimizer, self.scaler = module, optimizer, scaler
        self.clip_grad, self.autocast = clip_grad, autocast
        self.params = [p for p in module.parameters() if p.requires_grad]

    def accumulating(self, boundary: bool) -> contextlib.AbstractContextManager:
        # DDP all-reduces gradients in backward; accumulation micro-steps skip it until the last one
        if not boundary and isinstance(self.module, nn.parallel.DistributedDataParallel):
            return self.module.no_sync()
        return contextlib.nullcontext()

    def loss_for_backward(self, loss: Tensor, update_freq: int) -> Tensor:
        """Each of a window's ``update_freq`` micro-batches back-propagates its share (the reference's)."""
        return loss / update_freq

    def backward(
        self, loss: Tensor, boundary: bool = True, need_norm: bool = True
    ) -> tuple[Tensor | None, Tensor | None]:
        """Backward of ``loss``; on a window's last micro-batch (``boundary``) the (clipped) optimiser step.

        Returns (pre-clip gradient norm, or None between steps and when neither clipping nor
        ``need_norm`` asks for it; a 0-dim tensor that is 1 when the fp16 scaler skipped the step, or
        None). Nothing here reads a value back to the host.
        """
        scaler = self.scaler
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if not boundary:
                return None, None
            scaler.unscale_(self.optimizer)
            norm = _clip(self.params, self.clip_grad, need_norm)
            before = _scale_tensor(scaler)
            scaler.step(self.optimizer)
            scaler.update()
            self.zero_grad()
            return norm, (_scale_tensor(scaler) < before).to(torch.int64)  # inf/NaN gradients: skipped
        loss.backward()
        if not boundary:
            return None, None
        norm = _clip(self.params, self.clip_grad, need_norm)
        self.optimizer.step()
        self.zero_grad()
        return norm, None

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def loss_scale(self) -> float | None:
        """The fp16 loss scale (a host read: log lines only), None without loss scaling."""
        return self.scaler.get_scale() if self.scaler is not None and self.scaler.is_enabled() else None

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def save(self, output_dir: Path, tag: str) -> dict:
        return {}  # everything is in the checkpoint file

    def load(self, ckpt: dict, path: Path, output_dir: Path, world_size: int) -> None:
        if "optimizer" in ckpt:  # a weights-only file (or a DeepSpeed one) restarts the optimiser
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])

    def prune(self, files: CheckpointManager) -> None:
        pass  # no files of its own


class DeepSpeedBackend(_Forward):
    """A DeepSpeed engine: it accumulates (``gradient_accumulation_steps``), divides the loss, clips,
    scales and zeroes itself, and keeps its optimiser state in tag folders beside our files."""

    def __init__(self, engine, autocast: Autocast = contextlib.nullcontext) -> None:
        self.module, self.autocast = engine, autocast

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.module.optimizer

    def accumulating(self, boundary: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # the engine skips the gradient all-reduce of micro-steps itself

    def loss_for_backward(self, loss: Tensor, update_freq: int) -> Tensor:
        return loss  # the engine divides by gradient_accumulation_steps

    def backward(
        self, loss: Tensor, boundary: bool = True, need_norm: bool = True
    ) -> tuple[Tensor | None, Tensor | None]:
        """As `TorchBackend.backward`; the engine computes the norm whether asked or not."""
        engine = self.module
        skips_before = getattr(engine, "skipped_steps", 0)  # DeepSpeed counts its fp16 overflow skips
        engine.backward(loss)
        engine.step()  # a no-op but on the window's last micro-batch
        if not boundary:
            return None, None
        norm = engine.get_global_grad_norm()
        skipped = torch.tensor(int(getattr(engine, "skipped_steps", 0) > skips_before))
        return (torch.as_tensor(norm) if norm is not None else None), skipped

    def zero_grad(self) -> None:
        pass  # the engine zeroes after its own step

    def loss_scale(self) -> float | None:
        return getattr(self.optimizer, "cur_scale", None) if self.module.fp16_enabled() else None

    def state_dict(self) -> dict:
        return {}  # the optimiser state is in the tag folder (`save`)

    def save(self, output_dir: Path, tag: str) -> dict:
        """Every rank writes its optimiser shards (before rank 0 writes the checkpoint file)."""
        self.module.save_checkpoint(str(output_dir / DEEPSPEED_DIR), tag=tag)
        return {"deepspeed_tag": tag}

    def load(self, ckpt: dict, path: Path, output_dir: Path, world_size: int) -> None:
        if "deepspeed_tag" not in ckpt:  # a file of a plain torch run: the optimiser restarts
            return
        _check_deepspeed_world(path, ckpt, world_size)
        self.module.load_checkpoint(
            str(output_dir / DEEPSPEED_DIR), tag=ckpt["deepspeed_tag"], load_module_strict=False
        )

    def prune(self, files: CheckpointManager) -> None:
        """Drops tag folders that no kept checkpoint (numbered, mid-epoch or best) points to."""
        kept = [p for _, p in files.numbered()] + [p for _, p in files.mid_epoch()]
        keep = {tag_of(p) for p in kept}
        if files.best_path.is_file():
            with contextlib.suppress(CheckpointError):  # an unreadable best copy points nowhere
                keep.add(str(read_checkpoint(files.best_path, mmap=True).get("deepspeed_tag")))
        for folder in (files.output_dir / DEEPSPEED_DIR).glob("epoch-*"):
            if folder.is_dir() and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)


Backend = TorchBackend | DeepSpeedBackend


def build_backend(
    task: nn.Module, optimizer: torch.optim.Optimizer, cfg: TaskConfig, env: DistEnv
) -> Backend:
    """DeepSpeed with ``--enable_deepspeed``; else our optimiser on the task (DDP-wrapped with several ranks)."""
    precision = cfg.run.precision
    autocast = partial(autocast_context, env.device, precision)
    if cfg.run.enable_deepspeed:
        from engine.deepspeed_utils import initialize

        return DeepSpeedBackend(initialize(task, optimizer, cfg, env), autocast)
    module = task
    if env.distributed:
        ids = [env.device.index] if env.device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(task, device_ids=ids)
    return TorchBackend(
        module, optimizer, make_grad_scaler(env.device, precision), cfg.optim.clip_grad, autocast
    )


def tag_of(path: Path) -> str:
    """The DeepSpeed tag of the checkpoint file ``path`` (``checkpoint-3-40.pth`` -> ``epoch-3-40``)."""
    return "epoch-" + path.stem.removeprefix("checkpoint-")


def _check_deepspeed_world(path: Path, ckpt: dict, world_size: int) -> None:
    """DeepSpeed cannot re-split ZeRO-1/2 optimiser state over another number of processes: one line."""
    saved, stage = saved_world_size(ckpt), int(ckpt.get("args", {}).get("zero_stage", 0) or 0)
    if stage and saved != world_size:
        raise CheckpointError(
            f"{path} was written by DeepSpeed ZeRO stage {stage} on {saved} processes, whose optimizer state is "
            f"split {saved} ways and does not load on {world_size}: relaunch on {saved} processes (DeepSpeed's "
            "'python -m deepspeed.checkpoint.ds_to_universal' converts the tag folder to its universal format, "
            "which this trainer does not read), or save with --zero_stage 0, whose checkpoints load on any number"
        )


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


def _grad_norm(params: list[Tensor]) -> Tensor:
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return torch.stack([g.norm() for g in grads]).norm() if grads else torch.zeros(())
