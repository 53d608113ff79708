"""MM-hint: output-level feature regression on the teacher's most active tokens (spec §4.1)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from .common import project, select_tokens


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
