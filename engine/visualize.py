"""What MMKD distils, drawn: masked frames, VideoMAE reconstruction and the three selection maps.

For one query token the maps show (i) MM-global: its top-k attention over all visible tokens,
(ii) MM-local: its top-k attention inside every temporal slice, (iii) MM-hint: the top-K
tokens by L1 feature norm. Heat maps are placed back on the token grid and over the frames.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from models import PretrainVisionTransformer
from models.distill import topk_attention, topk_keep_mask
from models.targets import IMAGENET_MEAN, IMAGENET_STD, patchify


def to_uint8_frames(video: Tensor) -> np.ndarray:
    """Normalised clip [3, T, H, W] -> uint8 [T, H, W, 3]."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    pix = (video.cpu().float() * std + mean).clamp(0, 1)
    return (pix.permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)


def scatter_visible(values: Tensor, mask: Tensor, grid: tuple[int, int, int]) -> np.ndarray:
    """Per-visible-token values [P] + mask [N] -> [T', H', W'] map (hidden positions are 0)."""
    full = torch.zeros(mask.numel(), dtype=torch.float32)
    full[~mask.cpu()] = values.detach().float().cpu()
    return full.reshape(grid).numpy()


def selection_maps(
    model: PretrainVisionTransformer,
    video: Tensor,
    mask: Tensor,
    query: int,
    num_k: int,
    num_f: int,
    kd_T: float = 1.0,
) -> dict[str, np.ndarray]:
    """Maps [T', H', W'] for one clip [3, T, H, W] and its mask [N]; ``query`` indexes visible tokens."""
    grid = model.encoder.grid_size
    with torch.no_grad():
        out = model.encode(video[None], mask[None], return_attention=True)
    p = out.features.shape[1]
    if not 0 <= query < p:
        raise ValueError(f"query token {query} is outside the {p} visible tokens")
    logits = out.attn_logits[0, :, query]  # [H, P]
    glob = topk_attention(logits, min(num_k, p), kd_T).mean(0)  # [P]
    s = p // grid[0]
    local = topk_attention(logits.reshape(-1, grid[0], s), min(num_k, s), kd_T).mean(0).reshape(p)
    score = out.features[0].abs().sum(-1)
    hint = score * topk_keep_mask(score, min(num_f, p))
    maps = {"global": glob, "local": local, "hint": hint}
    return {name: scatter_visible(v, mask, grid) for name, v in maps.items()}


def reconstruct(model: PretrainVisionTransformer, video: Tensor, mask: Tensor) -> Tensor:
    """VideoMAE reconstruction [3, T, H, W]; masked tubes get their own pixel statistics back."""
    p, q = model.patch_size, model.tubelet_size
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    pixels = (video.cpu().float() * std + mean)[None]
    tubes = patchify(pixels, p, q)[0]  # [N, q*p*p, 3]
    with torch.no_grad():
        pred = model(video[None], mask[None])[0].float().cpu().reshape(-1, q * p * p, 3)
    mu, sigma = tubes.mean(1, keepdim=True), tubes.var(1, unbiased=True, keepdim=True).sqrt() + 1e-6
    tubes[mask.cpu()] = pred * sigma[mask.cpu()] + mu[mask.cpu()]
    c, t, h, w = video.shape
    x = tubes.reshape(t // q, h // p, w // p, q, p, p, c).permute(6, 0, 3, 1, 4, 2, 5).reshape(c, t, h, w)
    return (x.clamp(0, 1) - mean) / std


def heat_colors(values: np.ndarray) -> np.ndarray:
    """[...] in [0, 1] -> [..., 3] uint8 with a black-red-yellow-white ramp."""
    v = np.clip(values, 0, 1)[..., None]
    ramp = np.concatenate([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    return (ramp * 255).astype(np.uint8)


def overlay(frames: np.ndarray, maps: np.ndarray, tubelet: int, alpha: float = 0.6) -> np.ndarray:
    """frames [T, H, W, 3], token map [T', H', W'] -> blended [T', H, W, 3] (first frame of each tube)."""
    firsts = frames[::tubelet][: maps.shape[0]]
    m = maps / max(float(maps.max()), 1e-12)
    h, w = firsts.shape[1:3]
    up = np.stack([np.array(Image.fromarray(heat_colors(x)).resize((w, h), Image.NEAREST)) for x in m])
    return (alpha * up + (1 - alpha) * firsts).astype(np.uint8)


def masked_frames(frames: np.ndarray, mask: Tensor, grid: tuple[int, int, int], tubelet: int) -> np.ndarray:
    """Greys out the hidden tubes: [T, H, W, 3] -> [T', H, W, 3]."""
    firsts = frames[::tubelet][: grid[0]].copy()
    h, w = firsts.shape[1:3]
    m = mask.cpu().numpy().reshape(grid).astype(np.uint8)
    up = np.stack([np.array(Image.fromarray(x * 255).resize((w, h), Image.NEAREST)) > 0 for x in m])
    firsts[up] = (0.3 * firsts[up] + 0.7 * 128).astype(np.uint8)
    return firsts


def strip(images: np.ndarray, label: str, pad: int = 2, min_height: int = 96) -> Image.Image:
    """[K, H, W, 3] -> one labelled row image; small clips are enlarged (nearest) to ``min_height``."""
    k, h, w, _ = images.shape
    scale = max(1, -(-min_height // h))
    h, w = h * scale, w * scale
    label_h = 14
    row = Image.new("RGB", (k * (w + pad) + pad, h + label_h + pad), "white")
    for i, img in enumerate(images):
        row.paste(Image.fromarray(img).resize((w, h), Image.NEAREST), (pad + i * (w + pad), label_h))
    ImageDraw.Draw(row).text((pad, 1), label, fill="black")
    return row


def stack_rows(rows: list[Image.Image]) -> Image.Image:
    width = max(r.width for r in rows)
    out = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    return out
