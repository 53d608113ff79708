"""One DataLoader ``collate_fn`` for pre-training, train, val and test items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from models.tokens import count_visible


def collate_batch(items: Sequence[dict[str, object]]) -> dict[str, object]:
    """Stack a list of item dicts into a batch dict.

    Tensors are stacked, ints / bools / floats become tensors, strings stay lists. A boolean
    ``mask`` [B, N] adds ``num_visible``, the int P of visible tokens per clip. Videos with
    ``num_sample`` views, ``[B, V, 3, T, H, W]``, are flattened to ``[B·V, 3, T, H, W]`` and the
    labels (``[B, V]`` or ``[B]``) flattened / repeated to ``[B·V]`` to match, masks ``[B, V, N]``
    flattened to ``[B·V, N]``. Per-video fields (``n_bad``) stay ``[B]``.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch = {key: _stack([item[key] for item in items], key) for key in items[0]}
    mask = batch.get("mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 3:  # pre-training with num_sample views
        mask = batch["mask"] = mask.flatten(0, 1)
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
        # counted here, on the CPU: the models select visible tokens without reading the mask
        # on the device (a host sync per step, and a graph break under torch.compile)
        batch["num_visible"] = count_visible(mask)
    video = batch.get("video")
    if isinstance(video, torch.Tensor) and video.dim() == 6:
        views = video.shape[1]
        batch["video"] = video.flatten(0, 1)
        label = batch.get("label")
        if isinstance(label, torch.Tensor):
            batch["label"] = label.flatten() if label.dim() == 2 else label.repeat_interleave(views)
    return batch


def _stack(values: list[object], key: str) -> object:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return stack_in_memory_order(values)
    if isinstance(first, np.ndarray):
        return default_collate(values)
    if isinstance(first, bool):  # before int: bool is an int subclass
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, int):
        return torch.tensor(values, dtype=torch.long)
    if isinstance(first, float):
        return torch.tensor(values, dtype=torch.float32)
    if isinstance(first, str):
        return list(values)
    raise TypeError(f"cannot collate field {key!r} of type {type(first).__name__}")


def stack_in_memory_order(values: list[torch.Tensor], shared: bool = True) -> torch.Tensor:
    """Stack tensors that share one memory layout (e.g. uint8 ``[3, T, H, W]`` views of
    ``[T, H, W, 3]`` frames) without reordering their bytes; the result keeps that layout.

    ``shared``: stack with default_collate, which inside a worker stacks straight into shared
    memory, saving a full copy of the batch when it is sent to the main process; ``False`` (the
    views of one item, stacked again into the batch) stacks into ordinary memory.
    """
    stack = default_collate if shared else torch.stack
    first = values[0]
    # axes from the largest stride to the smallest: the order the bytes lie in memory
    order = sorted(range(first.dim()), key=lambda d: -first.stride(d))
    if order == list(range(first.dim())) or any(v.stride() != first.stride() for v in values):
        return stack(values)
    stacked = stack([v.permute(order) for v in values])
    return stacked.permute(0, *(order.index(d) + 1 for d in range(first.dim())))
