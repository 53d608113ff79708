"""VideoMAE's reconstruction target: per-tube normalised pixels of the masked tokens (spec §3)."""

from __future__ import annotations

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def patchify(video: Tensor, patch_size: int, tubelet_size: int) -> Tensor:
    """[B, C, T, H, W] -> [B, N, tubelet*p*p, C], tokens time-major, pixels (dt, dy, dx) row-major."""
    b, c, t, h, w = video.shape
    p, q = patch_size, tubelet_size
    x = video.reshape(b, c, t // q, q, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, T', H', W', q, p, p, C]
    return x.reshape(b, (t // q) * (h // p) * (w // p), q * p * p, c)


def pixel_target(
    video: Tensor,
    mask: Tensor,
    patch_size: int,
    tubelet_size: int,
    normalize: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> Tensor:
    """ImageNet-normalised clip [B, 3, T, H, W] + mask [B, N] -> target [B, N_mask, tubelet*p*p*3].

    Pixels are un-normalised to [0, 1]; with ``normalize`` each tube is standardised per colour
    channel with its unbiased std (+1e-6). Channel is the fastest axis of each flattened tube.
    """
    # float32 constants, as the reference, so float64 runs see the same values
    m = torch.tensor(mean, dtype=torch.float32, device=video.device).to(video.dtype)[
        None, :, None, None, None
    ]
    s = torch.tensor(std, dtype=torch.float32, device=video.device).to(video.dtype)[None, :, None, None, None]
    tubes = patchify(video * s + m, patch_size, tubelet_size)
    if normalize:
        tubes = (tubes - tubes.mean(dim=-2, keepdim=True)) / (
            tubes.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
        )
    b, n, _, _ = tubes.shape
    return tubes.reshape(b, n, -1)[mask].reshape(b, -1, tubes.shape[-2] * tubes.shape[-1])
