"""MM-global: top-k attention aggregation over all visible tokens of the last block (spec §4.3)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import BETA, KD_T, NUM_K, merge_heads, project, side_heads, topk_attention
from .registry import Context, Flag, Objective, VisibleTokens, Widths, register


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


@register
class Global(Objective):
    """beta * beta_kd1 * MM-global (beta alone without MM-local, as the reference's hinTop)."""

    name = "global"
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
    needs = frozenset({"attention"})
    modes = ("hybrid", "hinTop", "onlykd")

    def weight(self, cfg, terms) -> float:
        return cfg.beta * (cfg.beta_kd1 if "local" in terms else 1.0)

    def build_heads(self, cfg, widths: Widths) -> dict[str, nn.Module | None]:
        return side_heads("global", widths)

    def check_fit(self, cfg, tokens: VisibleTokens) -> str | None:
        if cfg.num_k > tokens.total:
            return f"--num_k {cfg.num_k} exceeds the {tokens.total} visible tokens; lower --num_k or --mask_ratio"
        return None

    def loss(self, out_s, out_t, cfg, heads, ctx: Context) -> Tensor:
        attn = (out_s.attn_logits, out_t.attn_logits, out_s.values, out_t.values)
        return mm_global_loss(*attn, cfg.num_k, cfg.kd_T, heads["global_s"], heads["global_t"])
