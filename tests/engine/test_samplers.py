"""Multi-view test sharding: whole videos per rank, each clip decoded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader

import datasets.classification as classification
from datasets import build_dataset, collate_batch
from engine.samplers import VideoShardSampler

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
