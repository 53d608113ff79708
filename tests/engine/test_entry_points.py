"""The three entry points end to end on generated videos (CPU, tiny presets)."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import models  # noqa: F401
from engine.runner import weights_digest
from tests.engine.conftest import distill_argv, finetune_argv, run_script


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _log(out):
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def test_pretraining_end_to_end(videos, tmp_path):
    out = tmp_path / "pre"
    argv = [
        "--num_frames", "8", "--sampling_rate", "2", "--input_size", "32", "--device", "cpu", "--num_workers", "0",
        "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8", "--decoder_depth", "1",
        "--mask_ratio", "0.75", "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1", "--lr", "1e-3",
        "--no_lr_scale", "--output_dir", str(out), "--log_dir", str(out / "tb"), "--save_ckpt_freq", "1",
    ]  # fmt: skip
    _ok(run_script("run_mae_pretraining.py", argv))
    ckpt = torch.load(out / "checkpoint-1.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and "optimizer" in ckpt and "rng" in ckpt
    assert any(k.startswith("decoder.") for k in ckpt["model"])  # VideoMAE key layout
    assert [r["epoch"] for r in _log(out)] == [0, 1]
    assert json.loads((out / "args.json").read_text())["model"] == "pretrain_videomae_pico_patch8"
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_distill_resume_equals_uninterrupted_run(videos, teacher_ckpt, distilled, tmp_path):
    full, part = distilled, tmp_path / "part"  # the session's uninterrupted run of the same command
    # stop after epoch 0 (as if killed during epoch 1), then relaunch the same command
    _ok(
        run_script("run_mmkd_distill.py", distill_argv(videos, teacher_ckpt, part, "--stop_after_epoch", "0"))
    )
    assert not (part / "checkpoint-1.pth").exists()
    proc = _ok(run_script("run_mmkd_distill.py", distill_argv(videos, teacher_ckpt, part)))
    assert "resumed from" in proc.stdout
    a = torch.load(full / "checkpoint-1.pth", weights_only=True)["model"]
    b = torch.load(part / "checkpoint-1.pth", weights_only=True)["model"]
    assert set(a) == set(b) and any(k.startswith("heads.") for k in a)
    assert weights_digest(a) == weights_digest(b)
    record = _log(full)[-1]
    for term in ("loss", "hint", "relation", "global", "local"):
        assert f"train_{term}" in record


def test_finetune_train_eval_test_from_distilled_student(videos, distilled, tmp_path):
    out = tmp_path / "ft"
    proc = _ok(
        run_script(
            "run_class_finetuning.py",
            finetune_argv(videos, out, "--finetune", str(distilled / "checkpoint-0.pth")),
        )
    )
    assert "expected-unused" in proc.stdout  # heads.* dropped by name
    final = _log(out)[-1]["final_test"]
    assert final["num_videos"] == 3 and 0 <= final["top1"] <= 100
    lines = (out / "test_views" / "0.txt").read_text().splitlines()
    assert len(lines) == 1 + 3 * 2 * 2  # header + videos x clips x crops
    proc = _ok(
        run_script(
            "run_class_finetuning.py",
            finetune_argv(videos, tmp_path / "ev", "--validate_only", "--finetune", str(out / "checkpoint-0.pth")),
        )
    )
    assert "validation: top-1" in proc.stdout
    proc = _ok(
        run_script(
            "run_class_finetuning.py",
            finetune_argv(videos, tmp_path / "te", "--test", "--finetune", str(out / "checkpoint-0.pth")),
        )
    )
    assert "multi-view test: top-1" in proc.stdout


@pytest.mark.slow
def test_torchrun_two_ranks_distillation_identical_weights(videos, teacher_ckpt, tmp_path):
    proc = _ok(
        run_script(
            "run_mmkd_distill.py",
            distill_argv(videos, teacher_ckpt, tmp_path / "ddp", "--batch_size", "2"),
            torchrun=2,
        )
    )
    assert "final weights identical on all 2 rank(s)" in proc.stdout


@pytest.mark.slow
def test_torchrun_two_ranks_deepspeed_finetuning(videos, tmp_path):
    out = tmp_path / "ds"
    argv = finetune_argv(videos, out, "--enable_deepspeed", "--batch_size", "2", "--dist_eval")
    proc = _ok(run_script("run_class_finetuning.py", argv, torchrun=2))
    assert "final weights identical on all 2 rank(s)" in proc.stdout
    ckpt = torch.load(out / "checkpoint-0.pth", weights_only=True)
    assert ckpt["deepspeed_tag"] == "epoch-0" and (out / "deepspeed" / "epoch-0").is_dir()
    assert "multi-view test: top-1" in proc.stdout


@pytest.mark.slow
def test_deepspeed_distillation_two_ranks_stop_and_resume(videos, teacher_ckpt, tmp_path):
    out = tmp_path / "ds_distill"
    argv = distill_argv(videos, teacher_ckpt, out, "--enable_deepspeed", "--batch_size", "2")
    _ok(run_script("run_mmkd_distill.py", [*argv, "--stop_after_epoch", "0"], torchrun=2))
    assert (out / "checkpoint-0.pth").is_file() and not (out / "checkpoint-1.pth").exists()
    proc = _ok(run_script("run_mmkd_distill.py", argv, torchrun=2))
    assert "resumed from" in proc.stdout and "final weights identical on all 2 rank(s)" in proc.stdout
    state = torch.load(out / "checkpoint-1.pth", weights_only=True)["model"]
    assert any(k.startswith("heads.") for k in state) and any(k.startswith("student.") for k in state)


def test_failed_epoch_still_closes_the_tensorboard_file(videos, tmp_path, monkeypatch):
    """An epoch that raises leaves its scalars in the event file (the writer is closed on the way out)."""
    import engine.runner
    import run_mae_pretraining
    from engine.logger import TensorboardLogger

    closed = []
    original_close = TensorboardLogger.close

    def close(self):
        closed.append(self.writer is not None)
        original_close(self)

    def failing_epoch(self, *args, **kwargs):
        self.tb.update(0, **{"train/loss": 1.5})
        raise RuntimeError("epoch failed")

    monkeypatch.setattr(TensorboardLogger, "close", close)
    monkeypatch.setattr(engine.runner.Trainer, "train_epoch", failing_epoch)
    out = tmp_path / "pre"
    argv = [
        "--num_frames", "8", "--sampling_rate", "2", "--input_size", "32", "--device", "cpu", "--num_workers", "0",
        "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8", "--decoder_depth", "1",
        "--batch_size", "4", "--epochs", "2", "--warmup_epochs", "1", "--output_dir", str(out), "--log_dir", str(out / "tb"),
    ]  # fmt: skip
    with pytest.raises(RuntimeError, match="epoch failed"):
        run_mae_pretraining.main(argv)
    assert closed == [True]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("train/loss")] == [1.5]


@pytest.mark.slow
def test_deepspeed_bf16_distillation_with_other_widths_and_rotated_tag_folders(
    videos, teacher_ckpt, tmp_path
):
    """pico (32) <- nano (64): alignment heads in bf16 under DeepSpeed, an fp32 teacher; --keep_last 1."""
    out = tmp_path / "ds_bf16"
    argv = distill_argv(
        videos, teacher_ckpt, out, "--enable_deepspeed", "--batch_size", "2", "--precision", "bf16",
        "--teacher_precision", "fp32", "--epochs", "3", "--keep_last", "1", "--max_steps_per_epoch", "2",
    )  # fmt: skip
    proc = _ok(run_script("run_mmkd_distill.py", argv, torchrun=2))
    assert "final weights identical on all 2 rank(s)" in proc.stdout
    assert sorted(p.name for p in (out / "deepspeed").glob("epoch-*")) == ["epoch-2"]
    assert sorted(p.name for p in out.glob("checkpoint-*.pth")) == ["checkpoint-2.pth"]
    losses = [r["train_loss"] for r in _log(out)]
    assert len(losses) == 3 and all(loss == loss for loss in losses)  # finite, logged once per epoch
    assert proc.stdout.count("Epoch [0]  [0/2]") == 1  # progress lines from rank 0 only


@pytest.mark.slow
def test_torchrun_two_ranks_accumulation_equals_the_larger_batch(videos, tmp_path):
    """DDP with no_sync on the accumulation micro-steps: 2 ranks x 2 x 2 == 2 ranks x 4 x 1."""
    digests = []
    for name, extra in (("a", ["--batch_size", "4"]), ("b", ["--batch_size", "2", "--update_freq", "2"])):
        out = tmp_path / name
        argv = [
            "--num_frames", "8", "--sampling_rate", "2", "--input_size", "32", "--device", "cpu", "--num_workers", "0",
            "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8", "--decoder_depth",
            "1", "--epochs", "1", "--warmup_epochs", "0", "--output_dir", str(out), "--print_freq", "100", *extra,
        ]  # fmt: skip
        proc = _ok(run_script("run_mae_pretraining.py", argv, torchrun=2))
        assert "total batch 8 clips per step" in proc.stdout
        digests.append(torch.load(out / "checkpoint-0.pth", weights_only=True)["model"])
    for key in digests[0]:
        torch.testing.assert_close(digests[0][key], digests[1][key], rtol=1e-4, atol=1e-6, msg=key)


def test_finetune_with_erasing_repeats_from_the_seed(videos, finetuned, tmp_path):
    """--reprob: uint8 clips, erasing on the device; the same seed gives the same weights."""

    def digest(out) -> str:
        return weights_digest(torch.load(out / "checkpoint-0.pth", weights_only=True)["model"])

    def run(name: str, reprob: str) -> str:
        _ok(run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / name, "--reprob", reprob)))
        return digest(tmp_path / name)

    erased = run("a", "0.5")
    assert erased == run("b", "0.5")
    # finetune_argv's own --reprob is 0: the session's plain run is the same command without erasing
    plain = finetune_argv(videos, tmp_path)
    assert plain[plain.index("--reprob") + 1] == "0"
    assert erased != digest(finetuned)  # the erasing did change the training clips


@pytest.mark.slow
def test_torchrun_two_ranks_multiview_test_shards_whole_videos(videos, tmp_path):
    """Each rank scores whole videos (every view once, no padding); the merge equals one process."""
    torch.manual_seed(0)  # one set of weights for every rank (each rank seeds its own init)
    model = timm.create_model("vit_pico_patch8", img_size=32, all_frames=8, num_classes=3)
    torch.save({"model": model.state_dict()}, tmp_path / "cls.pth")
    test = ("--test", "--finetune", str(tmp_path / "cls.pth"))
    one = _ok(run_script("run_class_finetuning.py", finetune_argv(videos, tmp_path / "one", *test)))
    out = tmp_path / "two"
    two = _ok(run_script("run_class_finetuning.py", finetune_argv(videos, out, *test), torchrun=2))
    ranks = [(out / "test_views" / f"{r}.txt").read_text().splitlines()[1:] for r in range(2)]
    ids = [{line.split(" [")[0] for line in lines} for lines in ranks]
    assert ids[0] and ids[1] and ids[0].isdisjoint(ids[1])
    assert sorted(len(x) for x in ranks) == [4, 8]  # 3 videos x 2 clips x 2 crops, split 1 / 2 videos
    summary = [line for line in one.stdout.splitlines() if line.startswith("multi-view test:")]
    assert summary and summary == [
        line for line in two.stdout.splitlines() if line.startswith("multi-view test:")
    ]
