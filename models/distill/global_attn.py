"""MM-global: top-k attention aggregation over all visible tokens of the last block (spec §4.3)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import merge_heads, project, topk_attention


def aggregate_global(attn: Tensor, v: Tensor, num_k: int, kd_T: float) -> Tensor:
    """attn [B, H, P, P] logits, v [B, H, P, d] -> top-k aggregated values [B, P, H*d]."""
    return merge_heads(topk_attention(attn, num_k, kd_T) @ v)


def mm_global_loss(
    attn_s: Tensor,
    attn_t: Tensor,
    v_s: Tensor,
    v_t: Tensor,
    num_k: int,
    kd_T: float,
    proj_s: Callable[[Tensor], Tensor] | None = None,
    proj_t: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """MSE between the student's and the teacher's (each projected) top-k aggregated values."""
    h_s = project(aggregate_global(attn_s, v_s, num_k, kd_T), proj_s)
    with torch.no_grad():
        h_t = aggregate_global(attn_t.detach(), v_t.detach(), num_k, kd_T)
    return F.mse_loss(h_s, project(h_t, proj_t))
