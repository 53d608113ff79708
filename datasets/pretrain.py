"""Pre-training / distillation dataset: one masked clip per video."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .loading import TrainClips, read_clip
from .masking import RandomMaskingGenerator, TubeMaskingGenerator
from .transforms import PretrainTransform


class PretrainDataset(Dataset):
    """Items ``{"video": [3, T, S, S], "mask": bool [N], "n_bad": int}``.

    ``video`` is float32 (normalised) or uint8, as the transform returns. N = T/tubelet · (S/patch)²; ``n_bad`` counts unreadable files skipped to build the item.
    Call :meth:`set_epoch` every epoch so clips, crops and masks change between epochs.
    """

    def __init__(
        self,
        clips: TrainClips,
        transform: PretrainTransform,
        mask_generator: TubeMaskingGenerator | RandomMaskingGenerator,
    ) -> None:
        self.clips = clips
        self.transform = transform
        self.mask_generator = mask_generator

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, object]:
        frames, _, n_bad, rng = self.clips.load(index, read_clip)
        video = self.transform(frames, rng)
        mask = torch.from_numpy(self.mask_generator(rng))
        return {"video": video, "mask": mask, "n_bad": n_bad}
