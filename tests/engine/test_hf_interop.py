"""The entry points with transformers folders: --path_t / --finetune unchanged, and to-hf of our checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.engine.conftest import ROOT, distill_argv, finetune_argv, run_script

transformers = pytest.importorskip("transformers")
from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEModel  # noqa: E402


def _hf_pretraining(folder, width: int, depth: int, heads: int) -> str:
    """A random transformers VideoMAE pre-training folder shaped like our nano / pico presets at 32 px, 8 frames."""
    cfg = VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=8, hidden_size=width, num_hidden_layers=depth,
        num_attention_heads=heads, intermediate_size=4 * width, decoder_hidden_size=32, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=128, use_mean_pooling=False, layer_norm_eps=1e-6,
    )  # fmt: skip
    torch.manual_seed(0)
    VideoMAEForPreTraining(cfg).save_pretrained(folder)
    return str(folder)


def test_transformers_folder_as_path_t_and_finetune(videos, tmp_path):
    teacher = _hf_pretraining(tmp_path / "hf_nano", 64, 4, 4)
    proc = run_script("run_mmkd_distill.py", distill_argv(videos, teacher, tmp_path / "kd", "--epochs", "1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    pico = _hf_pretraining(tmp_path / "hf_pico", 32, 2, 2)
    proc = run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "ft", "--finetune", pico))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tensors loaded" in proc.stdout
    # a folder of another width: one line naming the field, exit code 2
    proc = run_script(
        "run_class_finetuning.py", finetune_argv(videos, tmp_path / "bad", "--finetune", teacher)
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "config.json has hidden_size 64 but the chosen model has 32" in proc.stderr


def test_to_hf_of_a_trained_checkpoint_needs_no_flags(distilled, tmp_path):
    """A distillation run's checkpoint records model_args; transformers loads the export as VideoMAEModel."""
    out = distilled  # read-only: the export goes to tmp_path
    ckpt = torch.load(out / "checkpoint-0.pth", weights_only=True)
    assert ckpt["model_args"]["name"] == "pretrain_videomae_pico_patch8"
    assert ckpt["model_args"]["kwargs"]["decoder_depth"] == 0
    cmd = [
        sys.executable,
        "-m",
        "models.convert",
        "to-hf",
        str(out / "checkpoint-0.pth"),
        str(tmp_path / "hf"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model, info = VideoMAEModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (cfg["image_size"], cfg["num_frames"], cfg["hidden_size"]) == (32, 8, 32)
