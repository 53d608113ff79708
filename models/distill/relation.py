"""MM-relation: token-to-token similarity distillation over the selected tokens (spec §4.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import select_tokens

_DIAGONAL_FILL = -1000.0  # a token is never its own neighbour


def _similarity_logits(x: Tensor, temperature: float) -> Tensor:
    x = F.normalize(x, dim=-1)
    sim = x @ x.t()
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return sim.masked_fill(eye, _DIAGONAL_FILL) / temperature


def mm_relation_loss(
    f_s: Tensor, f_t: Tensor, num_f: int, temperature_s: float, temperature_t: float
) -> Tensor:
    """f_s [B, P, Cs] (raw, not aligned), f_t [B, P, Ct] -> scalar.

    The selected tokens of the whole batch (n rows) form one set; KL(teacher || student) between
    the row-wise softmaxes of their cosine-similarity matrices, divided by B * num_f.
    """
    keep = select_tokens(f_t, num_f)  # [B, P]
    log_p_s = F.log_softmax(_similarity_logits(f_s[keep], temperature_s), dim=-1)
    with torch.no_grad():
        p_t = F.softmax(_similarity_logits(f_t.detach()[keep], temperature_t), dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="sum") / (f_s.shape[0] * num_f)
