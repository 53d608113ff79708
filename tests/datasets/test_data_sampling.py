"""Clip indices for every mode against literal transcriptions of the reference rules."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.sampling import (
    ClipSampler,
    centre_clip_indices,
    evenly_spaced_clip_indices,
    pretrain_indices,
    segment_indices,
    segment_test_indices,
    uniform_clip_indices,
)


def _reference_pretrain(n: int, num_frames: int, stride: int, start: int) -> list[int]:
    """VideoMAE: 1-based offset; frame = offset - 1; advance while offset + stride < duration."""
    offset, ids = start + 1, []
    for _ in range(num_frames):
        ids.append(offset - 1)
        if offset + stride < n:
            offset += stride
    return ids


@pytest.mark.parametrize(
    ("n", "num_frames", "stride"),
    [(300, 16, 4), (64, 16, 4), (40, 16, 4), (5, 16, 4), (1, 8, 2), (20, 20, 1)],
)
def test_pretrain_matches_reference_rule(n: int, num_frames: int, stride: int) -> None:
    span = num_frames * stride
    for seed in range(20):
        got = pretrain_indices(n, num_frames, stride, np.random.default_rng(seed))
        start = int(got[0])
        assert (0 <= start <= n - span) if n >= span else start == 0
        assert got.tolist() == _reference_pretrain(n, num_frames, stride, start)
        assert got.dtype == np.int64 and len(got) == num_frames and got.max() < n


def test_pretrain_short_video_repeats_last_reachable_frame() -> None:
    # 10 frames, stride 4: 0, 4, 8; the next step (12) is past the end, so 8 repeats.
    assert pretrain_indices(10, 6, 4, np.random.default_rng(0)).tolist() == [0, 4, 8, 8, 8, 8]
    # 9 frames: 8 is the last frame, which the reference never steps onto (it needs index + 4 < n - 1).
    assert pretrain_indices(9, 4, 4, np.random.default_rng(0)).tolist() == [0, 4, 4, 4]


def test_pretrain_start_is_uniform() -> None:
    starts = {int(pretrain_indices(70, 16, 4, np.random.default_rng(s))[0]) for s in range(300)}
    assert starts == set(range(7))


def _reference_uniform(n: int, clip_len: int, rate: int, end_idx: int | None) -> list[int]:
    converted_len = clip_len * rate
    seg_len = n
    if seg_len <= converted_len:
        index = np.linspace(0, seg_len, num=seg_len // rate)
        index = np.concatenate((index, np.ones(clip_len - seg_len // rate) * seg_len))
        return np.clip(index, 0, seg_len - 1).astype(np.int64).tolist()
    str_idx = end_idx - converted_len
    index = np.linspace(str_idx, end_idx, num=clip_len)
    return np.clip(index, str_idx, end_idx - 1).astype(np.int64).tolist()


@pytest.mark.parametrize("n", [300, 65, 64, 40, 3])
def test_train_and_val_match_videomae_loader(n: int) -> None:
    for seed in range(10):
        got = uniform_clip_indices(n, 16, 4, np.random.default_rng(seed))
        end = int(got[-1]) + 1 if n > 64 else None
        assert got.tolist() == _reference_uniform(n, 16, 4, end)
        if end is not None:
            assert 64 <= end <= n - 1
    centre = centre_clip_indices(n, 16, 4)
    assert centre.tolist() == _reference_uniform(n, 16, 4, (64 + n - 1) // 2 if n > 64 else None)


def test_short_video_train_clip_pads_with_last_frame() -> None:
    assert uniform_clip_indices(10, 4, 4, np.random.default_rng(0)).tolist() == [0, 9, 9, 9]


def test_test_clips_evenly_spaced() -> None:
    # 100 frames at stride 4 -> buffer of 25 frames; 5 chunks start at int(c * 9 / 4).
    starts = [int(evenly_spaced_clip_indices(100, 16, 4, c, 5)[0]) // 4 for c in range(5)]
    assert starts == [0, 2, 4, 6, 9]
    assert evenly_spaced_clip_indices(100, 16, 4, 4, 5).tolist() == list(range(36, 100, 4))
    assert evenly_spaced_clip_indices(100, 16, 4, 0, 1)[0] == (25 - 16) // 2 * 4  # one chunk: centred
    # Short video: padded with its last strided frame, every chunk identical.
    assert evenly_spaced_clip_indices(20, 8, 4, 2, 3).tolist() == [0, 4, 8, 12, 16, 16, 16, 16]


def test_segment_sampling() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        got = segment_indices(50, 8, rng)
        assert all(6 * i <= got[i] < 6 * (i + 1) for i in range(8))  # one frame per 6-frame segment
    assert segment_indices(50, 8, None).tolist() == [int(6.25 / 2 + 6.25 * i) for i in range(8)]
    assert segment_indices(5, 8, rng).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]  # fewer frames than segments
    # Two test chunks: segment starts, then segment middles (the reference's pair).
    assert segment_test_indices(50, 8, 0, 2).tolist() == [int(6.25 * i) for i in range(8)]
    assert segment_test_indices(50, 8, 1, 2).tolist() == [int(6.25 / 2 + 6.25 * i) for i in range(8)]


def test_clip_sampler_dispatch() -> None:
    rng = np.random.default_rng(0)
    assert len(ClipSampler("pretrain", 16, 4)(100, rng)) == 16
    assert ClipSampler("val", 16, 4)(300).tolist() == centre_clip_indices(300, 16, 4).tolist()
    assert (
        ClipSampler("test", 8, 2, num_chunks=3)(50, chunk=2).tolist()
        == evenly_spaced_clip_indices(50, 8, 2, 2, 3).tolist()
    )
    assert ClipSampler("val", 8, segment_based=True)(40).tolist() == segment_indices(40, 8, None).tolist()
    with pytest.raises(ValueError, match="Generator"):
        ClipSampler("train", 8, 2)(100)
    with pytest.raises(ValueError, match="mode"):
        ClipSampler("eval", 8, 2)
