"""Clip transforms on uint8 video tensors (one set of random parameters per clip).

Decoders return ``[T, H, W, 3]`` uint8; every pipeline here returns ``[3, T, H, W]``: ImageNet-
normalised float32 by default, or, with ``normalize=False``, the uint8 clip, which the training task
normalises on its device with :func:`normalize_video` (4x less data between DataLoader workers and
the trainer, the float work moves to the GPU, and distillation's patch embedding normalises only
the visible tubelets). Crops and resizes run once on the
whole ``[T, 3, H, W]`` uint8 clip (channels-last memory, which torchvision's antialiased uint8
resize handles fastest), and the float conversion happens once, at the end, on the small output.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import InterpolationMode

# the normalisation is the models' (their input), defined once there
from models.targets import _SCALE, _SHIFT, IMAGENET_MEAN, IMAGENET_STD, normalize_video  # noqa: F401

from .crops import CropBox, random_resized_crop_box, sample_multi_scale_crop, three_crop_box
from .rand_augment import RandAugmentConfig, VideoRandAugment


def channels_first(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, 3]`` -> ``[T, 3, H, W]`` view (no copy; memory stays channels-last)."""
    return frames.permute(0, 3, 1, 2)


def crop_resize(video: torch.Tensor, box: CropBox, size: tuple[int, int]) -> torch.Tensor:
    """Cut ``box`` from every frame and resize bilinearly (antialiased) to ``size`` = (H, W).

    uint8 ``[T, 3, H, W]`` -> uint8 ``[T, 3, size[0], size[1]]``. Boxes reaching outside the frame
    are zero-padded, as PIL's crop does.
    """
    video = F.crop(video, box.top, box.left, box.height, box.width)
    if (box.height, box.width) == tuple(size):
        return video
    return F.resize(video, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def normalize(video: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, 3, H, W]`` -> ImageNet-normalised float32 ``[3, T, H, W]`` (contiguous)."""
    out = video.permute(1, 0, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    return out.mul_(_SCALE).add_(_SHIFT)


def output_clip(video: torch.Tensor, normalize_clip: bool) -> torch.Tensor:
    """uint8 ``[T, 3, H, W]`` -> ``[3, T, H, W]``: normalised float32 (contiguous), or the uint8 clip.

    The uint8 clip is a view that keeps the frames' ``[T, H, W, 3]`` memory order: making it
    contiguous would cost as much as the resize; :func:`datasets.collate_batch` stacks such clips
    in their memory order, and :func:`normalize_video` lays the batch out on the device.
    """
    if normalize_clip:
        return normalize(video)
    return video.permute(1, 0, 2, 3)


class PretrainTransform:
    """Pre-training clip: TSN multi-scale crop (spec §6) -> bilinear resize -> normalise.

    ``normalize=False`` skips the last step (uint8 output, see the module docstring).
    """

    def __init__(self, input_size: int = 224, normalize: bool = True) -> None:
        self.input_size = input_size
        self.normalize = normalize

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` -> ``[3, T, S, S]``, S = input_size."""
        height, width = frames.shape[1:3]
        box = sample_multi_scale_crop(height, width, self.input_size, rng)
        video = crop_resize(channels_first(frames), box, (self.input_size, self.input_size))
        return output_clip(video, self.normalize)


class FinetuneTrainTransform:
    """Fine-tuning train view (VideoMAE ``_aug_frame``).

    RandAugment (one draw per clip) -> random-resized crop (area 0.08–1, aspect 3/4–4/3) ->
    horizontal flip (p 0.5, off for SSv2) -> normalise. The reference normalises before the
    crop; resizing is linear, so doing it on uint8 first only adds uint8 rounding (≤ 0.5/255) and
    is cheaper. The reference's last step, random erasing, runs on the device after normalisation
    (:class:`engine.tasks.FinetuneTask`), so that the clips can travel as uint8.
    """

    def __init__(
        self,
        input_size: int = 224,
        auto_augment: str | None = None,
        flip: bool = True,
        normalize: bool = True,
    ) -> None:
        self.input_size = input_size
        self.rand_augment = VideoRandAugment(RandAugmentConfig.parse(auto_augment)) if auto_augment else None
        self.flip = flip
        self.normalize = normalize

    def __call__(self, frames: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` -> ``[3, T, S, S]``."""
        video = channels_first(frames)
        if self.rand_augment is not None:
            video = self.rand_augment(video, rng)
        box = random_resized_crop_box(video.shape[-2], video.shape[-1], rng)
        video = crop_resize(video, box, (self.input_size, self.input_size))
        if self.flip and rng.random() < 0.5:
            video = video.flip(-1)
        return output_clip(video, self.normalize)


class EvalTransform:
    """Eval / test view: short side -> ``short_side_size``, square crop ``input_size``, normalise.

    Crop ``crop_index`` of ``num_crops`` lies along the long side (left / centre / right for 3);
    one crop (or ``crop_index=None``) is the centre crop. VideoMAE's test crops are
    ``short_side_size`` wide; they equal ``input_size`` in every recipe, and using ``input_size``
    keeps the model's input fixed when they differ. ``normalize=False``: uint8 output.
    """

    def __init__(
        self, input_size: int = 224, short_side_size: int = 224, num_crops: int = 1, normalize: bool = True
    ) -> None:
        if short_side_size < input_size:
            raise ValueError(f"short_side_size ({short_side_size}) must be >= input_size ({input_size})")
        self.input_size = input_size
        self.short_side_size = short_side_size
        self.num_crops = num_crops
        self.normalize = normalize

    def __call__(self, frames: torch.Tensor, crop_index: int | None = None) -> torch.Tensor:
        """uint8 ``[T, H, W, 3]`` -> ``[3, T, S, S]``."""
        video = channels_first(frames)
        if min(video.shape[-2:]) != self.short_side_size:
            video = F.resize(
                video, [self.short_side_size], interpolation=InterpolationMode.BILINEAR, antialias=True
            )
        count = 1 if crop_index is None else self.num_crops
        box = three_crop_box(video.shape[-2], video.shape[-1], self.input_size, crop_index or 0, count)
        return output_clip(F.crop(video, *box), self.normalize)


def build_eval_transform(
    input_size: int = 224, short_side_size: int = 224, num_crops: int = 1, normalize: bool = True
) -> EvalTransform:
    """The val / test transform (``num_crops`` = ``test_num_crop`` for the test split)."""
    return EvalTransform(input_size, short_side_size, num_crops, normalize)
