"""Broken inputs: substituted and counted in training, marked invalid in evaluation, never fatal."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from datasets import BadDataError, build_dataset, build_pretraining_dataset, collate_batch

KINDS = ["empty", "truncated", "garbage", "codec", "corrupt", "missing", "symlink_loop", "directory"]
SMALL = {"num_frames": 4, "sampling_rate": 2, "input_size": 32}


def _pretrain(list_file: Path, **kwargs):
    return build_pretraining_dataset(list_file, **{"patch_size": 16, "tubelet_size": 2, **SMALL, **kwargs})


def _write(path: Path, entries: list[tuple[str, int]]) -> Path:
    path.write_text("".join(f"{p} {label}\n" for p, label in entries), encoding="utf-8")
    return path


@pytest.mark.parametrize("decoder", ["auto", "pyav"])
@pytest.mark.parametrize("kind", KINDS)
def test_training_substitutes_and_counts(
    tmp_path: Path, bad_files: dict[str, str], video_path: str, kind: str, decoder: str, caplog
) -> None:
    lst = _write(tmp_path / "list.csv", [(bad_files[kind], 0), (video_path, 0)])
    dataset = _pretrain(lst, decoder=decoder)
    with caplog.at_level(logging.WARNING, logger="datasets"):
        first, second = dataset[0], dataset[0]
    assert first["n_bad"] == 1 and first["video"].shape == (3, 4, 32, 32)
    assert torch.equal(first["video"], second["video"])  # the substitute is fixed by seed and index
    assert dataset.clips.tracker.failures == 2 and dataset.clips.tracker.attempts == 4
    logged = [r for r in caplog.records if r.name == "datasets" and bad_files[kind] in r.getMessage()]
    assert len(logged) == 1  # each bad path is logged once per process


def test_short_video_is_not_bad(short_video: str, tmp_path: Path) -> None:
    dataset = _pretrain(_write(tmp_path / "l.csv", [(short_video, 0)]), num_frames=8, sampling_rate=4)
    item = dataset[0]
    assert item["n_bad"] == 0 and item["video"].shape == (3, 8, 32, 32)
    # The 5-frame clip reads frames 0 and 3 (then repeats 3): the second half is constant.
    assert torch.equal(item["video"][:, 2], item["video"][:, 7])


def test_finetune_train_substitute_takes_its_label(
    tmp_path: Path, bad_files: dict[str, str], video_path: str
) -> None:
    _write(tmp_path / "train.csv", [(bad_files["garbage"], 1), (video_path, 2)])
    dataset, _ = build_dataset("UCF101", "train", data_path=tmp_path, **SMALL, short_side_size=32)
    item = dataset[0]
    assert item["label"] == 2 and item["n_bad"] == 1


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_marks_invalid_never_substitutes(
    tmp_path: Path, bad_files: dict[str, str], video_path: str, split: str
) -> None:
    _write(tmp_path / f"{split}.csv", [(bad_files[k], 1) for k in KINDS] + [(video_path, 2)])
    dataset, _ = build_dataset(
        "Kinetics-400",
        split,
        data_path=tmp_path,
        test_num_segment=2,
        test_num_crop=3,
        **SMALL,
        short_side_size=32,
    )
    per_video = 6 if split == "test" else 1
    assert len(dataset) == (len(KINDS) + 1) * per_video
    items = [dataset[i] for i in range(len(dataset))]
    for item in items[: len(KINDS) * per_video]:
        assert item["valid"] is False and item["n_bad"] == 1 and item["label"] == 1
        assert item["video"].shape == (3, 4, 32, 32) and not item["video"].any()
    for item in items[len(KINDS) * per_video :]:
        assert item["valid"] is True and item["n_bad"] == 0 and item["label"] == 2
    if split == "test":
        assert [i["video_id"] for i in items[:per_video]] == [Path(bad_files["empty"]).stem] * per_video
    assert dataset.tracker.failures == len(KINDS) * (2 if split == "test" else 1)  # once per clip


def test_bad_frame_folders(tmp_path: Path, frame_folders: dict[str, object]) -> None:
    lines = [
        f"{frame_folders['broken']} 10 0",
        f"{frame_folders['short']} 20 1",
        f"{frame_folders['long']} 30 2",
    ]
    (tmp_path / "val.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    val, _ = build_dataset("SSV2", "val", data_path=tmp_path, **SMALL, short_side_size=32)
    assert [val[i]["valid"] for i in range(3)] == [False, False, True]
    train, _ = build_dataset("SSV2", "train", data_path=tmp_path, **SMALL, short_side_size=32, seed=1)
    assert [train[i]["label"] for i in range(3)] == [2, 2, 2]
    assert train.clips.tracker.failures >= 2


def test_too_many_bad_files_raise(tmp_path: Path, bad_files: dict[str, str], video_path: str) -> None:
    entries = [(bad_files["missing"], 0)] * 9 + [(video_path, 0)]
    dataset = _pretrain(_write(tmp_path / "l.csv", entries), max_bad_fraction=0.5)
    with pytest.raises(
        BadDataError, match=r"could not be read, more than max_bad_fraction=0\.5 allows"
    ) as info:
        for index in range(len(dataset)):
            dataset[index]
    assert str(info.value).count(".") >= 1 and "missing.mp4" in str(info.value)
    assert dataset.clips.tracker.attempts >= 20


def test_bad_fraction_below_threshold_is_tolerated(
    tmp_path: Path, bad_files: dict[str, str], video_path: str
) -> None:
    entries = [(bad_files["missing"], 0)] + [(video_path, 0)] * 4
    dataset = _pretrain(_write(tmp_path / "l.csv", entries), max_bad_fraction=0.5)
    assert sum(dataset[i % 5]["n_bad"] for i in range(40)) >= 8
    with pytest.raises(ValueError, match="max_bad_fraction"):
        _pretrain(_write(tmp_path / "m.csv", entries), max_bad_fraction=1.5)


def test_all_bad_with_unlimited_fraction_still_ends(tmp_path: Path, bad_files: dict[str, str]) -> None:
    dataset = _pretrain(_write(tmp_path / "l.csv", [(bad_files["missing"], 0)] * 3), max_bad_fraction=1.0)
    with pytest.raises(BadDataError, match="no readable sample found for item 0"):
        dataset[0]


def test_dataloader_workers_survive_bad_files(tmp_path: Path, bad_files: dict[str, str], synthetic) -> None:
    good = [line.split() for line in Path(synthetic["pretrain"]).read_text().splitlines()]
    entries = [(os.path.join(synthetic["root"], p), int(label)) for p, label in good]
    entries += [(bad_files[k], 0) for k in KINDS[:4]]
    dataset = _pretrain(_write(tmp_path / "l.csv", entries))
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_batch)
    batches = list(loader)
    assert sum(len(b["video"]) for b in batches) == len(entries)
    assert sum(int(b["n_bad"].sum()) for b in batches) >= 4
    assert all(b["video"].shape[1:] == (3, 4, 32, 32) and b["mask"].dtype == torch.bool for b in batches)
