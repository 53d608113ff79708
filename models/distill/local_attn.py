"""MM-local: per-temporal-slice top-k attention aggregation (spec §4.4)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from .common import BETA, KD_T, NUM_K, AttentionTerm, aggregated_mse, topk_attention
from .registry import Flag, VisibleTokens, register

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
    aggregate = partial(
        aggregate_local, num_temporal=num_temporal, num_k=num_k, kd_T=kd_T, value_layout=value_layout
    )
    return aggregated_mse(aggregate, attn_s, attn_t, v_s, v_t, proj_s, proj_t)


@register
class Local(AttentionTerm):
    """beta * beta_kd2 * MM-local (beta alone without MM-local, as the reference's VTop); tube masks."""

    name = "local"
    partner, pair_weight = "global", "beta_kd2"
    flags = (
        NUM_K,
        KD_T,
        BETA,
        Flag(
            "beta_kd2",
            ("--beta_kd2", "--local_weight"),
            3.0,
            "weight of MM-local inside the hidden terms (with MM-global on)",
        ),
        Flag(
            "value_layout",
            ("--local_value_layout",),
            "time_major",
            "value pairing: time_major (correct) or reference (the reference's, MMKD_SPEC 4.4)",
            choices=VALUE_LAYOUTS,
            what="MM-local value layout",
        ),
    )
    modes = ("hybrid", "VTop", "onlykd")

    def aggregate(self, attn, v, cfg, ctx) -> Tensor:
        return aggregate_local(attn, v, ctx.num_temporal, cfg.num_k, cfg.kd_T, cfg.value_layout)

    def check_fit(self, cfg, tokens: VisibleTokens) -> str | None:
        if tokens.mask_type != "tube":
            return f"--distill {cfg.mode} uses MM-local, which needs --mask_type tube"
        if cfg.num_k > tokens.per_slice:
            return (
                f"--num_k {cfg.num_k} exceeds the {tokens.per_slice} visible tokens per temporal slice; "
                "lower --num_k or --mask_ratio"
            )
        return None
