"""Selections shared by the MMKD objectives."""

from __future__ import annotations

import torch
from torch import Tensor


def topk_keep_mask(x: Tensor, k: int) -> Tensor:
    """True for the entries of each last-axis row that are >= the row's k-th largest value.

    Ties with the k-th value are kept (so a row may keep more than k), as the reference does.
    """
    if not 1 <= k <= x.shape[-1]:
        raise ValueError(f"top-k needs 1 <= k <= {x.shape[-1]} (the row length), got k={k}")
    kth = x.topk(k, dim=-1).values[..., -1:]
    return x >= kth


def select_tokens(f_t: Tensor, num_f: int) -> Tensor:
    """MM-hint / MM-relation token selection: [B, P, Ct] -> bool [B, P].

    A token's score is the L1 norm of its teacher feature; each sample keeps its top ``num_f``.
    """
    with torch.no_grad():
        return topk_keep_mask(f_t.detach().abs().sum(dim=-1), num_f)


def topk_attention(logits: Tensor, num_k: int, kd_T: float) -> Tensor:
    """softmax(logits / kd_T) over the last axis, keep its top-k entries, renormalise to sum 1."""
    attn = (logits / kd_T).softmax(dim=-1)
    attn = attn * topk_keep_mask(attn.detach(), num_k)
    return attn / attn.sum(dim=-1, keepdim=True)


def merge_heads(h: Tensor) -> Tensor:
    """[B, H, P, d] -> [B, P, H*d] (heads concatenated per token, head-major)."""
    b, nh, p, d = h.shape
    return h.transpose(1, 2).reshape(b, p, nh * d)


def project(x: Tensor, proj) -> Tensor:
    """Applies an alignment module, or nothing when it is None."""
    return x if proj is None else proj(x)
