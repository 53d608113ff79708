"""Token masks for masked video modelling (spec §2).

A mask is a boolean ``[N]`` array over the N = T'·H'·W' tubelet tokens in time-major order
(index t·H'W' + h·W' + w), True where the token is hidden. The hidden count is fixed per
generator so every sample of a batch has the same number of visible tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(input_size: Sequence[int], mask_ratio: float) -> tuple[int, int, int]:
    if len(input_size) != 3 or any(int(s) != s or s < 1 for s in input_size):
        raise ValueError(f"input_size must be three positive integers (T', H', W'), got {tuple(input_size)}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return int(input_size[0]), int(input_size[1]), int(input_size[2])


class TubeMaskingGenerator:
    """One spatial mask of int(ratio·H'W') hidden positions, repeated for every temporal slice.

    Every slice then keeps the same S = H'W' − int(ratio·H'W') visible positions, so visible tokens
    can be viewed as ``[T', S]`` (MM-local relies on it).
    """

    def __init__(self, input_size: Sequence[int], mask_ratio: float) -> None:
        self.frames, self.height, self.width = _check(input_size, mask_ratio)
        self.num_patches_per_frame = self.height * self.width
        self.num_masks_per_frame = int(mask_ratio * self.num_patches_per_frame)
        self.num_patches = self.frames * self.num_patches_per_frame
        self.num_masks = self.frames * self.num_masks_per_frame

    def __repr__(self) -> str:
        return f"TubeMaskingGenerator(tokens={self.num_patches}, hidden={self.num_masks})"

    def __call__(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Boolean mask ``[T'·H'·W']`` (True = hidden)."""
        rng = np.random.default_rng() if rng is None else rng
        spatial = np.zeros(self.num_patches_per_frame, dtype=bool)
        spatial[rng.permutation(self.num_patches_per_frame)[: self.num_masks_per_frame]] = True
        return np.tile(spatial, self.frames)


class RandomMaskingGenerator:
    """int(ratio·N) hidden positions anywhere among the N tokens."""

    def __init__(self, input_size: Sequence[int], mask_ratio: float) -> None:
        frames, height, width = _check(input_size, mask_ratio)
        self.num_patches = frames * height * width
        self.num_masks = int(mask_ratio * self.num_patches)

    def __repr__(self) -> str:
        return f"RandomMaskingGenerator(tokens={self.num_patches}, hidden={self.num_masks})"

    def __call__(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Boolean mask ``[N]`` (True = hidden)."""
        rng = np.random.default_rng() if rng is None else rng
        mask = np.zeros(self.num_patches, dtype=bool)
        mask[rng.permutation(self.num_patches)[: self.num_masks]] = True
        return mask


MASK_GENERATORS = {"tube": TubeMaskingGenerator, "random": RandomMaskingGenerator}


def build_mask_generator(
    mask_type: str, input_size: Sequence[int], mask_ratio: float
) -> TubeMaskingGenerator | RandomMaskingGenerator:
    """``mask_type`` in {"tube", "random"}; ``input_size`` = (T', H', W') token grid."""
    if mask_type not in MASK_GENERATORS:
        raise ValueError(f"mask_type must be one of {sorted(MASK_GENERATORS)}, got {mask_type!r}")
    return MASK_GENERATORS[mask_type](input_size, mask_ratio)
