"""Gradient accumulation, model EMA and resumed counters through the entry points (in process)."""

from __future__ import annotations

import json

import pytest
import torch

import run_class_finetuning
import run_mae_pretraining
from tests.engine.conftest import CLIP, finetune_argv


def _ckpt(out, epoch: int) -> dict:
    return torch.load(out / f"checkpoint-{epoch}.pth", weights_only=True)


def _log(out) -> list[dict]:
    return [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]


def _pretrain_argv(videos, out, *extra: str) -> list[str]:
    return [
        *CLIP, "--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
        "--decoder_depth", "1", "--epochs", "2", "--warmup_epochs", "1", "--lr", "1e-3", "--output_dir", str(out),
        "--save_ckpt_freq", "1", "--print_freq", "100", *extra,
    ]  # fmt: skip


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:  # float32 rounding of a mean of means vs one mean, through Adam: ~1e-7 here
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


def test_finetuning_batch_4x1_equals_2x2(videos, tmp_path, capsys) -> None:
    common = ("--drop_path", "0", "--epochs", "2", "--save_ckpt_freq", "1")
    run_class_finetuning.main(finetune_argv(videos, tmp_path / "a", *common, "--batch_size", "4"))
    run_class_finetuning.main(
        finetune_argv(videos, tmp_path / "b", *common, "--batch_size", "2", "--update_freq", "2")
    )
    out = capsys.readouterr().out
    assert out.count("total batch 4 clips per step") == 2  # 4 x 1 x 1 and 2 x 2 x 1
    a, b = _ckpt(tmp_path / "a", 1), _ckpt(tmp_path / "b", 1)
    assert a["global_step"] == b["global_step"] == 6  # 12 training clips / 4 per step, 2 epochs
    _assert_same_weights(a["model"], b["model"])
    c = _ckpt(tmp_path / "a", 0)["model"]
    assert any(not torch.allclose(c[k], a["model"][k]) for k in c)  # and the weights did move


def test_pretraining_batch_4x1_equals_2x2_and_scales_lr_by_the_total_batch(videos, tmp_path, capsys) -> None:
    run_mae_pretraining.main(_pretrain_argv(videos, tmp_path / "a", "--batch_size", "4"))
    run_mae_pretraining.main(
        _pretrain_argv(videos, tmp_path / "b", "--batch_size", "2", "--update_freq", "2")
    )
    out = capsys.readouterr().out
    assert out.count(f"peak lr {1e-3 * 4 / 256:.3g}") == 2
    _assert_same_weights(_ckpt(tmp_path / "a", 1)["model"], _ckpt(tmp_path / "b", 1)["model"])


def test_update_freq_larger_than_the_epoch_is_a_usage_error(videos, tmp_path) -> None:
    from engine.args import UsageError

    with pytest.raises(UsageError, match="--update_freq 50"):
        run_mae_pretraining.main(_pretrain_argv(videos, tmp_path, "--batch_size", "2", "--update_freq", "50"))


def test_model_ema_is_saved_validated_tested_and_resumed(videos, tmp_path) -> None:
    ema = ("--model_ema", "--model_ema_decay", "0.5", "--epochs", "2", "--save_ckpt_freq", "1")
    whole = tmp_path / "whole"
    results = run_class_finetuning.main(finetune_argv(videos, whole, *ema))
    ckpt = _ckpt(whole, 1)
    assert ckpt["model_ema"].keys() == ckpt["model"].keys()
    assert any(not torch.equal(ckpt["model_ema"][k], ckpt["model"][k]) for k in ckpt["model"])
    records = _log(whole)
    assert all("val_ema_acc1" in r for r in records if "epoch" in r)
    assert (
        "final_test_ema" in records[-1] and results["test_ema"]["num_videos"] == results["test"]["num_videos"]
    )
    assert (whole / "test_ema_views" / "0.txt").is_file()

    split = tmp_path / "split"
    run_class_finetuning.main(finetune_argv(videos, split, *ema, "--stop_after_epoch", "0"))
    run_class_finetuning.main(finetune_argv(videos, split, *ema))
    resumed = _ckpt(split, 1)
    for key in ckpt["model_ema"]:  # same process, same threads: bit-identical
        assert torch.equal(resumed["model_ema"][key], ckpt["model_ema"][key]), key


def test_resume_restores_the_bad_file_and_step_counters(videos, tmp_path) -> None:
    lst = tmp_path / "with_broken.csv"
    lines = [f"{videos / line.split()[0]} 0" for line in (videos / "pretrain.csv").read_text().splitlines()]
    for i in range(6):  # a third of the list: every epoch meets some (one batch of 2 is left out per epoch)
        (tmp_path / f"broken{i}.mp4").write_bytes(b"not a video" * 100)
        lines.append(f"{tmp_path / f'broken{i}.mp4'} 0")
    lst.write_text("\n".join(lines) + "\n")

    def argv(out, *extra):
        a = _pretrain_argv(videos, out, "--batch_size", "2", *extra)
        a[a.index(str(videos / "pretrain.csv"))] = str(lst)
        return a

    run_mae_pretraining.main(argv(tmp_path / "whole"))
    run_mae_pretraining.main(argv(tmp_path / "split", "--stop_after_epoch", "0"))
    first = _ckpt(tmp_path / "split", 0)
    run_mae_pretraining.main(argv(tmp_path / "split"))
    expected, got = _ckpt(tmp_path / "whole", 1), _ckpt(tmp_path / "split", 1)
    assert first["bad_files"] >= 1
    for key in ("global_step", "bad_files", "seen_files", "skipped_steps"):
        assert got[key] == expected[key], key
    assert got["bad_files"] > first["bad_files"] and got["global_step"] == 2 * first["global_step"]
