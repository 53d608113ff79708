"""Clips travel from the data sets as uint8 and are normalised per batch on the device."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import timm
import torch
from torch.utils.data import DataLoader

import models  # noqa: F401
import run_class_finetuning
from datasets import build_dataset, collate_batch, normalize_video
from engine import args as cli_args
from engine.build import build_masked_clips
from engine.loop import evaluate, predict_views, to_device
from tests.engine.conftest import CLIP, finetune_argv

SMALL = {"num_frames": 8, "sampling_rate": 2, "input_size": 32}


def test_to_device_normalises_uint8_video_only() -> None:
    video = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    mask = torch.rand(2, 16) > 0.5
    batch = to_device({"video": video, "mask": mask, "name": ["a", "b"]}, torch.device("cpu"))
    assert batch["video"].dtype == torch.float32
    assert torch.equal(batch["video"], normalize_video(video))
    assert torch.equal(batch["mask"], mask) and batch["name"] == ["a", "b"]
    floats = torch.randn(2, 3, 4, 8, 8)
    assert torch.equal(
        to_device({"video": floats}, torch.device("cpu"))["video"], floats
    )  # already normalised


def test_pretraining_clips_reach_the_loop_as_uint8(videos: Path) -> None:
    args = cli_args.parse("pretrain", [*CLIP, "--data_path", str(videos / "pretrain.csv")])
    model = timm.create_model("pretrain_videomae_pico_patch8", img_size=32, num_frames=8)
    item = build_masked_clips(args, model)[0]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (3, 8, 32, 32)


@pytest.mark.parametrize("reprob", ["0", "0.25"])
def test_finetune_splits_are_uint8_also_with_erasing(videos: Path, tmp_path: Path, reprob: str) -> None:
    args = cli_args.parse("finetune", finetune_argv(videos, tmp_path / "out", "--reprob", reprob))
    splits = run_class_finetuning.build_splits(args)
    assert set(splits) == {"train", "val", "test"}
    assert splits["train"][0][0]["video"].dtype == torch.uint8  # erasing runs on the device
    assert splits["val"][0][0]["video"].dtype == torch.uint8
    assert splits["test"][0][0]["video"].dtype == torch.uint8


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_loops_give_the_same_results_from_uint8_and_float_clips(videos: Path, split: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model("vit_pico_patch8", img_size=32, all_frames=8, num_classes=3).eval()
    extra = {"test_num_segment": 2, "test_num_crop": 2} if split == "test" else {}

    def results(normalize: bool):
        dataset, _ = build_dataset(
            "UCF101", split, data_path=videos, nb_classes=3, normalize=normalize, **extra, **SMALL
        )
        loader = DataLoader(dataset, batch_size=2, collate_fn=collate_batch)
        if split == "val":
            return evaluate(model, loader, torch.device("cpu"), contextlib.nullcontext, reduce=False)
        return predict_views(model, loader, torch.device("cpu"), contextlib.nullcontext)

    assert results(False) == results(True)
