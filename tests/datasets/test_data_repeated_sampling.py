"""Repeated sampling (``--num_sample`` R) for pre-training and distillation (issue 24.2).

Through the objects the entry points build (`engine.args.parse` -> `engine.build.build_masked_clips`
-> the training loader's `collate_batch`) and, for resuming, the distillation entry point itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import datasets.pretrain
from datasets import collate_batch
from datasets.synthetic import make_synthetic_dataset
from engine.args import UsageError, parse
from engine.build import build_masked_clips, build_pretrain_model
from engine.runner import weights_digest
from tests.engine.conftest import CLIP, distill_argv, run_script, videomae_checkpoint


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 4 videos of 24 frames at 48x40 (every one in pretrain.csv)."""
    out = tmp_path_factory.mktemp("videos")
    make_synthetic_dataset(
        out, num_classes=2, videos_per_class=4, num_frames=24, width=48, height=40, seed=5,
        val_fraction=0, test_fraction=0, workers=1,
    )  # fmt: skip
    return out


def _pretrain_dataset(videos: Path, *extra: str):
    args = parse(
        "pretrain",
        [*CLIP, "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
         "--decoder_depth", "1", "--mask_ratio", "0.75", *extra],
    )  # fmt: skip
    return build_masked_clips(args, build_pretrain_model(args.model, args.data, args.mae.decoder_depth))


def test_default_is_one_clip_per_video(videos: Path) -> None:
    item = _pretrain_dataset(videos)[0]
    assert item["video"].shape == (3, 8, 32, 32) and item["mask"].shape == (64,)


def test_two_samples_are_two_clips_of_one_decode(videos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = _pretrain_dataset(videos), _pretrain_dataset(videos, "--num_sample", "2")
    decodes = []
    read = datasets.pretrain.read_clip
    monkeypatch.setattr(datasets.pretrain, "read_clip", lambda *a, **k: decodes.append(a[0]) or read(*a, **k))
    for index in range(len(two)):
        decodes.clear()
        item = two[index]
        assert len(decodes) == 1  # the window is decoded once for both clips
        video, mask = item["video"], item["mask"]
        assert video.shape == (2, 3, 8, 32, 32) and video.dtype == torch.uint8
        assert mask.shape == (2, 64) and (mask.sum(1) == 48).all()
        # the first clip is the R = 1 item of the same (seed, epoch, index), bit for bit
        ref = one[index]
        assert torch.equal(video[0], ref["video"]) and torch.equal(mask[0], ref["mask"])
        assert not torch.equal(video[0], video[1]) or not torch.equal(mask[0], mask[1])
    assert any(not torch.equal(two[i]["mask"][0], two[i]["mask"][1]) for i in range(len(two)))
    again = _pretrain_dataset(videos, "--num_sample", "2")[3]  # deterministic per (seed, epoch, index)
    assert torch.equal(again["video"], two[3]["video"]) and torch.equal(again["mask"], two[3]["mask"])


def test_training_batch_holds_batch_size_times_r_clips(videos: Path) -> None:
    dataset = _pretrain_dataset(videos, "--num_sample", "3")
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_batch)))
    assert batch["video"].shape == (6, 3, 8, 32, 32) and batch["mask"].shape == (6, 64)
    assert batch["num_visible"] == 16 and batch["n_bad"].shape == (2,)
    # clips 0..2 come from video 0, in order
    assert torch.equal(batch["video"][1], dataset[0]["video"][1])
    assert torch.equal(batch["mask"][4], dataset[1]["mask"][1])


def test_num_sample_below_one_is_a_usage_error(videos: Path) -> None:
    with pytest.raises(UsageError, match="--num_sample must be >= 1"):
        _pretrain_dataset(videos, "--num_sample", "0")


@pytest.mark.slow
def test_distill_with_two_samples_resumes_mid_epoch_to_identical_weights(
    videos: Path, tmp_path: Path
) -> None:
    """A stop signal after step 2 of 3 (2 videos x 2 clips per step), then the same command again."""
    teacher = videomae_checkpoint("nano", tmp_path)

    def argv(out: Path) -> list[str]:
        return distill_argv(
            videos, teacher, out, "--num_sample", "2", "--batch_size", "2", "--epochs", "1",
            "--warmup_epochs", "0", "--max_steps_per_epoch", "3",
        )  # fmt: skip

    full, part = tmp_path / "full", tmp_path / "part"
    done = run_script("run_mmkd_distill.py", argv(full))
    assert done.returncode == 0, done.stderr[-3000:]
    stopped = run_script(
        "tests/faults/killer.py",
        ["run_mmkd_distill.py", *argv(part)],
        env={"MMKD_FAULT": "usr1_after_step:2"},
    )
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    resumed = run_script("run_mmkd_distill.py", argv(part))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing at epoch 0, clip 4" in resumed.stdout, resumed.stdout[-3000:]
    a = torch.load(full / "checkpoint-0.pth", weights_only=True)["model"]
    b = torch.load(part / "checkpoint-0.pth", weights_only=True)["model"]
    assert weights_digest(a) == weights_digest(b)
