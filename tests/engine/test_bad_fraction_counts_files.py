"""--max_bad_fraction counts training videos, not clips: with --num_sample R each video gives R
clips, and a count of clips would let R times as many broken files through."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.engine.conftest import run_script
from tests.faults.harness import pretrain_argv


@pytest.mark.parametrize("num_sample", ["1", "2"])
def test_seen_files_count_videos_whatever_num_sample(videos: Path, tmp_path: Path, num_sample: str) -> None:
    out = tmp_path / "out"
    argv = pretrain_argv(videos, out, "--epochs", "1", "--warmup_epochs", "0", "--num_sample", num_sample,
                         "--batch_size", "2", "--max_steps_per_epoch", "3")  # fmt: skip
    proc = run_script("run_mae_pretraining.py", argv)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint-0.pth", weights_only=True)
    assert ckpt["seen_files"] == 3 * 2  # 3 steps x 2 videos, each read once
    assert ckpt["bad_files"] == 0
