"""Crop geometry against spec §6, and the tensor transforms' shapes, ranges and consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.crops import (
    CropBox,
    fixed_crop_offsets,
    multi_scale_crop_sizes,
    random_resized_crop_box,
    sample_multi_scale_crop,
    three_crop_box,
)
from datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FinetuneTrainTransform,
    PretrainTransform,
    build_eval_transform,
    normalize,
)


def test_multi_scale_sizes_kinetics() -> None:
    # 340x256: base 256 -> 256, 224, 192, 168 (224 already the output size).
    sizes = multi_scale_crop_sizes(256, 340, 224)
    assert sizes == [
        (256, 256), (224, 256),
        (256, 224), (224, 224), (192, 224),
        (224, 192), (192, 192), (168, 192),
        (192, 168), (168, 168),
    ]  # fmt: skip


def test_multi_scale_snaps_within_three_pixels() -> None:
    # 320x240: base 240 -> 240, 210, 180, 158; nothing within 3 px of 224.
    assert {w for w, _ in multi_scale_crop_sizes(240, 320, 224)} == {240, 210, 180, 158}
    # base 226 -> 226 (snapped to 224, |2| < 3), 197, 169, 149.
    assert {w for w, _ in multi_scale_crop_sizes(226, 300, 224)} == {224, 197, 169, 149}
    # base 227 -> 227 stays (|3| is not < 3).
    assert 227 in {w for w, _ in multi_scale_crop_sizes(227, 300, 224)}


def test_thirteen_fixed_offsets() -> None:
    offsets = fixed_crop_offsets(256, 340, 224, 224)  # steps (340-224)//4 = 29, (256-224)//4 = 8
    assert offsets == [
        (0, 0), (116, 0), (0, 32), (116, 32), (58, 16),
        (0, 16), (116, 16), (58, 32), (58, 0),
        (29, 8), (87, 8), (29, 24), (87, 24),
    ]  # fmt: skip


def test_sampled_crops_cover_the_spec_choices() -> None:
    rng = np.random.default_rng(0)
    seen_sizes, seen_offsets = set(), set()
    for _ in range(3000):
        box = sample_multi_scale_crop(256, 340, 224, rng)
        seen_sizes.add((box.width, box.height))
        if (box.width, box.height) == (224, 224):
            seen_offsets.add((box.left, box.top))
    assert seen_sizes == set(multi_scale_crop_sizes(256, 340, 224))
    assert seen_offsets == set(fixed_crop_offsets(256, 340, 224, 224))


def test_random_resized_crop_box_bounds() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        box = random_resized_crop_box(240, 320, rng)
        assert box.top >= 0 and box.left >= 0 and box.top + box.height <= 240 and box.left + box.width <= 320
        assert 0.08 * 240 * 320 * 0.9 <= box.height * box.width <= 240 * 320
    # A very wide image exhausts the tries: centre crop clamped to aspect 4/3.
    assert random_resized_crop_box(10, 1000, rng, scale=(0.999, 1.0)) == CropBox(0, 493, 10, 13)


def test_three_crops_along_long_side() -> None:
    assert [three_crop_box(224, 298, 224, i, 3) for i in range(3)] == [
        CropBox(0, 0, 224, 224), CropBox(0, 37, 224, 224), CropBox(0, 74, 224, 224),
    ]  # fmt: skip
    assert three_crop_box(300, 224, 224, 2, 3) == CropBox(76, 0, 224, 224)  # portrait: along the height
    assert three_crop_box(224, 298, 224, 0, 1) == CropBox(0, 37, 224, 224)  # one crop: centre


def _clip(frames: int = 6, height: int = 40, width: int = 56, seed: int = 0) -> torch.Tensor:
    """uint8 [T, H, W, 3] whose frames share their content (only brightness changes per frame)."""
    rng = np.random.default_rng(seed)
    image = torch.from_numpy((rng.random((height, width, 3)) * 200).astype(np.uint8))
    return torch.stack([image + 5 * t for t in range(frames)])


def test_pretrain_transform_same_crop_for_all_frames() -> None:
    clip = _clip()
    out = PretrainTransform(32)(clip, np.random.default_rng(3))
    assert out.shape == (3, 6, 32, 32) and out.dtype == torch.float32 and out.is_contiguous()
    # Frames differ by +5 grey levels everywhere, so the same crop gives a constant per-channel shift.
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for t in range(1, 6):
        shift = (out[:, t] - out[:, 0]) * std * 255
        assert torch.allclose(shift, torch.full_like(shift, 5.0 * t), atol=1.01)


def test_normalize_values() -> None:
    video = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize(video)
    assert out.shape == (3, 2, 2, 2)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[:, 0, 0, 0], -mean / std, atol=1e-6)
    assert torch.allclose(out[:, 1, 0, 0], (1 - mean) / std, atol=1e-6)


def test_finetune_train_transform() -> None:
    transform = FinetuneTrainTransform(32, "rand-m7-n4-mstd0.5-inc1")
    clip = _clip()
    out = transform(clip, np.random.default_rng(0))
    assert out.shape == (3, 6, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() < 10
    again = transform(clip, np.random.default_rng(0))
    assert torch.equal(out, again)


def test_finetune_flip_is_clip_consistent() -> None:
    clip = _clip(frames=4)
    transform = FinetuneTrainTransform(24, None, flip=True)
    no_flip = FinetuneTrainTransform(24, None, flip=False)
    flipped = 0
    for seed in range(20):
        a, b = transform(clip, np.random.default_rng(seed)), no_flip(clip, np.random.default_rng(seed))
        if not torch.equal(a, b):
            flipped += 1
            assert torch.equal(a, b.flip(-1))  # every frame flipped together
    assert 0 < flipped < 20


def test_eval_transform_resizes_short_side_and_crops() -> None:
    clip = _clip(frames=3, height=48, width=64)
    transform = build_eval_transform(input_size=24, short_side_size=32, num_crops=3)
    crops = [transform(clip, i) for i in range(3)]
    assert all(c.shape == (3, 3, 24, 24) for c in crops)
    assert not torch.equal(crops[0], crops[2])
    assert torch.equal(transform(clip), transform(clip, 1))  # centre crop of three == single centre crop
    with pytest.raises(ValueError, match="short_side_size"):
        build_eval_transform(input_size=224, short_side_size=200)
