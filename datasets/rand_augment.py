"""RandAugment for video: one draw of ops and magnitudes applied to every frame of a clip.

Equivalent of timm's ``rand_augment_transform("rand-m7-n4-mstd0.5-inc1")`` as VideoMAE uses it
(through its PIL-list variant), but on a uint8 ``[T, 3, H, W]`` tensor with
``torchvision.transforms.v2.functional``. Per-image statistics (auto-contrast, equalise, contrast
mean) are per frame, as the reference's per-frame PIL ops. Geometric ops use bilinear sampling
(torchvision tensors have no bicubic affine) with timm's grey fill (128).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import InterpolationMode

_MAX_LEVEL = 10.0
_POLICY_FIELDS = {
    "m": "magnitude",
    "n": "num_ops",
    "mstd": "magnitude_std",
    "mmax": "magnitude_max",
    "p": "prob",
}
_FILL = [128.0, 128.0, 128.0]


def _sign(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() > 0.5 else value  # timm's _randomly_negate


def _enhance_factor(level: float, rng: np.random.Generator) -> float:
    return 1.0 + _sign(level / _MAX_LEVEL * 0.9, rng)


def _affine(video: torch.Tensor, **kwargs: object) -> torch.Tensor:
    defaults = {"angle": 0.0, "translate": [0.0, 0.0], "scale": 1.0, "shear": [0.0, 0.0]}
    return F.affine(video, **{**defaults, **kwargs}, interpolation=InterpolationMode.BILINEAR, fill=_FILL)


def _shear(video: torch.Tensor, level: float, rng: np.random.Generator, axis: int) -> torch.Tensor:
    # PIL's AFFINE (1, s, 0, 0, 1, 0) shears about the top-left corner: centre (0, 0) keeps that.
    factor = _sign(level / _MAX_LEVEL * 0.3, rng)
    shear = [0.0, 0.0]
    shear[axis] = math.degrees(math.atan(factor))
    return _affine(video, shear=shear, center=[0.0, 0.0])


def _translate(video: torch.Tensor, level: float, rng: np.random.Generator, axis: int) -> torch.Tensor:
    fraction = _sign(level / _MAX_LEVEL * 0.45, rng)
    pixels = fraction * video.shape[-1 if axis == 0 else -2]
    translate = [0.0, 0.0]
    translate[axis] = -pixels  # PIL samples the input at x + pixels: content moves the other way
    return _affine(video, translate=translate)


def _solarize_add(video: torch.Tensor, level: float) -> torch.Tensor:
    add = int(level / _MAX_LEVEL * 110)
    return torch.where(video < 128, (video.to(torch.int16) + add).clamp_(max=255).to(torch.uint8), video)


Op = Callable[[torch.Tensor, float, np.random.Generator], torch.Tensor]

# timm's _RAND_INCREASING_TRANSFORMS ("inc1"): magnitude always strengthens the op.
RAND_INCREASING_OPS: dict[str, Op] = {
    "AutoContrast": lambda v, m, rng: F.autocontrast(v),
    "Equalize": lambda v, m, rng: F.equalize(v),
    "Invert": lambda v, m, rng: F.invert(v),
    "Rotate": lambda v, m, rng: F.rotate(
        v, _sign(m / _MAX_LEVEL * 30.0, rng), interpolation=InterpolationMode.BILINEAR, fill=_FILL
    ),
    "PosterizeIncreasing": lambda v, m, rng: F.posterize(v, 4 - int(m / _MAX_LEVEL * 4)),
    "SolarizeIncreasing": lambda v, m, rng: F.solarize(v, 256 - int(m / _MAX_LEVEL * 256)),
    "SolarizeAdd": lambda v, m, rng: _solarize_add(v, m),
    "ColorIncreasing": lambda v, m, rng: F.adjust_saturation(v, _enhance_factor(m, rng)),
    "ContrastIncreasing": lambda v, m, rng: F.adjust_contrast(v, _enhance_factor(m, rng)),
    "BrightnessIncreasing": lambda v, m, rng: F.adjust_brightness(v, _enhance_factor(m, rng)),
    "SharpnessIncreasing": lambda v, m, rng: F.adjust_sharpness(v, _enhance_factor(m, rng)),
    "ShearX": lambda v, m, rng: _shear(v, m, rng, 0),
    "ShearY": lambda v, m, rng: _shear(v, m, rng, 1),
    "TranslateXRel": lambda v, m, rng: _translate(v, m, rng, 0),
    "TranslateYRel": lambda v, m, rng: _translate(v, m, rng, 1),
}


@dataclass(frozen=True)
class RandAugmentConfig:
    """Parsed ``rand-m{magnitude}-n{num_ops}-mstd{std}-mmax{max}-inc{0|1}-p{prob}`` policy."""

    magnitude: float = 9.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = _MAX_LEVEL
    increasing: bool = False
    prob: float = 0.5

    @classmethod
    def parse(cls, spec: str) -> RandAugmentConfig:
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(f"RandAugment policy must start with 'rand', got {spec!r}")
        fields: dict[str, object] = {}
        for part in parts[1:]:
            match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)([0-9.]+|inf)", part)
            if match is None:
                raise ValueError(f"unknown RandAugment option {part!r} in {spec!r}")
            key, value = match.groups()
            if key == "inc":
                fields["increasing"] = bool(int(value))
            else:
                fields[_POLICY_FIELDS[key]] = int(value) if key == "n" else float(value)
        return cls(**fields)


class VideoRandAugment:
    """Apply ``num_ops`` ops (drawn with replacement), each with probability ``prob``, to a whole clip."""

    def __init__(self, config: RandAugmentConfig) -> None:
        if not config.increasing:
            # Only the increasing set is used by the recipes; refuse rather than silently differ.
            raise ValueError("only increasing RandAugment policies ('inc1') are implemented")
        self.config = config
        self.op_names = tuple(RAND_INCREASING_OPS)

    def __call__(self, video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 ``[T, 3, H, W]`` -> uint8 ``[T, 3, H, W]``."""
        cfg = self.config
        for name in rng.choice(self.op_names, cfg.num_ops, replace=True):
            if cfg.prob < 1.0 and rng.random() > cfg.prob:
                continue
            video = RAND_INCREASING_OPS[str(name)](video, self._magnitude(rng), rng)
        return video

    def _magnitude(self, rng: np.random.Generator) -> float:
        cfg = self.config
        if cfg.magnitude_std == float("inf"):
            magnitude = rng.uniform(0.0, cfg.magnitude)
        elif cfg.magnitude_std > 0:
            magnitude = rng.normal(cfg.magnitude, cfg.magnitude_std)
        else:
            magnitude = cfg.magnitude
        return float(min(max(magnitude, 0.0), cfg.magnitude_max))
