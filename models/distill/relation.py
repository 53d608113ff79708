"""MM-relation: token-to-token similarity distillation over the selected tokens (spec §4.2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .common import NUM_F, num_f_fits, select_tokens
from .registry import Context, Flag, Objective, VisibleTokens, positive, register

_DIAGONAL_FILL = -1000.0  # a token is never its own neighbour


def _similarity_logits(x: Tensor, temperature: float) -> Tensor:
    x = F.normalize(x, dim=-1)
    sim = x @ x.t()
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return sim.masked_fill(eye, _DIAGONAL_FILL) / temperature


def start_token_selection(f_t: Tensor, num_f: int) -> Callable[[], Tensor]:
    """Starts selecting the relation's tokens from the teacher's features [B, P, Ct]; returns a
    function that gives their flat indices [n] into the B * P tokens, in ``f_t[keep]``'s order.

    n is data-dependent (ties at the num_f-th score keep more tokens, as the reference), so the
    host has to know it; ``f_s[keep]`` would wait for the GPU to finish the student's forward
    (a host sync per step). Here the count is copied to the host asynchronously as soon as the
    teacher's features exist: reading it waits only for the teacher's forward, while the GPU
    runs the student's.
    """
    with torch.no_grad():
        keep = select_tokens(f_t, num_f).flatten()
        count = keep.sum()
        # a stable sort puts the selected tokens first, each in its (b, p) order: f_t[keep]'s rows
        order = keep.to(torch.uint8).argsort(descending=True, stable=True)
    if not count.is_cuda:
        return lambda: order[: int(count)]
    host = torch.empty((), dtype=count.dtype, pin_memory=True)
    host.copy_(count, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def indices() -> Tensor:
        copied.synchronize()
        return order[: int(host)]

    return indices


def mm_relation_loss(
    f_s: Tensor,
    f_t: Tensor,
    num_f: int,
    temperature_s: float,
    temperature_t: float,
    selected: Tensor | None = None,
) -> Tensor:
    """f_s [B, P, Cs] (raw, not aligned), f_t [B, P, Ct] -> scalar.

    The selected tokens of the whole batch (n rows) form one set; KL(teacher || student) between
    the row-wise softmaxes of their cosine-similarity matrices, divided by B * num_f.
    ``selected``: their flat indices (`start_token_selection`), when already known.
    """
    if selected is None:
        selected = start_token_selection(f_t, num_f)()
    rows_s = f_s.flatten(0, 1).index_select(0, selected)  # f_s[keep]
    log_p_s = F.log_softmax(_similarity_logits(rows_s, temperature_s), dim=-1)
    with torch.no_grad():
        rows_t = f_t.detach().flatten(0, 1).index_select(0, selected)
        p_t = F.softmax(_similarity_logits(rows_t, temperature_t), dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="sum") / (f_s.shape[0] * num_f)


@register
class Relation(Objective):
    """alpha * MM-relation on the raw features (no head); alpha = 0 switches it off."""

    name = "relation"
    flags = (
        NUM_F,
        Flag(
            "alpha",
            ("--alpha", "-a", "--relation_weight"),
            0.1,
            "weight of MM-relation (0 switches it off)",
        ),
        Flag("temperature_s", ("--temperature_s",), 0.1, "student similarity temperature", check=positive),
        Flag("temperature_t", ("--temperature_t",), 0.05, "teacher similarity temperature", check=positive),
    )
    modes = ("hybrid", "hinTop", "VTop", "onlymse")

    def enabled(self, cfg) -> bool:
        return super().enabled(cfg) and cfg.alpha != 0

    def weight(self, cfg, terms) -> float:
        return cfg.alpha

    def check_fit(self, cfg, tokens: VisibleTokens) -> str | None:
        return num_f_fits(cfg, tokens)

    def prepare(self, out_t, cfg) -> Callable[[], Tensor]:
        # before the student's forward: on a GPU the selection's count then needs no host sync
        return start_token_selection(out_t.features, cfg.num_f)

    def loss(self, out_s, out_t, cfg, heads, ctx: Context) -> Tensor:
        selected = ctx.prepared() if ctx.prepared is not None else None
        return mm_relation_loss(
            out_s.features, out_t.features, cfg.num_f, cfg.temperature_s, cfg.temperature_t, selected=selected
        )
