"""MM-local: per-temporal-slice top-k attention aggregation (spec §4.4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import BETA, KD_T, NUM_K, project, side_heads, topk_attention
from .registry import Context, Flag, Objective, VisibleTokens, Widths, register

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


@register
class Local(Objective):
    """beta * beta_kd2 * MM-local (beta alone without MM-local, as the reference's VTop); tube masks."""

    name = "local"
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
    needs = frozenset({"attention"})
    modes = ("hybrid", "VTop", "onlykd")

    def weight(self, cfg, terms) -> float:
        return cfg.beta * (cfg.beta_kd2 if "global" in terms else 1.0)

    def build_heads(self, cfg, widths: Widths) -> dict[str, nn.Module | None]:
        return side_heads("local", widths)

    def check_fit(self, cfg, tokens: VisibleTokens) -> str | None:
        if tokens.mask_type != "tube":
            return f"--distill {cfg.mode} uses MM-local, which needs --mask_type tube"
        if cfg.num_k > tokens.per_slice:
            return (
                f"--num_k {cfg.num_k} exceeds the {tokens.per_slice} visible tokens per temporal slice; "
                "lower --num_k or --mask_ratio"
            )
        return None

    def loss(self, out_s, out_t, cfg, heads, ctx: Context) -> Tensor:
        attn = (out_s.attn_logits, out_t.attn_logits, out_s.values, out_t.values)
        return mm_local_loss(
            *attn, ctx.num_temporal, cfg.num_k, cfg.kd_T, heads["local_s"], heads["local_t"], cfg.value_layout
        )
