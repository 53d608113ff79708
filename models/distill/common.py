"""Selections, flags, heads and the attention terms' shared loss, for the MMKD objectives."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Context, Flag, Objective, VisibleTokens, Widths, at_least, positive

# hyper-parameters that several terms read (reference flag first, then our self-explaining alias)
NUM_F = Flag(
    "num_f",
    ("--num_f", "--hint_topk"),
    10,
    "tokens kept per sample in MM-hint / MM-relation",
    check=at_least(1),
)
NUM_K = Flag(
    "num_k",
    ("--num_k", "--attn_topk"),
    10,
    "attention entries kept per row in MM-global / per slice in MM-local",
    check=at_least(1),
)
KD_T = Flag(
    "kd_T", ("--kd_T", "--attn_temperature"), 1.0, "softmax temperature of the attention maps", check=positive
)
BETA = Flag("beta", ("--beta", "-b", "--hidden_weight"), 1.0, "weight of the hidden-level terms")


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


def num_f_fits(cfg, tokens: VisibleTokens) -> str | None:
    """MM-hint / MM-relation keep ``num_f`` of the P visible tokens of each clip."""
    if cfg.num_f > tokens.total:
        return f"--num_f {cfg.num_f} exceeds the {tokens.total} visible tokens; lower --num_f or --mask_ratio"
    return None


class LinearHead(nn.Module):
    """Hidden-level alignment (one per side and per term); named ``fc`` like the reference."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return in_own_dtype(self.fc, self.fc.weight, x)


def in_own_dtype(fn, weight: Tensor, x: Tensor) -> Tensor:
    """Runs a head in its weights' dtype and returns the input's: DeepSpeed bf16/fp16 casts the heads
    to half while the objectives compute in float32 (a no-op when both are float32 / float64)."""
    return fn(x.to(weight.dtype)).to(x.dtype)


Aggregate = Callable[[Tensor, Tensor], Tensor]  # (logits [B, H, P, P], values [B, H, P, d]) -> [B, *, C]


def aggregated_mse(
    aggregate: Aggregate,
    attn_s: Tensor,
    attn_t: Tensor,
    v_s: Tensor,
    v_t: Tensor,
    proj_s: Callable[[Tensor], Tensor] | None = None,
    proj_t: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """MSE between the student's and the teacher's (each projected) attention-aggregated values.

    The teacher's aggregation runs without gradients; its projection ``proj_t`` is trained.
    """
    h_s = project(aggregate(attn_s, v_s), proj_s)
    with torch.no_grad():
        h_t = aggregate(attn_t.detach(), v_t.detach())
    return F.mse_loss(h_s, project(h_t, proj_t))


class AttentionTerm(Objective):
    """MM-global / MM-local: the last block's attention aggregates the values, student vs teacher.

    Heads ``<name>_s`` Linear(Cs, Ct) and ``<name>_t`` Linear(Ct, Ct) (student first); weight
    ``beta``, times ``<pair_weight>`` when the ``partner`` term is on too. A subclass sets those and
    `aggregate`.
    """

    needs = frozenset({"attention"})
    partner: str = ""
    pair_weight: str = ""

    def aggregate(self, attn: Tensor, v: Tensor, cfg, ctx: Context) -> Tensor:
        """Logits [B, H, P, P], values [B, H, P, d] -> aggregated values [B, *, H*d]."""
        raise NotImplementedError

    def weight(self, cfg, terms) -> float:
        return cfg.beta * (getattr(cfg, self.pair_weight) if self.partner in terms else 1.0)

    def build_heads(self, cfg, widths: Widths) -> dict[str, nn.Module | None]:
        s = LinearHead(widths.student, widths.teacher) if widths.aligned else None
        t = LinearHead(widths.teacher, widths.teacher) if widths.aligned else None
        return {f"{self.name}_s": s, f"{self.name}_t": t}

    def loss(self, out_s, out_t, cfg, heads, ctx: Context) -> Tensor:
        return aggregated_mse(
            lambda attn, v: self.aggregate(attn, v, cfg, ctx),
            *(out_s.attn_logits, out_t.attn_logits, out_s.values, out_t.values),
            heads[f"{self.name}_s"],
            heads[f"{self.name}_t"],
        )
