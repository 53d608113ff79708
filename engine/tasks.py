"""Training tasks: what one step computes. Each `forward(batch)` returns {"loss": total, <term>: ...}.

The task is the one module that is trained, wrapped in DDP / DeepSpeed and saved; a distillation
teacher is held outside its parameters (frozen, eval mode, never wrapped, never saved).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn

from models import PretrainVisionTransformer, VisionTransformer
from models.distill import MMKDLoss
from models.targets import pixel_target


class PretrainTask(nn.Module):
    """VideoMAE: reconstruct the (normalised) pixels of the masked tubes."""

    def __init__(self, model: PretrainVisionTransformer, normalize_target: bool = True):
        super().__init__()
        self.model = model
        self.normalize_target = normalize_target

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, mask = batch["video"], batch["mask"]
        with torch.no_grad():
            target = pixel_target(
                video.float(), mask, self.model.patch_size, self.model.tubelet_size, self.normalize_target
            )
        pred = self.model(video, mask, num_visible=batch.get("num_visible"))
        return {"loss": F.mse_loss(pred.float(), target)}

    def checkpoint_state(self) -> dict[str, Tensor]:
        """VideoMAE's own key layout, so our checkpoints and the official ones are interchangeable."""
        return self.model.state_dict()

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)


class DistillTask(nn.Module):
    """MMKD: student + alignment heads are trained; the teacher only provides targets.

    Student and teacher see the same masked clip; the loss compares their last-block outputs,
    attention logits and values (spec §4).
    """

    def __init__(
        self,
        student: PretrainVisionTransformer,
        teacher: PretrainVisionTransformer,
        heads: MMKDLoss,
        teacher_autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    ):
        super().__init__()
        self.student = student
        self.heads = heads
        teacher.eval().requires_grad_(False)
        self._teacher = [teacher]  # a list hides it from parameters(), state_dict(), DDP and .train()
        self._teacher_autocast = teacher_autocast
        self.num_temporal = student.encoder.grid_size[0]

    @property
    def teacher(self) -> PretrainVisionTransformer:
        return self._teacher[0]

    def _apply(self, fn, recurse=True):  # keep .to()/.cuda()/.half() acting on the teacher too
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, mask = batch["video"], batch["mask"]
        need_attn, num_visible = self.heads.needs_attention, batch.get("num_visible")
        # through __call__ (forward = encode for encoder-only models), so that --compile applies
        with torch.no_grad(), (self._teacher_autocast or contextlib.nullcontext)():
            out_t = self.teacher(video, mask, return_attention=need_attn, num_visible=num_visible)
        out_s = self.student(video, mask, return_attention=need_attn, num_visible=num_visible)
        # the objectives run in float32 whatever the encoders' precision (softmaxes over 1e3 logits),
        # or in the heads' own dtype where DeepSpeed bf16 / fp16 stores the weights in 16 bits
        dtype = next((p.dtype for p in self.heads.parameters()), torch.float32)
        with torch.autocast(device_type=video.device.type, enabled=False):
            return self.heads(_cast(out_s, dtype), _cast(out_t, dtype), self.num_temporal)

    def checkpoint_state(self) -> dict[str, Tensor]:
        return self.state_dict()

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state, strict=True)


def _cast(out, dtype: torch.dtype):
    return type(out)(
        *(None if t is None else t.to(dtype) for t in (out.features, out.attn_logits, out.values))
    )


def clip_erasing(probability: float, device: torch.device | str) -> RandomErasing | None:
    """The reference's random erasing (timm, ``mode="pixel"``, one region, probability per frame).

    Regions are drawn from Python's ``random`` (seeded per rank by the entry point's set-up), the
    per-pixel N(0, 1) noise from ``device``'s torch generator: nothing is read back to the host.
    """
    if probability <= 0:
        return None
    return RandomErasing(probability, mode="pixel", max_count=1, device=str(device))


def erase_clips(video: Tensor, erasing: RandomErasing) -> Tensor:
    """Normalised clips [B, 3, T, H, W], erased in place: each clip's frames are timm's batch.

    The reference erases each clip as [T, 3, H, W], so every frame independently gets a region
    with the erasing probability; the transposed view hands timm exactly that.
    """
    for clip in video:
        erasing(clip.transpose(0, 1))
    return video


class FinetuneTask(nn.Module):
    """Classification with optional random erasing, mixup / cutmix and label smoothing.

    The task is the one owner of random erasing: it runs on the device, on the normalised training
    clips, before mixup (the reference's order), so the data sets ship uint8 clips whatever
    ``--reprob`` is; validation and test (which call ``model`` directly) are never erased.
    """

    def __init__(
        self,
        model: VisionTransformer,
        mixup_fn=None,
        smoothing: float = 0.0,
        erasing: RandomErasing | None = None,
    ):
        super().__init__()
        self.model = model
        self.mixup_fn = mixup_fn
        self.smoothing = smoothing
        self.erasing = erasing
        self.soft_ce = SoftTargetCrossEntropy()

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, label = batch["video"], batch["label"]
        if self.training and self.erasing is not None:
            video = erase_clips(video, self.erasing)
        if self.training and self.mixup_fn is not None:
            # timm's Mixup cuts boxes on the last two axes: fold time into channels so all frames
            # share the box, then unfold (its in-place edits land in ``video``)
            mixed, soft = self.mixup_fn(video.flatten(1, 2), label)
            loss = self.soft_ce(self.model(mixed.view_as(video)).float(), soft)
        else:
            logits = self.model(video).float()
            loss = F.cross_entropy(logits, label, label_smoothing=self.smoothing if self.training else 0.0)
        return {"loss": loss}

    def checkpoint_state(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
