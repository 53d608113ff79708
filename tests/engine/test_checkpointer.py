"""engine.checkpointer: save -> rotate -> resume through the objects the trainer builds (a pico
pre-training run on generated videos, one process)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import run_mae_pretraining
from engine import args as cli_args
from engine.build import build_masked_clips
from engine.checkpoint import CheckpointManager, get_rng_state
from engine.distributed import DistEnv
from engine.runner import Trainer, make_loader
from models.weights import read_checkpoint

CPU = DistEnv(0, 1, 0, torch.device("cpu"), distributed=False, backend=None)
# what the trainer has always written (a checkpoint of the old code must still resume: same keys)
KEYS = {"model", "epoch", "world_size", "global_step", "skipped_steps", "bad_files", "seen_files", "best",
        "rng", "args", "model_args", "optimizer", "scaler"}  # fmt: skip


def _trainer(videos: Path, out: Path, *extra: str) -> Trainer:
    argv = ["--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
            "--num_frames", "8", "--sampling_rate", "2", "--input_size", "32", "--device", "cpu",
            "--num_workers", "0", "--decoder_depth", "1", "--batch_size", "2", "--epochs", "5",
            "--warmup_epochs", "1", "--output_dir", str(out), "--keep_last", "2", *extra]  # fmt: skip
    args = cli_args.parse("pretrain", argv)
    task = run_mae_pretraining.build_task(args)
    return Trainer(args, CPU, task, make_loader(build_masked_clips(args, task.model), args, CPU, train=True))


def _same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if torch.is_tensor(a) else a == b


def test_save_rotate_resume_round_trip(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = _trainer(videos, out, "--save_ckpt_freq_steps", "1")
    steps = trainer.steps_per_epoch
    assert steps >= 3
    trainer.train_epoch(0)  # a mid-epoch checkpoint after every step; the two newest are kept
    files = CheckpointManager(out)
    assert [key for key, _ in files.mid_epoch()] == [(0, 2 * (steps - 1)), (0, 2 * steps)]
    mid = read_checkpoint(files.mid_epoch()[-1][1])
    assert set(mid) == KEYS | {"clips_done", "batches_done"} and mid["batches_done"] == steps
    for epoch in range(3):  # complete epochs supersede the mid-epoch files; keep_last 2 numbered
        trainer.checkpointer.save(epoch)
    assert [e for e, _ in files.numbered()] == [1, 2] and files.mid_epoch() == []
    saved = read_checkpoint(out / "checkpoint-2.pth")
    assert set(saved) == KEYS and saved["global_step"] == steps and saved["epoch"] == 2
    assert _same_tensors(saved["rng"], [get_rng_state()])  # this rank's RNG, as it was at the save
    # the arguments are plain values under the options' dests, every one of them (reference tools read them)
    assert saved["args"] == trainer.cfg.to_args()
    args = saved["args"]
    assert (args["batch_size"], args["lr"], args["decoder_depth"]) == (2, 1.5e-4, 1)
    assert set(saved["args"]) == set(vars(cli_args.build_parser("pretrain").parse_args([])))

    torch.manual_seed(123)  # resuming must bring the RNG back to the saved state
    resumed = _trainer(videos, out)  # --auto_resume is on by default: the newest file
    resumed.checkpointer.resume(resumed.steps_per_epoch)
    assert resumed.checkpointer.start_epoch == 3 and resumed.state.global_step == steps
    assert _same_tensors(resumed.task.checkpoint_state(), trainer.task.checkpoint_state())
    assert _same_tensors(resumed.optimizer.state_dict(), trainer.optimizer.state_dict())
    assert _same_tensors(get_rng_state(), saved["rng"][0])


def test_mid_epoch_resume_goes_on_at_the_saved_clip(videos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    trainer = _trainer(videos, out, "--save_ckpt_freq_steps", "1")
    trainer.train_epoch(0)
    path = CheckpointManager(out).path_for(0, 2 * (trainer.steps_per_epoch - 1))
    # a later run with twice the batch: the saved clips are not a whole number of its steps
    resumed = _trainer(videos, out, "--resume", str(path), "--batch_size", "4")
    resumed.checkpointer.resume(resumed.steps_per_epoch)
    ckpt = resumed.checkpointer
    clips = 2 * (trainer.steps_per_epoch - 1)
    assert (ckpt.start_epoch, ckpt.start_clip, ckpt.start_batch) == (0, clips, clips // 4)
    assert ckpt.start_batch_of(0) == clips // 4 and ckpt.start_batch_of(1) == 0
    assert ckpt.clips_done(0, clips // 4 + 1) == clips + 4  # positions stay global clips
    if clips % 4:
        assert "not a whole number of this run's global batches" in capsys.readouterr().out


def test_a_failed_write_keeps_the_previous_checkpoint(videos: Path, tmp_path: Path, monkeypatch) -> None:
    from models.weights import CheckpointError

    out = tmp_path / "run"
    trainer = _trainer(videos, out)
    trainer.checkpointer.save(0)
    before = (out / "checkpoint-0.pth").read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="No space left on device.*checkpoint-0.pth is intact"):
        trainer.checkpointer.save(1)
    assert (out / "checkpoint-0.pth").read_bytes() == before and not (out / "checkpoint-1.pth").exists()
