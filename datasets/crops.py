"""Crop boxes (pure geometry; the tensors are cut in :mod:`datasets.transforms`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

MULTI_SCALE_CROP_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
# TSN offsets in quarter steps: corners, centre, edge midpoints (l, r, b, t), quarter points.
_OFFSET_GRID = (
    (0, 0),
    (4, 0),
    (0, 4),
    (4, 4),
    (2, 2),
    (0, 2),
    (4, 2),
    (2, 4),
    (2, 0),
    (1, 1),
    (3, 1),
    (1, 3),
    (3, 3),
)


class CropBox(NamedTuple):
    """A crop in pixel coordinates of the full frame."""

    top: int
    left: int
    height: int
    width: int


def multi_scale_crop_sizes(
    image_h: int, image_w: int, output_size: int, scales: tuple[float, ...] = MULTI_SCALE_CROP_SCALES
) -> list[tuple[int, int]]:
    """TSN ``GroupMultiScaleCrop`` candidate (width, height) pairs, in the reference's order.

    Sizes are int(min(h, w)·s), each replaced by ``output_size`` when it is less than 3 px away;
    a pair takes its height from candidate i and its width from candidate j with |i − j| ≤ 1.
    """
    base = min(image_h, image_w)
    sizes = [int(base * s) for s in scales]
    snapped = [output_size if abs(s - output_size) < 3 else s for s in sizes]
    return [(w, h) for i, h in enumerate(snapped) for j, w in enumerate(snapped) if abs(i - j) <= 1]


def fixed_crop_offsets(image_h: int, image_w: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
    """The 13 TSN (x, y) offsets on a grid of step (dim − crop) // 4, in the reference's order.

    Four corners, centre, four edge midpoints (left, right, bottom, top), four quarter points.
    """
    ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    return [(gx * ws, gy * hs) for gx, gy in _OFFSET_GRID]


def sample_multi_scale_crop(
    image_h: int, image_w: int, output_size: int, rng: np.random.Generator
) -> CropBox:
    """Draw a size pair uniformly, then one of the 13 fixed offsets uniformly (spec §6)."""
    sizes = multi_scale_crop_sizes(image_h, image_w, output_size)
    crop_w, crop_h = sizes[int(rng.integers(len(sizes)))]
    offsets = fixed_crop_offsets(image_h, image_w, crop_h, crop_w)
    left, top = offsets[int(rng.integers(len(offsets)))]
    return CropBox(top, left, crop_h, crop_w)


def random_resized_crop_box(
    image_h: int,
    image_w: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> CropBox:
    """Inception-style crop: area fraction in ``scale``, log-uniform aspect in ``ratio``.

    Ten tries, then a centre crop clamped to ``ratio`` (as torchvision / SlowFast).
    """
    area = image_h * image_w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= image_w and 0 < h <= image_h:
            return CropBox(int(rng.integers(image_h - h + 1)), int(rng.integers(image_w - w + 1)), h, w)
    in_ratio = image_w / image_h
    if in_ratio < min(ratio):
        w, h = image_w, int(round(image_w / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(image_h * max(ratio))), image_h
    else:
        w, h = image_w, image_h
    return CropBox((image_h - h) // 2, (image_w - w) // 2, h, w)


def spatial_crop_start(length: int, size: int, index: int, count: int) -> int:
    """Start of crop ``index`` of ``count`` evenly spaced ones along a side (one crop: centred).

    Matches VideoMAE's test crops: int(index·(length − size)/(count − 1)).
    """
    if count == 1:
        return (length - size) // 2
    return int(index * ((length - size) / (count - 1)))


def three_crop_box(image_h: int, image_w: int, size: int, index: int, count: int) -> CropBox:
    """Square test crop ``index`` of ``count`` along the long side, centred along the short side."""
    if image_h >= image_w:
        return CropBox(spatial_crop_start(image_h, size, index, count), (image_w - size) // 2, size, size)
    return CropBox((image_h - size) // 2, spatial_crop_start(image_w, size, index, count), size, size)
