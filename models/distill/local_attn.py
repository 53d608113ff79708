"""MM-local: per-temporal-slice top-k attention aggregation (spec §4.4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import project, topk_attention

VALUE_LAYOUTS = ("time_major", "reference")


def aggregate_local(
    attn: Tensor, v: Tensor, num_temporal: int, num_k: int, kd_T: float, value_layout: str
) -> Tensor:
    """attn [B, H, P, P], v [B, H, P, d] -> [B, P*T', H*d].

    Keys are split into T' slices of S = P / T' visible tokens (time-major order). In each slice:
    softmax, top-k keep, renormalise, aggregate that slice's values. ``value_layout="reference"``
    reproduces the reference's pairing of key (t, s) with value row s*T' + t.
    """
    b, nh, p, d = v.shape
    if value_layout not in VALUE_LAYOUTS:
        raise ValueError(f"unknown value layout {value_layout!r}; choose one of {VALUE_LAYOUTS}")
    if p % num_temporal:
        raise ValueError(
            f"{p} visible tokens cannot be split into {num_temporal} temporal slices (use tube masking)"
        )
    s = p // num_temporal
    weights = topk_attention(attn.reshape(b, nh, p, num_temporal, s), num_k, kd_T)  # [B, H, P, T', S]
    if value_layout == "time_major":
        slices = v.reshape(b, nh, num_temporal, s, d)  # [B, H, T', S, d]
    else:
        slices = v.reshape(b, nh, s, num_temporal, d).transpose(2, 3)
    h = torch.einsum("bhqts,bhtsd->bqthd", weights, slices)  # [B, P, T', H, d]
    return h.reshape(b, p * num_temporal, nh * d)


def mm_local_loss(
    attn_s: Tensor,
    attn_t: Tensor,
    v_s: Tensor,
    v_t: Tensor,
    num_temporal: int,
    num_k: int,
    kd_T: float,
    proj_s: Callable[[Tensor], Tensor] | None = None,
    proj_t: Callable[[Tensor], Tensor] | None = None,
    value_layout: str = "time_major",
) -> Tensor:
    """MSE between the student's and the teacher's (projected) per-slice aggregated values."""
    h_s = project(aggregate_local(attn_s, v_s, num_temporal, num_k, kd_T, value_layout), proj_s)
    with torch.no_grad():
        h_t = aggregate_local(attn_t.detach(), v_t.detach(), num_temporal, num_k, kd_T, value_layout)
    return F.mse_loss(h_s, project(h_t, proj_t))
