"""Pre-training / distillation dataset: masked clips, one or ``num_sample`` per decoded video (its base,
`TrainViews`, shared with the fine-tuning training set, is in `datasets.loading`)."""

from __future__ import annotations

import torch

from .collate import stack_in_memory_order
from .loading import TrainClips, TrainViews, read_clip
from .masking import RandomMaskingGenerator, TubeMaskingGenerator
from .transforms import PretrainTransform


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
