"""Samplers: the resumable training order, and evaluation items sharded over ranks by whole videos."""

from __future__ import annotations

from collections.abc import Iterator

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
    """The training order: a permutation fixed by (seed, epoch), sharded over ranks, and resumable.

    A ``DistributedSampler`` (shuffled, ``drop_last``) also for one process, so the order of every
    epoch is a function of ``--seed`` and the epoch alone, never of the global RNG's state: a run
    resumed in the middle of an epoch sees the same order. ``skip(n)`` drops this rank's first
    ``n`` samples from the next iteration only (the batches a mid-epoch checkpoint already covered).
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self._skip = 0

    def skip(self, n: int) -> None:
        self._skip = n

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        start, self._skip = self._skip, 0
        return iter(order[start:])

    def __len__(self) -> int:
        return super().__len__() - self._skip
