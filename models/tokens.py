"""Visible / hidden token indices of a mask, and gathering tokens by them (no host sync when the
count of visible tokens is given)."""

from __future__ import annotations

import torch
from torch import Tensor


def count_visible(mask: Tensor) -> int:
    """Visible tokens per clip P of a mask [B, N] (True = hidden); every clip must have the same P.

    Reads the mask on the host: call it where the mask still lives on the CPU (`collate_batch`
    does, and ships the count as ``batch["num_visible"]``).
    """
    counts = (~mask).sum(dim=1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise ValueError(
            f"every clip of a batch needs the same number of visible tokens, got {counts.tolist()}"
        )
    return int(counts[0]) if counts.numel() else 0


def split_tokens(mask: Tensor, num_visible: int | None = None) -> tuple[Tensor, Tensor]:
    """mask [B, N] (True = hidden) -> (visible [B, P], hidden [B, N - P]) token indices, ascending.

    A stable sort of the mask puts the visible indices first, each group in increasing order:
    exactly the tokens and the order of ``x[~mask]`` / ``x[mask]``. With ``num_visible`` given the
    output shapes follow from the arguments alone, so ``torch.compile`` needs no graph break.
    """
    if num_visible is None:
        num_visible = count_visible(mask)
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return order[:, :num_visible], order[:, num_visible:]


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x [B, N, C], index [B, P] -> x[b, index[b]] as [B, P, C]."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))
