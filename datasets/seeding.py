"""Per-item random generators fixed by (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import torch


class ItemSeeds:
    """Hands out ``numpy.random.Generator`` objects for dataset items.

    The epoch lives in a shared-memory tensor, so ``set_epoch`` in the main process also reaches
    persistent DataLoader workers (which hold copies of the dataset).
    """

    def __init__(self, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))
