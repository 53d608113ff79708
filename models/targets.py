"""The models' pixels: ImageNet normalisation of uint8 clips, and VideoMAE's reconstruction target
(per-tube normalised pixels of the masked tokens, spec §3)."""

from __future__ import annotations

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (x / 255 - mean) / std  ==  x * _SCALE + _SHIFT, per channel, shaped for [..., 3, T, H, W]
_SCALE = (1.0 / (255.0 * torch.tensor(IMAGENET_STD))).view(3, 1, 1, 1)
_SHIFT = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(3, 1, 1, 1)


def normalize_video(video: Tensor) -> Tensor:
    """uint8 pixels ``[..., 3, t, h, w]`` (clips, a batch, gathered tubelets; any strides) ->
    contiguous ImageNet-normalised float32, on their device.

    Elementwise (one multiply, one add per pixel, each rounded once), so normalising a clip and then
    cutting pieces out of it gives exactly the values of cutting the uint8 pieces and normalising
    those: the patch embedding uses that to normalise only the visible tubelets.
    """
    if video.dtype != torch.uint8 or video.dim() < 4 or video.shape[-4] != 3:
        raise ValueError(f"expected uint8 clips [..., 3, T, H, W], got {video.dtype} {tuple(video.shape)}")
    # non-blocking: a blocking copy from pageable memory would wait for the GPU (a host sync per
    # call); CUDA stages a pageable source at once, so the 24 bytes are safe to reuse right away
    scale = _SCALE.to(video.device, non_blocking=True)
    shift = _SHIFT.to(video.device, non_blocking=True)
    return video.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale).add_(shift)


def normalized(video: Tensor) -> Tensor:
    """uint8 pixels -> `normalize_video`; float ones (already normalised) as they are."""
    return normalize_video(video) if video.dtype == torch.uint8 else video


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
    hidden: Tensor | None = None,
) -> Tensor:
    """ImageNet-normalised clip [B, 3, T, H, W] + mask [B, N] -> target [B, N_mask, tubelet*p*p*3].

    Pixels are un-normalised to [0, 1]; with ``normalize`` each tube is standardised per colour
    channel with its unbiased std (+1e-6). Channel is the fastest axis of each flattened tube.
    ``hidden``: the masked tokens' indices [B, N_mask], ascending (`models.tokens.split_tokens`);
    without them the mask selects them, which on a GPU waits for it (a host sync).
    """

    # float32 constants, as the reference, so float64 runs see the same values (made on the host
    # and copied without blocking: torch.tensor(..., device=cuda) would be a host sync)
    def constant(values: tuple[float, ...]) -> Tensor:
        t = torch.tensor(values, dtype=torch.float32).to(video.device, non_blocking=True)
        return t.to(video.dtype)[None, :, None, None, None]

    m, s = constant(mean), constant(std)
    tubes = patchify(video * s + m, patch_size, tubelet_size)  # a view: nothing copied yet
    b, n, k, c = tubes.shape
    # Only the hidden tubes are targets, so they are picked first and only they are standardised
    # (the same values: each tube is standardised on its own). Measured on the quickstart's teacher
    # step (CPU): the strided var over dim -2 of every tube was 10 % of the step; picking first and
    # reducing over a contiguous last axis (channel-major tubes) makes it ~0.1 ms.
    if hidden is not None:  # the same rows as the mask's, in the same order
        picked = torch.gather(tubes, 1, hidden[..., None, None].expand(-1, -1, k, c))
    else:
        picked = tubes[mask].reshape(b, -1, k, c)
    if normalize:
        per_channel = picked.transpose(-1, -2).contiguous()  # [B, N_mask, C, tubelet*p*p]
        # two passes (mean, then squared deviations): torch's var / var_mean kernel alone took
        # 0.8 ms of the 12 ms step here, these three elementwise ops and two sums ~0.1 ms
        centred = per_channel - per_channel.mean(dim=-1, keepdim=True)
        var = centred.square().sum(dim=-1, keepdim=True) / (k - 1)  # unbiased, as the reference
        picked = (centred / (var.sqrt() + 1e-6)).transpose(-1, -2)
    return picked.reshape(b, picked.shape[1], k * c)
