"""Video RandAugment: policy parsing, op parity with timm's PIL ops, one draw per clip."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import auto_augment

from datasets.rand_augment import RAND_INCREASING_OPS, RandAugmentConfig, VideoRandAugment


def test_parse_recipe_policy() -> None:
    config = RandAugmentConfig.parse("rand-m7-n4-mstd0.5-inc1")
    assert config == RandAugmentConfig(magnitude=7, num_ops=4, magnitude_std=0.5, increasing=True, prob=0.5)
    with pytest.raises(ValueError, match="unknown RandAugment option"):
        RandAugmentConfig.parse("rand-m7-x3")
    with pytest.raises(ValueError, match="must start with 'rand'"):
        RandAugmentConfig.parse("augmix-m5")
    with pytest.raises(ValueError, match="increasing"):
        VideoRandAugment(RandAugmentConfig.parse("rand-m7-n4"))


def test_same_op_list_as_timm() -> None:
    assert list(RAND_INCREASING_OPS) == list(auto_augment._RAND_INCREASING_TRANSFORMS)


class _FixedDraw:
    """Stands in for the generator: every sign draw returns ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("name", list(RAND_INCREASING_OPS))
@pytest.mark.parametrize("draw", [0.2, 0.8])
def test_ops_match_timm_pil(name: str, draw: float, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    image = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    image[10:25, 8:30] = (250, 20, 20)
    ours = RAND_INCREASING_OPS[name](torch.from_numpy(image).permute(2, 0, 1)[None], 7.0, _FixedDraw(draw))
    op = auto_augment.AugmentOp(name, prob=1.0, magnitude=7, hparams={"interpolation": Image.BILINEAR})
    monkeypatch.setattr(random, "random", lambda: draw)  # timm draws its sign from `random`
    theirs = np.asarray(op(Image.fromarray(image))).astype(np.float32)
    diff = np.abs(ours[0].permute(1, 2, 0).numpy().astype(np.float32) - theirs)
    if name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
        assert diff.mean() < 3.0  # edges and sub-pixel sampling differ (bilinear tensor vs PIL)
    else:
        assert diff.max() <= 1.0  # pixel ops: equal up to rounding (PIL rounds the contrast mean)


def test_one_draw_for_the_whole_clip() -> None:
    augment = VideoRandAugment(RandAugmentConfig.parse("rand-m9-n4-mstd0.5-inc1-p1.0"))
    frame = torch.from_numpy((np.random.default_rng(0).random((3, 40, 56)) * 255).astype(np.uint8))
    clip = frame.expand(6, 3, 40, 56).contiguous()
    changed = 0
    for seed in range(10):
        out = augment(clip, np.random.default_rng(seed))
        assert out.shape == clip.shape and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[t]) for t in range(1, 6))  # identical frames stay identical
        changed += not torch.equal(out, clip)
    assert changed >= 9


def test_seeded() -> None:
    augment = VideoRandAugment(RandAugmentConfig.parse("rand-m7-n4-mstd0.5-inc1"))
    clip = torch.from_numpy((np.random.default_rng(0).random((4, 3, 24, 32)) * 255).astype(np.uint8))
    assert torch.equal(augment(clip, np.random.default_rng(5)), augment(clip, np.random.default_rng(5)))
