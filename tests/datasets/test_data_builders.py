"""Dataset builders end to end on generated videos: shapes, dtypes, ranges, seeding, collation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from datasets import (
    DATASET_CLASSES,
    AnnotationError,
    build_dataset,
    build_pretraining_dataset,
    collate_batch,
    normalize_video,
)
from datasets.annotations import read_annotation_list
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

SMALL = {"num_frames": 8, "sampling_rate": 2, "input_size": 32}
# ImageNet-normalised uint8 values lie within these bounds.
LOW, HIGH = -2.2, 2.7


def test_dataset_classes() -> None:
    assert DATASET_CLASSES == {"Kinetics-400": 400, "UCF101": 101, "HMDB51": 51, "SSV2": 174}


def test_pretraining_items(synthetic) -> None:
    dataset = build_pretraining_dataset(
        synthetic["pretrain"], patch_size=16, tubelet_size=2, mask_ratio=0.75, **SMALL
    )
    assert len(dataset) == 9
    item = dataset[0]
    assert set(item) == {"video", "mask", "n_bad"}
    video, mask = item["video"], item["mask"]
    assert video.shape == (3, 8, 32, 32) and video.dtype == torch.float32 and video.is_contiguous()
    assert video.min() >= LOW and video.max() <= HIGH
    assert mask.shape == (4 * 2 * 2,) and mask.dtype == torch.bool and mask.sum() == 4 * 3
    assert item["n_bad"] == 0


def test_pretraining_seeding(synthetic) -> None:
    def build(seed: int):
        return build_pretraining_dataset(synthetic["pretrain"], patch_size=16, seed=seed, **SMALL)

    a, b, c = build(0), build(0), build(1)
    for key in ("video", "mask"):
        assert torch.equal(a[3][key], b[3][key])
    assert not torch.equal(a[3]["video"], c[3]["video"])
    before = a[3]["video"]
    a.set_epoch(1)
    assert not torch.equal(a[3]["video"], before)  # a new epoch draws new clips, crops and masks
    b.set_epoch(1)
    assert torch.equal(a[3]["video"], b[3]["video"])


def test_set_epoch_reaches_persistent_workers(synthetic) -> None:
    dataset = build_pretraining_dataset(synthetic["pretrain"], patch_size=16, **SMALL)
    loader = DataLoader(
        dataset, batch_size=3, num_workers=1, persistent_workers=True, collate_fn=collate_batch
    )
    first = torch.cat([b["video"] for b in loader])
    dataset.set_epoch(5)
    second = torch.cat([b["video"] for b in loader])
    expected = torch.stack([dataset[i]["video"] for i in range(len(dataset))])
    assert torch.equal(second, expected) and not torch.equal(first, second)


@pytest.mark.parametrize("decoder", ["auto", "pyav"])
def test_workers_forked_after_decoding_in_main_process(synthetic, decoder: str) -> None:
    """Decoder state left in the parent (e.g. a swscale thread pool) must not hang forked workers."""
    dataset = build_pretraining_dataset(synthetic["pretrain"], patch_size=16, decoder=decoder, **SMALL)
    dataset[0]
    loader = DataLoader(dataset, batch_size=3, num_workers=2, timeout=60, collate_fn=collate_batch)
    assert sum(len(b["video"]) for b in loader) == len(dataset)


def test_shell_metacharacters_in_file_names(video_path: str, tmp_path: Path) -> None:
    name = "$(touch pwned) `id`; a & b | 'q'.mp4"
    (tmp_path / name).write_bytes(Path(video_path).read_bytes())
    (tmp_path / "list.csv").write_text(f"{name} 0\n")
    item = build_pretraining_dataset(tmp_path / "list.csv", patch_size=16, **SMALL)[0]
    assert item["n_bad"] == 0 and not (tmp_path / "pwned").exists()


def test_relative_paths_and_root(synthetic, tmp_path: Path) -> None:
    source = Path(synthetic["pretrain"])
    moved = tmp_path / "lists" / "pretrain.csv"
    moved.parent.mkdir()
    moved.write_text(source.read_text())
    records = read_annotation_list(moved, root=synthetic["root"])
    assert all(os.path.exists(r.path) for r in records)
    assert build_pretraining_dataset(moved, root=synthetic["root"], patch_size=16, **SMALL)[0]["n_bad"] == 0


def test_pretraining_argument_checks(synthetic) -> None:
    with pytest.raises(ValueError, match="tubelet_size"):
        build_pretraining_dataset(synthetic["pretrain"], num_frames=5, tubelet_size=2)
    with pytest.raises(ValueError, match="mask_ratio"):
        build_pretraining_dataset(synthetic["pretrain"], mask_ratio=1.0)
    with pytest.raises(ValueError, match="decoder"):
        build_pretraining_dataset(synthetic["pretrain"], decoder="ffmpeg")


@pytest.mark.parametrize("num_sample", [1, 2])
def test_finetune_train_items(synthetic, num_sample: int) -> None:
    dataset, nb_classes = build_dataset(
        "UCF101", "train", data_path=synthetic["root"], nb_classes=3, num_sample=num_sample, **SMALL
    )
    assert nb_classes == 3 and len(dataset) == 9
    item = dataset[4]
    if num_sample == 1:
        assert item["video"].shape == (3, 8, 32, 32) and item["label"] == 1
    else:
        assert item["video"].shape == (2, 3, 8, 32, 32) and item["label"].tolist() == [1, 1]
        assert not torch.equal(item["video"][0], item["video"][1])  # independent views of one clip
    assert item["video"].dtype == torch.float32 and torch.isfinite(item["video"]).all()
    batch = collate_batch([dataset[0], dataset[4]])
    assert batch["video"].shape == (2 * num_sample, 3, 8, 32, 32)
    assert batch["label"].tolist() == [0] * num_sample + [1] * num_sample
    assert batch["n_bad"].tolist() == [0, 0]


def test_finetune_train_seeded(synthetic) -> None:
    def build(seed: int):
        return build_dataset("HMDB51", "train", data_path=synthetic["root"], seed=seed, **SMALL)[0]

    assert torch.equal(build(0)[2]["video"], build(0)[2]["video"])
    assert not torch.equal(build(0)[2]["video"], build(1)[2]["video"])


def test_val_items(synthetic) -> None:
    dataset, nb_classes = build_dataset(
        "Kinetics-400", "val", data_path=synthetic["root"], short_side_size=40, **SMALL
    )
    assert nb_classes == 400 and len(dataset) == 3
    item = dataset[1]
    assert set(item) == {"video", "label", "valid", "n_bad"}
    assert item["video"].shape == (3, 8, 32, 32) and item["label"] == 1 and item["valid"] is True
    assert item["video"].min() >= LOW and item["video"].max() <= HIGH
    assert torch.equal(dataset[1]["video"], item["video"])  # evaluation is deterministic


def test_test_items_and_loader(synthetic) -> None:
    dataset, _ = build_dataset(
        "UCF101", "test", data_path=synthetic["root"], test_num_segment=2, test_num_crop=3, **SMALL
    )
    assert len(dataset) == 3 * 2 * 3
    items = [dataset[i] for i in range(6)]
    assert [(i["chunk"], i["crop"]) for i in items] == [(c, k) for c in range(2) for k in range(3)]
    assert {i["video_id"] for i in items} == {"up_0004"}
    assert not torch.equal(items[0]["video"], items[2]["video"])  # left vs right crop
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_batch)
    batch = next(iter(loader))
    assert batch["video"].shape == (4, 3, 8, 32, 32)
    assert batch["video_id"] == ["up_0004"] * 4 and batch["valid"].dtype == torch.bool
    assert batch["chunk"].tolist() == [0, 0, 0, 1] and batch["crop"].tolist() == [0, 1, 2, 0]


def test_nb_classes_checks(synthetic) -> None:
    with pytest.raises(AnnotationError, match=r"train\.csv:\d+: label 2 is outside \[0, 1\]"):
        build_dataset("UCF101", "train", data_path=synthetic["root"], nb_classes=2)
    with pytest.raises(ValueError, match="data_set must be one of"):
        build_dataset("Kinetics400", "train", data_path=synthetic["root"])
    with pytest.raises(ValueError, match="split"):
        build_dataset("UCF101", "dev", data_path=synthetic["root"])


def test_ssv2_frame_folders(frame_folders, tmp_path: Path) -> None:
    root = frame_folders["root"]
    (tmp_path / "train.csv").write_text("clip a 30 5\nclip_b 7 173\n")
    (tmp_path / "test.csv").write_text("clip a 30 5\n")
    train, nb_classes = build_dataset("SSV2", "train", data_path=tmp_path, root=root, **SMALL)
    assert nb_classes == 174 and not train.transform.flip  # direction matters in SSv2
    assert train[0]["video"].shape == (3, 8, 32, 32) and train[1]["label"] == 173
    test, _ = build_dataset(
        "SSV2", "test", data_path=tmp_path, root=root, test_num_segment=2, test_num_crop=3, **SMALL
    )
    assert len(test) == 6 and test[0]["video_id"] == "clip a" and test[5]["valid"]


def _uint8_twins(synthetic, split: str):
    """The same split built twice: normalised in the dataset, and uint8 (normalised per batch later)."""
    if split == "pretrain":
        return [
            build_pretraining_dataset(synthetic["pretrain"], patch_size=16, normalize=n, **SMALL)
            for n in (True, False)
        ]
    extra = {"test_num_segment": 2, "test_num_crop": 3} if split == "test" else {}
    return [
        build_dataset(
            "UCF101", split, data_path=synthetic["root"], nb_classes=3, normalize=n, **extra, **SMALL
        )[0]
        for n in (True, False)
    ]


@pytest.mark.parametrize("split", ["pretrain", "train", "val", "test"])
def test_uint8_items_normalise_to_the_float_items(synthetic, split: str) -> None:
    floats, uint8s = _uint8_twins(synthetic, split)
    indices = {"val": [0, 2], "test": [0, 5]}.get(split, [0, 4])
    batch_f = collate_batch([floats[i] for i in indices])
    batch_u = collate_batch([uint8s[i] for i in indices])
    assert batch_u["video"].dtype == torch.uint8 and batch_u["video"].shape == batch_f["video"].shape
    # bit-identical: the batch normalisation is the same arithmetic as the per-clip one
    normalised = normalize_video(batch_u["video"])
    assert torch.equal(normalised, batch_f["video"]) and normalised.is_contiguous()
    for key in set(batch_f) - {"video"}:
        value = batch_f[key]
        assert torch.equal(value, batch_u[key]) if torch.is_tensor(value) else value == batch_u[key]


def test_uint8_invalid_eval_item_is_uint8(synthetic, tmp_path: Path) -> None:
    (tmp_path / "val.csv").write_text(f"{tmp_path / 'missing.mp4'} 0\n")
    dataset, _ = build_dataset("UCF101", "val", data_path=tmp_path, normalize=False, **SMALL)
    item = dataset[0]
    assert item["valid"] is False and item["video"].dtype == torch.uint8
    assert collate_batch([item])["video"].dtype == torch.uint8  # collates with valid uint8 items


def test_normalize_video_checks_its_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        normalize_video(torch.zeros(2, 3, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, T, H, W\]"):
        normalize_video(torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8))
    extremes = normalize_video(torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1).expand(3, 2, 1, 1))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1), torch.tensor(IMAGENET_STD).view(3, 1)
    expected = (torch.tensor([[0.0, 1.0]]) - mean) / std
    torch.testing.assert_close(extremes.view(3, 2), expected, rtol=0, atol=1e-6)


def test_collate_keeps_the_frames_memory_order() -> None:
    """uint8 clips are [3, T, H, W] views of [T, H, W, 3] bytes; the batch is stacked without reordering."""
    frames = [torch.randint(0, 256, (4, 6, 5, 3), dtype=torch.uint8) for _ in range(3)]
    clips = [f.permute(3, 0, 1, 2) for f in frames]  # [3, T, H, W] views
    batch = collate_batch([{"video": c} for c in clips])["video"]
    assert batch.shape == (3, 3, 4, 6, 5) and torch.equal(batch, torch.stack(clips))
    assert batch.permute(0, 2, 3, 4, 1).is_contiguous()  # bytes still in [B, T, H, W, 3] order
    # clips of different layouts fall back to a plain stack
    mixed = collate_batch([{"video": clips[0]}, {"video": clips[1].contiguous()}])["video"]
    assert torch.equal(mixed, torch.stack(clips[:2]))


def test_uint8_batches_cross_worker_processes_intact(synthetic) -> None:
    dataset = build_pretraining_dataset(synthetic["pretrain"], patch_size=16, normalize=False, **SMALL)
    in_process = collate_batch([dataset[i] for i in range(4)])
    loader = DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=collate_batch)
    from_worker = next(iter(loader))
    assert from_worker["video"].dtype == torch.uint8
    assert torch.equal(from_worker["video"], in_process["video"])
    assert torch.equal(from_worker["mask"], in_process["mask"])
