"""The training order (the same global steps on any number of ranks, resumable at any clip) and
multi-view test sharding (whole videos per rank, each clip decoded once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader

import datasets.classification as classification
from datasets import build_dataset, collate_batch
from engine.samplers import TrainSampler, VideoShardSampler

SMALL = {"num_frames": 8, "sampling_rate": 2, "input_size": 32}


@pytest.mark.parametrize(("videos", "views", "world"), [(3, 4, 2), (10, 6, 4), (2, 3, 3), (7, 1, 2)])
def test_ranks_get_disjoint_covering_blocks_of_whole_videos(videos, views, world):
    shards = [list(VideoShardSampler(videos * views, views, world, r)) for r in range(world)]
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == list(range(videos * views)) and len(flat) == len(set(flat))  # disjoint, covering
    owners = {}
    for rank, shard in enumerate(shards):
        assert shard == sorted(shard) and (not shard or shard[-1] - shard[0] == len(shard) - 1)  # a block
        for i in shard:
            assert owners.setdefault(i // views, rank) == rank  # all views of a video on one rank
    sizes = [len(s) // views for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="whole videos"):
        VideoShardSampler(10, 3, 2, 0)
    with pytest.raises(ValueError, match="rank 2"):
        VideoShardSampler(12, 3, 2, 2)


def test_two_simulated_ranks_decode_each_clip_once(videos: Path, monkeypatch):
    """3 test videos x 2 clips x 2 crops on 2 ranks: 6 decodes, as on one process."""
    decodes: list[tuple[str, int]] = []
    real = classification.read_clip

    def counting(record, sampler, decoder, chunk=0):
        decodes.append((record.video_id, chunk))
        return real(record, sampler, decoder, chunk=chunk)

    monkeypatch.setattr(classification, "read_clip", counting)
    ids_per_rank = []
    for rank in range(2):
        dataset, _ = build_dataset(
            "UCF101", "test", data_path=videos, nb_classes=3, normalize=False,
            test_num_segment=2, test_num_crop=2, **SMALL,
        )  # fmt: skip
        sampler = VideoShardSampler(len(dataset), dataset.views_per_video, 2, rank)
        loader = DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate_batch)
        ids_per_rank.append({vid for batch in loader for vid in batch["video_id"]})
    assert dataset.views_per_video == 4
    num_videos = len(dataset) // 4
    assert (
        ids_per_rank[0].isdisjoint(ids_per_rank[1]) and len(ids_per_rank[0] | ids_per_rank[1]) == num_videos
    )
    assert sorted(decodes) == sorted(set(decodes)) and len(decodes) == num_videos * 2  # videos x clips


def _steps(world: int, batch: int, update_freq: int, n: int = 24, skip: int = 0, epoch: int = 3) -> list[set]:
    """The clips of every global step of one epoch: ranks x micro-batches of ``batch`` as the loop takes them."""
    ranks = []
    for rank in range(world):
        sampler = TrainSampler(list(range(n)), world, rank, seed=7)
        sampler.set_epoch(epoch)
        sampler.skip(skip)
        expected = len(sampler)
        order = list(sampler)
        assert len(order) == expected
        ranks.append([order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)])
    micro = min(len(r) for r in ranks)
    return [
        {c for r in ranks for b in r[s * update_freq : (s + 1) * update_freq] for c in b}
        for s in range(micro // update_freq)
    ]


@pytest.mark.parametrize(("world", "batch", "update_freq"), [(1, 2, 2), (1, 4, 1), (4, 1, 1), (2, 1, 2)])
def test_global_steps_do_not_depend_on_how_the_global_batch_is_split(world, batch, update_freq):
    """2 ranks x batch 2 is the reference: every split of a global batch of 4 sees the same clips per step."""
    assert _steps(world, batch, update_freq) == _steps(2, 2, 1)


@pytest.mark.parametrize(("world", "batch", "update_freq"), [(1, 2, 2), (2, 2, 1), (4, 1, 1)])
def test_skip_counts_clips_of_the_global_order_on_any_number_of_ranks(world, batch, update_freq):
    """A position stored on 2 ranks (8 clips = 2 steps) resumes on 1, 2 or 4 ranks at the same step."""
    assert _steps(world, batch, update_freq, skip=8) == _steps(2, 2, 1)[2:]


def test_a_position_inside_a_global_batch_repeats_and_skips_no_clip():
    """6 clips done, global batch 4: the rest is dealt out again, each remaining clip exactly once."""
    sampler = TrainSampler(list(range(24)), 1, 0, seed=7)
    sampler.set_epoch(3)
    order = sampler.global_order()
    taken = [c for step in _steps(2, 2, 1, skip=6) for c in step]
    assert len(taken) == len(set(taken)) and set(taken) == set(order[6 : 6 + len(taken)])
    assert len(taken) == 16  # 18 left, a last incomplete step of 2 dropped
    with pytest.raises(ValueError, match="cannot skip 25 clips"):
        sampler.skip(25)
