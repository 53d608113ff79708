"""MM-hint: output-level feature regression on the teacher's most active tokens (spec §4.1)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .common import NUM_F, in_own_dtype, num_f_fits, project, select_tokens
from .registry import Context, Flag, Objective, VisibleTokens, Widths, register


def mm_hint_loss(f_s: Tensor, f_t: Tensor, align: Callable[[Tensor], Tensor] | None, num_f: int) -> Tensor:
    """f_s [B, P, Cs], f_t [B, P, Ct] -> scalar.

    Rows outside the teacher's top-``num_f`` tokens are zeroed on both sides *before* the student
    alignment MLP (so they regress align(0) onto 0, as the reference does); MSE over all
    B*P*Ct entries, rescaled by P / num_f.
    """
    keep = select_tokens(f_t, num_f).unsqueeze(-1).to(f_s.dtype)  # [B, P, 1]
    pred = project(f_s * keep, align)
    target = f_t.detach() * keep
    return F.mse_loss(pred, target) * (f_s.shape[1] / num_f)


class HintMLP(nn.Module):
    """MM-hint student alignment: Linear(Cs, 2Cs) -> ReLU -> Linear(2Cs, Ct)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, 2 * in_dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(2 * in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return in_own_dtype(lambda y: self.fc2(self.act(self.fc1(y))), self.fc1.weight, x)


@register
class Hint(Objective):
    """gamma * MM-hint on the last block's features; head ``align_feature`` (the reference's name)."""

    name = "hint"
    flags = (NUM_F, Flag("gamma", ("--gamma", "-r", "--hint_weight"), 0.1, "weight of MM-hint"))
    modes = ("hybrid", "hinTop", "VTop", "onlymse")

    def weight(self, cfg, terms) -> float:
        return cfg.gamma

    def build_heads(self, cfg, widths: Widths) -> dict[str, nn.Module | None]:
        return {"align_feature": HintMLP(widths.student, widths.teacher) if widths.aligned else None}

    def check_fit(self, cfg, tokens: VisibleTokens) -> str | None:
        return num_f_fits(cfg, tokens)

    def loss(self, out_s, out_t, cfg, heads, ctx: Context) -> Tensor:
        return mm_hint_loss(out_s.features, out_t.features, heads["align_feature"], cfg.num_f)
