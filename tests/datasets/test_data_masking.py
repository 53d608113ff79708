"""Tube and random masks: fixed counts, tube repeated over time, validation."""

from __future__ import annotations

import numpy as np
import pytest

from datasets import RandomMaskingGenerator, TubeMaskingGenerator, build_mask_generator


@pytest.mark.parametrize("grid", [(8, 14, 14), (4, 7, 7), (1, 3, 5), (2, 1, 1)])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9, 0.99])
def test_tube_counts_and_repetition(grid: tuple[int, int, int], ratio: float) -> None:
    generator = TubeMaskingGenerator(grid, ratio)
    frames, height, width = grid
    per_frame = int(ratio * height * width)
    for seed in range(3):
        mask = generator(np.random.default_rng(seed))
        assert mask.dtype == bool and mask.shape == (frames * height * width,)
        slices = mask.reshape(frames, height * width)  # time-major token order
        assert (slices == slices[0]).all()
        assert slices[0].sum() == per_frame == generator.num_masks_per_frame
        assert mask.sum() == generator.num_masks == frames * per_frame


@pytest.mark.parametrize("grid", [(8, 14, 14), (4, 7, 7), (1, 3, 5)])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_random_counts(grid: tuple[int, int, int], ratio: float) -> None:
    generator = RandomMaskingGenerator(grid, ratio)
    total = int(np.prod(grid))
    masks = [generator(np.random.default_rng(seed)) for seed in range(5)]
    assert all(m.dtype == bool and m.shape == (total,) and m.sum() == int(ratio * total) for m in masks)


def test_random_mask_is_not_a_tube() -> None:
    mask = RandomMaskingGenerator((8, 14, 14), 0.9)(np.random.default_rng(0)).reshape(8, -1)
    assert not (mask == mask[0]).all()


def test_masks_follow_the_generator_and_vary() -> None:
    generator = TubeMaskingGenerator((8, 14, 14), 0.9)
    assert (generator(np.random.default_rng(1)) == generator(np.random.default_rng(1))).all()
    assert (generator(np.random.default_rng(1)) != generator(np.random.default_rng(2))).any()
    assert generator().shape == (1568,)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_bad_ratio(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        TubeMaskingGenerator((8, 14, 14), ratio)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        RandomMaskingGenerator((8, 14, 14), ratio)


def test_builder() -> None:
    assert isinstance(build_mask_generator("tube", (8, 14, 14), 0.9), TubeMaskingGenerator)
    assert isinstance(build_mask_generator("random", (8, 14, 14), 0.9), RandomMaskingGenerator)
    with pytest.raises(ValueError, match="mask_type"):
        build_mask_generator("block", (8, 14, 14), 0.9)
    with pytest.raises(ValueError, match="input_size"):
        build_mask_generator("tube", (8, 14), 0.9)
