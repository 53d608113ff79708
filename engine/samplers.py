"""Sharding evaluation items over ranks by whole videos."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


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
