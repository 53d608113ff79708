"""Random erasing (timm ``RandomErasing(p, mode="pixel", max_count=1)``), one region per frame.

VideoMAE permutes the clip to ``[T, C, H, W]`` and calls timm's RandomErasing, which treats T as
the batch: every frame independently gets a region with probability ``p``. We keep that
behaviour, but draw from the item's generator so a seed fixes the result.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class RandomErasing:
    """Erase one rectangle per frame with per-pixel N(0, 1) noise (the input is already normalised).

    Args:
        probability: chance that a frame is erased.
        min_area, max_area: area fraction of the rectangle.
        min_aspect: aspect ratios are log-uniform in [min_aspect, 1 / min_aspect].
    """

    def __init__(
        self,
        probability: float = 0.25,
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"erasing probability must be in [0, 1], got {probability}")
        self.probability = probability
        self.area = (min_area, max_area)
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def __call__(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Float ``[C, T, H, W]``, modified in place and returned."""
        channels, frames, height, width = video.shape
        for t in range(frames):
            if rng.random() > self.probability:
                continue
            for _ in range(10):
                target_area = rng.uniform(*self.area) * height * width
                aspect = math.exp(rng.uniform(*self.log_aspect))
                h = int(round(math.sqrt(target_area * aspect)))
                w = int(round(math.sqrt(target_area / aspect)))
                if w < width and h < height:
                    top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
                    noise = rng.standard_normal((channels, h, w), dtype=np.float32)
                    video[:, t, top : top + h, left : left + w] = torch.from_numpy(noise)
                    break
        return video
