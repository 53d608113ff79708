"""Samplers: the resumable training order, and evaluation items sharded over ranks by whole videos."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler, Sampler


class VideoShardSampler(Sampler[int]):
    """Rank ``rank`` of ``world_size`` gets a contiguous block of whole videos, in order.

    Items are laid out video-major (item = video * views_per_video + view, as
    :class:`datasets.classification.VideoClsEvalDataset` numbers its test views), so all views of
    a video land on one rank, consecutively: the data set's decode cache then reads each clip
    once, where ``DistributedSampler`` (items r, r + W, ...) spreads a clip's crops over ranks and
    decodes it once per crop. Nothing is padded or repeated: each view is scored exactly once
    (ranks may differ by one video; the evaluation loops have no per-batch collective).
    """

    def __init__(self, num_items: int, views_per_video: int, world_size: int, rank: int) -> None:
        if views_per_video < 1 or num_items % views_per_video:
            raise ValueError(f"{num_items} items are not whole videos of {views_per_video} views")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        videos = num_items // views_per_video
        first, last = rank * videos // world_size, (rank + 1) * videos // world_size
        self.start, self.stop = first * views_per_video, last * views_per_video

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


class TrainSampler(DistributedSampler):
    """The training order: a permutation fixed by (seed, epoch), dealt to ranks, and resumable.

    A ``DistributedSampler`` (shuffled, ``drop_last``) also for one process, so the order of every
    epoch is a function of ``--seed`` and the epoch alone, never of the global RNG's state. Rank
    ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...`` of the permutation, so the ``G``
    clips of global step ``s`` are positions ``[s*G, (s+1)*G)`` however ``G`` splits into ranks x
    ``--batch_size`` x ``--update_freq``: a run resumed on another number of processes with the
    same global batch takes the same clips in the same steps.

    ``skip(n)`` drops the first ``n`` clips of the *global* order (what a mid-epoch checkpoint
    already covered, on any number of ranks) from the next iteration only; the rest is dealt to
    the ranks in turn again, so no clip is repeated or skipped even when ``n`` is not a multiple
    of this run's global batch. The rest's tail that does not fill every rank is dropped
    (``drop_last``).
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self._skip = 0

    def skip(self, n: int) -> None:
        """Leave out the first ``n`` clips of the global order of the next epoch iterated."""
        if not 0 <= n <= self.total_size:
            raise ValueError(f"cannot skip {n} clips of an epoch of {self.total_size}")
        self._skip = n

    def global_order(self) -> list[int]:
        """This epoch's permutation of the data set, cut to ``total_size`` (the same on every rank)."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.dataset), generator=g).tolist()[: self.total_size]

    def __iter__(self) -> Iterator[int]:
        rest, self._skip = self.global_order()[self._skip :], 0
        per_rank = len(rest) // self.num_replicas
        return iter(rest[self.rank : per_rank * self.num_replicas : self.num_replicas])

    def __len__(self) -> int:
        return (self.total_size - self._skip) // self.num_replicas
