"""Read the frames a sampler picks from annotated samples (`TrainClips`), and `TrainViews`, the base of
both training sets (pre-training and fine-tuning)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import VideoRecord
from .bad_data import BadDataTracker, load_with_substitutes
from .decoding import Decoder, open_video
from .sampling import ClipSampler
from .seeding import ItemSeeds


def read_clip(
    record: VideoRecord,
    sampler: ClipSampler,
    decoder: Decoder = "auto",
    rng: np.random.Generator | None = None,
    chunk: int = 0,
) -> torch.Tensor:
    """Decode the clip ``sampler`` picks: uint8 ``[T, H, W, 3]``.

    Raises:
        VideoDecodeError: the file or folder is missing, broken or has no frames.
    """
    with open_video(record.path, decoder, record.num_frames) as video:
        return video.get_frames(sampler(len(video), rng, chunk))


class TrainClips:
    """Training clips: one seeded generator per item, unreadable samples replaced by others.

    Shared by the pre-training and fine-tuning datasets. ``set_epoch`` changes every draw.
    """

    def __init__(
        self,
        records: list[VideoRecord],
        sampler: ClipSampler,
        *,
        decoder: Decoder = "auto",
        max_bad_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.records = records
        self.sampler = sampler
        self.decoder = decoder
        self.tracker = BadDataTracker(max_bad_fraction)
        self.seeds = ItemSeeds(seed)

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.seeds.set_epoch(epoch)

    def load(
        self, index: int, read: Callable[..., torch.Tensor] = read_clip
    ) -> tuple[torch.Tensor, VideoRecord, int, np.random.Generator]:
        """(uint8 clip ``[T, H, W, 3]``, record actually read, files skipped, the item's generator).

        The generator has drawn the clip (and any substitutes); callers continue with it for their
        augmentations so the whole item is fixed by (seed, epoch, index). ``read`` is the clip
        reader (the datasets pass their module's ``read_clip``, the seam fault-injection tests patch).
        """
        rng = self.seeds.rng(index)
        frames, used, n_bad = load_with_substitutes(
            lambda i: read(self.records[i], self.sampler, self.decoder, rng),
            index,
            len(self.records),
            rng,
            self.tracker,
            lambda i: self.records[i].path,
        )
        return frames, self.records[used], n_bad, rng


class TrainViews(Dataset):
    """A training set over `TrainClips` whose items hold ``num_sample`` views of one decoded window:
    the base of `PretrainDataset` and of fine-tuning's `datasets.classification.VideoClsTrainDataset`.

    Call :meth:`set_epoch` every epoch so clips, crops (and masks) change between epochs.
    """

    def __init__(self, clips: TrainClips, num_sample: int = 1) -> None:
        if num_sample < 1:
            raise ValueError(f"num_sample must be at least 1, got {num_sample}")
        self.clips = clips
        self.num_sample = num_sample

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)
