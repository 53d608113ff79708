"""MM-global: top-k attention aggregation over all visible tokens of the last block (spec §4.3)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor

from .common import BETA, KD_T, NUM_K, AttentionTerm, aggregated_mse, merge_heads, topk_attention
from .registry import Flag, VisibleTokens, register


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
    aggregate = partial(aggregate_global, num_k=num_k, kd_T=kd_T)
    return aggregated_mse(aggregate, attn_s, attn_t, v_s, v_t, proj_s, proj_t)


@register
class Global(AttentionTerm):
    """beta * beta_kd1 * MM-global (beta alone without MM-local, as the reference's hinTop)."""

    name = "global"
    partner, pair_weight = "local", "beta_kd1"
    flags = (
        NUM_K,
        KD_T,
        BETA,
        Flag(
            "beta_kd1",
            ("--beta_kd1", "--global_weight"),
            0.1,
            "weight of MM-global inside the hidden terms (with MM-local on)",
        ),
    )
    modes = ("hybrid", "hinTop", "onlykd")

    def aggregate(self, attn, v, cfg, ctx) -> Tensor:
        return aggregate_global(attn, v, cfg.num_k, cfg.kd_T)

    def check_fit(self, cfg, tokens: VisibleTokens) -> str | None:
        if cfg.num_k > tokens.total:
            return f"--num_k {cfg.num_k} exceeds the {tokens.total} visible tokens; lower --num_k or --mask_ratio"
        return None
