"""Fine-tuning datasets: augmented train views, and val / test views that are never substituted."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .annotations import VideoRecord
from .bad_data import BadDataTracker
from .decoding import Decoder
from .errors import VideoDecodeError
from .loading import TrainClips, TrainViews, read_clip
from .sampling import ClipSampler
from .transforms import EvalTransform, FinetuneTrainTransform


class VideoClsTrainDataset(TrainViews):
    """Train items ``{"video", "label", "n_bad"}``.

    ``num_sample`` > 1 (repeated augmentation): ``video`` is ``[V, 3, T, S, S]`` — V independent
    augmentations of the same decoded clip — and ``label`` a LongTensor ``[V]``; otherwise
    ``[3, T, S, S]`` and an int. Unreadable videos are replaced (see :mod:`datasets.bad_data`).
    """

    def __init__(self, clips: TrainClips, transform: FinetuneTrainTransform, num_sample: int = 1) -> None:
        super().__init__(clips, num_sample)
        self.transform = transform

    def __getitem__(self, index: int) -> dict[str, object]:
        frames, record, n_bad, rng = self.clips.load(index, read_clip)
        if self.num_sample == 1:
            return {"video": self.transform(frames, rng), "label": record.label, "n_bad": n_bad}
        views = torch.stack([self.transform(frames, rng) for _ in range(self.num_sample)])
        labels = torch.full((self.num_sample,), record.label, dtype=torch.long)
        return {"video": views, "label": labels, "n_bad": n_bad}


class VideoClsEvalDataset(Dataset):
    """Val / test items; an unreadable video gives ``valid=False`` and a zero clip, never a substitute.

    Val: one centre clip, ``{"video": [3, T, S, S], "label", "valid", "n_bad"}``.
    Test: ``num_chunks`` clips × ``num_crops`` crops per video, item
    ``(video · num_chunks + chunk) · num_crops + crop``, adding ``"video_id"``, ``"chunk"``, ``"crop"``.
    ``n_bad`` is 1 for an invalid item, else 0.
    """

    def __init__(
        self,
        records: list[VideoRecord],
        *,
        sampler: ClipSampler,
        transform: EvalTransform,
        test: bool = False,
        num_crops: int = 1,
        decoder: Decoder = "auto",
    ) -> None:
        self.records = records
        self.sampler = sampler
        self.transform = transform
        self.test = test
        self.num_chunks = sampler.num_chunks if test else 1
        self.num_crops = num_crops if test else 1
        self.decoder = decoder
        self.tracker = BadDataTracker(max_bad_fraction=1.0)
        # The crops of one clip are consecutive items: keep the last decoded clip (or its error).
        self._last: tuple[tuple[int, int], torch.Tensor | VideoDecodeError] | None = None

    def __len__(self) -> int:
        return len(self.records) * self.num_chunks * self.num_crops

    @property
    def views_per_video(self) -> int:
        """Consecutive items per video (clips x crops; 1 for validation)."""
        return self.num_chunks * self.num_crops

    def __getitem__(self, index: int) -> dict[str, object]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        clip_index, crop = divmod(index, self.num_crops)
        video_index, chunk = divmod(clip_index, self.num_chunks)
        record = self.records[video_index]
        clip = self._clip(video_index, chunk)
        if isinstance(clip, VideoDecodeError):
            size = self.transform.input_size
            dtype = torch.float32 if self.transform.normalize else torch.uint8
            video, valid = torch.zeros(3, self.sampler.num_frames, size, size, dtype=dtype), False
        else:
            video, valid = self.transform(clip, crop if self.test else None), True
        item: dict[str, object] = {
            "video": video,
            "label": record.label,
            "valid": valid,
            "n_bad": int(not valid),
        }
        if self.test:
            item.update(video_id=record.video_id, chunk=chunk, crop=crop)
        return item

    def _clip(self, video_index: int, chunk: int) -> torch.Tensor | VideoDecodeError:
        key = (video_index, chunk)
        if self._last is None or self._last[0] != key:
            record = self.records[video_index]
            try:
                clip: torch.Tensor | VideoDecodeError = read_clip(
                    record, self.sampler, self.decoder, chunk=chunk
                )
                self.tracker.success()
            except VideoDecodeError as err:
                self.tracker.failure(record.path, err, enforce=False)
                clip = err
            self._last = (key, clip)
        return self._last[1]
