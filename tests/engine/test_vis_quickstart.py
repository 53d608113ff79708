"""The visualisation script on tiny checkpoints, and the quickstart's smoke mode end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
from PIL import Image

import models  # noqa: F401
from tests.engine.conftest import ROOT


def test_vis_writes_images_of_expected_size(videos, teacher_ckpt, tmp_path):
    from run_vis import main

    student = timm.create_model("pretrain_videomae_pico_patch8", decoder_depth=0, img_size=32, num_frames=8)
    ckpt = tmp_path / "student.pth"
    torch.save({"model": {f"student.{k}": v for k, v in student.state_dict().items()}}, ckpt)
    video = next((videos / "videos").rglob("*.mp4"))
    argv = [
        "--video", str(video), "--output_dir", str(tmp_path / "vis"), "--model_path", str(ckpt),
        "--teacher_path", str(teacher_ckpt), "--model", "pretrain_videomae_pico_patch8",
        "--model_t", "pretrain_videomae_nano_patch8", "--num_frames", "8", "--sampling_rate", "2",
        "--input_size", "32", "--idx", "1", "--idx_f", "2", "--num_k", "3", "--num_f", "4", "--mask_ratio", "0.5",
    ]  # fmt: skip
    written = main(argv)
    names = {p.rsplit("/", 1)[-1] for p in written}
    assert {"frames.png", "mask.png", "grid.png", "teacher_reconstruction.png"} <= names
    for kind in ("global", "local", "hint"):
        assert {f"student_mm_{kind}.png", f"teacher_mm_{kind}.png"} <= names
    assert "student_reconstruction.png" not in names  # encoder-only checkpoint: nothing to reconstruct
    rows = [p for p in written if not p.endswith("grid.png")]
    for path in rows:
        img = Image.open(path)
        assert img.size == written[path] and img.size[0] == 4 * (96 + 2) + 2  # 4 slices, 32 px shown x3
        assert len(set(img.convert("L").getdata())) > 2  # not blank
    grid = Image.open(next(p for p in written if p.endswith("grid.png")))
    assert grid.size[1] == sum(Image.open(p).size[1] for p in rows)


def test_vis_rejects_bad_query(videos, teacher_ckpt, tmp_path):
    from engine.args import UsageError
    from run_vis import main

    video = next((videos / "videos").rglob("*.mp4"))
    argv = ["--video", str(video), "--output_dir", str(tmp_path), "--model_path", str(teacher_ckpt),
            "--model", "pretrain_videomae_nano_patch8", "--num_frames", "8", "--input_size", "32", "--idx", "99"]  # fmt: skip
    with pytest.raises(UsageError, match="--idx"):
        main(argv)


@pytest.mark.slow
def test_quickstart_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/quickstart.py", "--smoke", "--seeds", "2", "--out", str(tmp_path / "qs")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("=" * 86)[-1]
    assert "mean ± std over 2 seeds" in table
    for row in (
        "teacher (nano, VideoMAE)",
        "random nano (no training)",
        "student (pico): MMKD (ours)",
        "student (pico): VideoMAE",
        "student (pico): scratch / random init",
        "MMKD distillation (pico <- nano)_s1",
    ):
        assert row in table
    rows = json.loads((tmp_path / "qs" / "results.json").read_text())["rows"]
    assert len(rows["student (pico): MMKD (ours)"]["probe"]) == 2
    assert len(rows["student (pico): VideoMAE"]["finetune"]) == 2
    assert proc.stdout.count("Epoch") == 0  # one progress line per stage, the epoch logs stay in logs/
    assert (tmp_path / "qs" / "figures" / "grid.png").is_file()
    assert (tmp_path / "qs" / "results.json").is_file()
    # Test views must show the whole scene, as the training crops do, not 32 px of an upscaled frame.
    finetune = json.loads((tmp_path / "qs" / "finetune_scratch_s0" / "args.json").read_text())
    assert finetune["short_side_size"] == finetune["input_size"]
    # The table reports the final multi-view test; no validation pass after each epoch.
    assert finetune["disable_eval_during_finetuning"]
    # Both generated sets have a key frame per frame (a clip decodes only its own frames).
    from datasets.decoding import PyAVVideo

    for data in ("data", "teacher_data"):
        video = next((tmp_path / "qs" / data / "videos").rglob("*.mp4"))
        with PyAVVideo(str(video)) as reader:
            assert reader._intra_only and len(reader) == 32
