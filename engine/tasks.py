"""Training tasks: what one step computes. Each `forward(batch)` returns {"loss": total, <term>: ...}.

A task gets the batch as the data sets ship it, on the device: uint8 clips (or already normalised
float ones) are ImageNet-normalised by the task, where it needs them. Distillation needs no float copy
of the whole clip: both encoders' patch embeddings normalise only the visible tubelets they gather.

The task is the one module that is trained, wrapped in DDP / DeepSpeed and saved; a distillation
teacher is held outside its parameters (frozen, eval mode, never wrapped, never saved).
"""

from __future__ import annotations

import contextlib
from functools import partial

import torch
import torch.nn.functional as F
from timm.data.random_erasing import RandomErasing
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import Tensor, nn

from engine.optim import param_groups
from engine.precision import autocast_context
from models import PretrainVisionTransformer, VisionTransformer
from models.distill import MMKDLoss
from models.targets import normalized, pixel_target
from models.tokens import split_tokens


def upcast(t: Tensor) -> Tensor:
    """Half-precision tensors to float32; float32 / float64 stay as they are (parity runs use float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class PretrainTask(nn.Module):
    """VideoMAE: reconstruct the (normalised) pixels of the masked tubes."""

    def __init__(self, model: PretrainVisionTransformer, normalize_target: bool = True):
        super().__init__()
        self.model = model
        self.normalize_target = normalize_target

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, mask = normalized(batch["video"]), batch["mask"]  # the target needs every pixel
        _, hidden = split_tokens(mask, batch.get("num_visible"))
        with torch.no_grad():
            target = pixel_target(
                upcast(video),
                mask,
                self.model.patch_size,
                self.model.tubelet_size,
                self.normalize_target,
                hidden=hidden,
            )
        pred = self.model(video, mask, num_visible=batch.get("num_visible"))
        return {"loss": F.mse_loss(pred.to(target.dtype), target)}

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Decay / no-decay groups over the model's own names (``mask_token`` exempt, as VideoMAE)."""
        return param_groups(self.model, weight_decay)

    def checkpoint_state(self) -> dict[str, Tensor]:
        """VideoMAE's own key layout, so our checkpoints and the official ones are interchangeable."""
        return self.model.state_dict()

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)


class DistillTask(nn.Module):
    """MMKD: student + alignment heads are trained; the teacher only provides targets.

    Student and teacher see the same masked clip; the loss compares their last-block outputs,
    attention logits and values (spec §4). ``teacher_precision`` (``fp32 | bf16 | fp16``, default:
    whatever the caller's autocast does) is a context of its own: an fp32 teacher runs with
    autocast disabled on a float32 input and its weights never become half, also when DeepSpeed
    casts the task.
    """

    def __init__(
        self,
        student: PretrainVisionTransformer,
        teacher: PretrainVisionTransformer,
        heads: MMKDLoss,
        teacher_precision: str | None = None,
    ):
        super().__init__()
        self.student = student
        self.heads = heads
        teacher.eval().requires_grad_(False)
        self._teacher = [teacher]  # a list hides it from parameters(), state_dict(), DDP and .train()
        self.teacher_precision = teacher_precision
        self.num_temporal = student.encoder.grid_size[0]

    @property
    def teacher(self) -> PretrainVisionTransformer:
        return self._teacher[0]

    def _apply(self, fn, recurse=True):  # .to()/.cuda()/.half() act on the teacher too ...
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        if self.teacher_precision == "fp32" and self.teacher.encoder.patch_embed.proj.weight.dtype in (
            torch.float16,
            torch.bfloat16,
        ):  # ... except that an fp32 teacher stays float32 when DeepSpeed casts the task to half
            self.teacher.float()
        return self

    def _teacher_context(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.teacher_precision is None:
            return contextlib.nullcontext()  # inherit the caller's autocast
        return autocast_context(device, self.teacher_precision)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, mask = batch["video"], batch["mask"]  # uint8 clips stay uint8 (see the module docstring)
        need_attn, num_visible = "attention" in self.heads.needs, batch.get("num_visible")
        # through __call__ (forward = encode for encoder-only models), so that --compile applies
        with torch.no_grad(), self._teacher_context(video.device):
            video_t = upcast(video) if self.teacher_precision == "fp32" else video
            out_t = self.teacher(video_t, mask, return_attention=need_attn, num_visible=num_visible)
        # the objectives run in float32 (or float64) whatever the encoders' precision (softmaxes
        # over 1e3 logits); the heads take features of any float dtype (see models.distill.mmkd)
        no_autocast = partial(torch.autocast, device_type=video.device.type, enabled=False)
        out_t = out_t.map(upcast)
        with no_autocast():  # before the student's forward: on a GPU, no host sync for its count
            selected = self.heads.select(out_t)
        out_s = self.student(video, mask, return_attention=need_attn, num_visible=num_visible)
        with no_autocast():
            return self.heads(out_s.map(upcast), out_t, self.num_temporal, selected=selected)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Student and alignment heads in one decay / no-decay pair, as the reference groups them
        (no skip list: only 1-D tensors and biases are exempt; heads share the student's lr)."""
        return param_groups(self, weight_decay)

    def checkpoint_state(self) -> dict[str, Tensor]:
        return self.state_dict()

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state, strict=True)


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
    """Classification with optional random erasing, mixup / cutmix and label smoothing; layer-wise
    lr decay.

    The criterion is the reference's: soft-target CE with mixup, timm's label-smoothing CE with
    ``smoothing > 0``, plain CE otherwise. The task is the one owner of random erasing: it runs on
    the device, on the normalised training clips, before mixup (the reference's order), so the data
    sets ship uint8 clips whatever ``--reprob`` is; validation and test (which call ``model``
    directly) are never erased.
    """

    def __init__(
        self,
        model: VisionTransformer,
        mixup_fn=None,
        smoothing: float = 0.0,
        layer_decay: float | None = None,
        erasing: RandomErasing | None = None,
    ):
        super().__init__()
        self.model = model
        self.mixup_fn = mixup_fn
        self.layer_decay = layer_decay
        self.erasing = erasing
        if mixup_fn is not None:
            self.criterion = SoftTargetCrossEntropy()
        elif smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, label = normalized(batch["video"]), batch["label"]
        if self.training and self.erasing is not None:
            video = erase_clips(video, self.erasing)
        if self.training and self.mixup_fn is not None:
            # timm's Mixup cuts boxes on the last two axes: fold time into channels so all frames
            # share the box, then unfold (its in-place edits land in ``video``)
            mixed, soft = self.mixup_fn(video.flatten(1, 2), label)
            return {"loss": self.criterion(upcast(self.model(mixed.view_as(video))), soft)}
        logits = upcast(self.model(video))
        loss = self.criterion(logits, label) if self.training else F.cross_entropy(logits, label)
        return {"loss": loss, "class_acc": (logits.detach().argmax(-1) == label).to(logits.dtype).mean()}

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Layer-decay groups over the classifier's own names (``patch_embed`` 0, ``blocks.i`` i+1, head last)."""
        return param_groups(self.model, weight_decay, layer_decay=self.layer_decay)

    def checkpoint_state(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
