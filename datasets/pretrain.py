"""Pre-training / distillation dataset: masked clips, one or ``num_sample`` per decoded video; and
`TrainViews`, what it shares with the fine-tuning training set."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .collate import stack_in_memory_order
from .loading import TrainClips, read_clip
from .masking import RandomMaskingGenerator, TubeMaskingGenerator
from .transforms import PretrainTransform


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


class PretrainDataset(TrainViews):
    """Items ``{"video": [3, T, S, S], "mask": bool [N], "n_bad": int}``.

    ``video`` is float32 (normalised) or uint8, as the transform returns. N = T/tubelet · (S/patch)²;
    ``n_bad`` counts unreadable files skipped to build the item.

    ``num_sample`` R > 1 (repeated sampling): the video's window is decoded once and the item holds
    R clips of those frames with independent crops and masks, ``video`` ``[R, 3, T, S, S]`` and
    ``mask`` ``[R, N]`` (`collate_batch` flattens them to B·R clips). The first of the R is the
    R = 1 item of the same (seed, epoch, index): the draws continue one generator in order.
    """

    def __init__(
        self,
        clips: TrainClips,
        transform: PretrainTransform,
        mask_generator: TubeMaskingGenerator | RandomMaskingGenerator,
        num_sample: int = 1,
    ) -> None:
        super().__init__(clips, num_sample)
        self.transform = transform
        self.mask_generator = mask_generator

    def __getitem__(self, index: int) -> dict[str, object]:
        frames, _, n_bad, rng = self.clips.load(index, read_clip)
        views, masks = [], []
        for _ in range(self.num_sample):  # crop then mask, per clip: clip 0 draws as the R = 1 item
            views.append(self.transform(frames, rng))
            masks.append(torch.from_numpy(self.mask_generator(rng)))
        if self.num_sample == 1:
            return {"video": views[0], "mask": masks[0], "n_bad": n_bad}
        return {
            "video": stack_in_memory_order(views, shared=False),
            "mask": torch.stack(masks),
            "n_bad": n_bad,
        }
