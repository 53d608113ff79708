"""Which frames a clip uses (spec §6), as pure functions of the video length.

All functions return int64 frame indices ``[num_frames]`` into a video of ``n`` frames.
Random choices come from the caller's ``numpy.random.Generator`` (one per item), so a seed and an
item index fix the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["pretrain", "train", "val", "test"]


def pretrain_indices(n: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """Pre-training / distillation clip (VideoMAE ``_sample_train_indices`` + ``_video_TSN_decord_batch_loader``).

    Span L = num_frames·stride. Start uniform in [0, n − L] when n ≥ L, else 0. Each step
    advances by ``stride`` only while the next index stays below n − 1; otherwise the index stops
    and the last reachable frame repeats. (So with stride 1 and the largest start the final
    frame repeats once, exactly as the reference.)
    """
    span = num_frames * stride
    start = int(rng.integers(n - span + 1)) if n >= span else 0
    indices = np.empty(num_frames, dtype=np.int64)
    index = start
    for k in range(num_frames):
        indices[k] = index
        if index + stride < n - 1:
            index += stride
    return indices


def _linspace_clip(n: int, num_frames: int, stride: int, end: int | None) -> np.ndarray:
    """VideoMAE ``loadvideo_decord`` body for one segment, given the chosen end (None: short video)."""
    span = num_frames * stride
    if end is None:  # n <= span: spread n // stride points over the whole video, pad with the last frame
        index = np.linspace(0, n, num=n // stride)
        index = np.concatenate((index, np.full(num_frames - n // stride, float(n))))
        return np.clip(index, 0, n - 1).astype(np.int64)
    begin = end - span
    return np.clip(np.linspace(begin, end, num=num_frames), begin, end - 1).astype(np.int64)


def uniform_clip_indices(n: int, num_frames: int, stride: int, rng: np.random.Generator) -> np.ndarray:
    """Fine-tuning train clip (VideoMAE Kinetics loader): a random window of num_frames·stride frames."""
    span = num_frames * stride
    return _linspace_clip(n, num_frames, stride, int(rng.integers(span, n)) if n > span else None)


def centre_clip_indices(n: int, num_frames: int, stride: int) -> np.ndarray:
    """Validation clip: the train window placed at the middle of the range the train sampler draws from."""
    span = num_frames * stride
    return _linspace_clip(n, num_frames, stride, (span + n - 1) // 2 if n > span else None)


def evenly_spaced_clip_indices(
    n: int, num_frames: int, stride: int, chunk: int, num_chunks: int
) -> np.ndarray:
    """Test clip ``chunk`` of ``num_chunks`` evenly spaced ones (VideoMAE Kinetics test mode).

    The video is read at ``stride`` (padded with its last frame to at least num_frames) and chunk c
    starts at int(c·(B − num_frames)/(num_chunks − 1)) in that buffer of B frames. One chunk is
    centred (the reference divides by zero there).
    """
    buffer = list(range(0, n, stride))
    buffer += [buffer[-1]] * (num_frames - len(buffer))
    slack = len(buffer) - num_frames
    start = slack // 2 if num_chunks == 1 else int(chunk * (slack / (num_chunks - 1)))
    return np.asarray(buffer[start : start + num_frames], dtype=np.int64)


def segment_indices(n: int, num_segments: int, rng: np.random.Generator | None) -> np.ndarray:
    """TSN segment sampling (VideoMAE SSv2): one frame per equal segment.

    Train (``rng`` given): uniform inside each of the n // num_segments-frame segments. Eval
    (``rng`` None): the middle of each of num_segments equal parts. For n < num_segments the
    reference returns frame 0 everywhere; we take frame ⌊i·n/num_segments⌋ so every frame is used in
    order (a deliberate deviation).
    """
    if rng is None:
        tick = n / num_segments
        return np.array([int(tick / 2 + tick * i) for i in range(num_segments)], dtype=np.int64)
    length = n // num_segments
    if length > 0:
        return np.arange(num_segments, dtype=np.int64) * length + rng.integers(length, size=num_segments)
    return np.arange(num_segments, dtype=np.int64) * n // num_segments


def segment_test_indices(n: int, num_segments: int, chunk: int, num_chunks: int) -> np.ndarray:
    """Test view ``chunk`` for segment sampling: offset tick·chunk/num_chunks inside each segment.

    With two chunks this is the reference's pair (segment starts, segment middles); one chunk is
    the eval middle.
    """
    if num_chunks == 1:
        return segment_indices(n, num_segments, None)
    tick = n / num_segments
    offset = tick * chunk / num_chunks
    return np.array([min(int(offset + tick * i), n - 1) for i in range(num_segments)], dtype=np.int64)


@dataclass(frozen=True)
class ClipSampler:
    """Picks a clip's frame indices for one mode.

    Attributes:
        mode: ``pretrain`` | ``train`` | ``val`` | ``test``.
        num_frames: frames per clip (T).
        stride: frame step (``sampling_rate``); unused by segment sampling.
        segment_based: TSN segments (SSv2) instead of a strided window.
        num_chunks: temporal test views (``test_num_segment``).
    """

    mode: Mode
    num_frames: int
    stride: int = 1
    segment_based: bool = False
    num_chunks: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("pretrain", "train", "val", "test"):
            raise ValueError(f"unknown sampling mode {self.mode!r}")
        if self.num_frames < 1 or self.stride < 1 or self.num_chunks < 1:
            raise ValueError("num_frames, stride and num_chunks must be positive")

    def __call__(self, n: int, rng: np.random.Generator | None = None, chunk: int = 0) -> np.ndarray:
        """Indices ``[num_frames]`` for a video of ``n`` frames (rng needed for pretrain / train)."""
        if n < 1:
            raise ValueError("cannot sample from a video with no frames")
        if self.mode == "pretrain":
            return pretrain_indices(n, self.num_frames, self.stride, _need(rng))
        if self.segment_based:
            if self.mode == "train":
                return segment_indices(n, self.num_frames, _need(rng))
            if self.mode == "test":
                return segment_test_indices(n, self.num_frames, chunk, self.num_chunks)
            return segment_indices(n, self.num_frames, None)
        if self.mode == "train":
            return uniform_clip_indices(n, self.num_frames, self.stride, _need(rng))
        if self.mode == "test":
            return evenly_spaced_clip_indices(n, self.num_frames, self.stride, chunk, self.num_chunks)
        return centre_clip_indices(n, self.num_frames, self.stride)


def _need(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        raise ValueError("random sampling modes need a numpy Generator")
    return rng
