"""Checkpoints written by the reference's training code load wherever a checkpoint is read (spec §8).

The files are built here with exactly the layouts of VideoMAE / MMKD ``utils.save_model`` /
``save_module`` (``args`` is the run's ``argparse.Namespace``) and of a real DeepSpeed save on the
CPU. Before this, every one of them was refused ("contains pickled Python objects ...").
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import textwrap

import pytest
import timm
import torch

import models  # noqa: F401  (registers the presets)
import run_class_finetuning
import run_mmkd_distill
from engine import args as cli_args
from engine.features import build_feature_encoder
from models.weights import CheckpointError, read_checkpoint, read_state_dict
from tests.engine.conftest import ROOT, distill_argv, finetune_argv


def reference_args(**extra) -> argparse.Namespace:
    """A Namespace shaped like VideoMAE's ``get_args()`` (plain values: str, int, float, bool, None, list, tuple)."""
    return argparse.Namespace(
        batch_size=64, epochs=800, save_ckpt_freq=50, model="pretrain_videomae_base_patch16_224",
        decoder_depth=4, mask_type="tube", mask_ratio=0.9, input_size=224, drop_path=0.0,
        normlize_target=True, opt="adamw", opt_eps=1e-8, opt_betas=[0.9, 0.95], clip_grad=None,
        weight_decay=0.05, weight_decay_end=None, lr=0.0015, warmup_lr=1e-6, min_lr=1e-5,
        warmup_epochs=40, warmup_steps=-1, data_path="/data/k400/train.csv", imagenet_default_mean_and_std=True,
        num_frames=16, sampling_rate=4, output_dir="/work/out", log_dir="/work/out", device="cuda",
        seed=0, resume="", auto_resume=True, start_epoch=0, num_workers=10, pin_mem=True, world_size=8,
        local_rank=-1, dist_on_itp=False, dist_url="env://", rank=0, gpu=0, distributed=True,
        dist_backend="nccl", window_size=(8, 14, 14), patch_size=(16, 16), **extra,
    )  # fmt: skip


# torch.cuda.amp.GradScaler().state_dict(), as the reference's NativeScaler stores it
REFERENCE_SCALER = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                    "_growth_tracker": 0}  # fmt: skip


def optimizer_state(module: torch.nn.Module) -> dict:
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, betas=(0.9, 0.95))
    sum(p.float().sum() for p in module.parameters()).backward()
    opt.step()
    return opt.state_dict()


def save_model_layout(model: torch.nn.Module, path, **extra) -> pathlib.Path:
    """VideoMAE / MMKD ``utils.save_model`` (non-DeepSpeed)."""
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer_state(model), "epoch": 799,
         "scaler": REFERENCE_SCALER, "args": reference_args(), **extra},
        path,
    )  # fmt: skip
    return pathlib.Path(path)


def _pretrain(size: str, decoder_depth: int, seed: int = 0):
    torch.manual_seed(seed)
    return timm.create_model(
        f"pretrain_videomae_{size}_patch8", img_size=32, num_frames=8, decoder_depth=decoder_depth
    )


@pytest.fixture(scope="module")
def deepspeed_folder(tmp_path_factory) -> pathlib.Path:
    """A real DeepSpeed save on the CPU (ZeRO 0, fp32) of a pico classifier, as the reference's
    ``--enable_deepspeed`` fine-tuning writes it, with an ``args`` Namespace in the client state;
    beside it ``plain.pth``, the same weights saved without DeepSpeed."""
    out = tmp_path_factory.mktemp("deepspeed")
    script = textwrap.dedent(
        f"""
        import argparse, os, sys, torch, timm, deepspeed
        sys.path.insert(0, {str(ROOT)!r})
        import models
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"], RANK="0",
                          WORLD_SIZE="1", LOCAL_RANK="0")
        deepspeed.init_distributed(dist_backend="gloo")
        torch.manual_seed(3)
        model = timm.create_model("vit_pico_patch8", num_classes=3, all_frames=8, img_size=32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        config = {{"train_micro_batch_size_per_gpu": 1, "train_batch_size": 1,
                   "zero_optimization": {{"stage": 0}}, "zero_allow_untested_optimizer": True}}
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
        engine.backward(engine(torch.randn(1, 3, 8, 32, 32)).sum())
        engine.step()
        args = argparse.Namespace(model="vit_pico_patch8", lr=1e-3, opt_betas=[0.9, 0.999], enable_deepspeed=True,
                                  deepspeed_config="/work/out/deepspeed_config.json", window_size=(4, 4, 4))
        engine.save_checkpoint({str(out)!r}, tag="checkpoint-4", client_state={{"epoch": 4, "args": args}})
        torch.save(model.state_dict(), {str(out / "plain.pth")!r})
        """
    )
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "PORT": str(port), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_videomae_pretraining_checkpoint_is_a_teacher(videos, tmp_path, capsys):
    source = _pretrain("nano", decoder_depth=1, seed=5)
    path = save_model_layout(source, tmp_path / "checkpoint-799.pth")
    task = run_mmkd_distill.build_task(cli_args.parse("distill", distill_argv(videos, path, tmp_path / "out")))
    want = {k: v for k, v in source.state_dict().items() if not k.startswith(("decoder", "encoder_to"))}
    got = task.teacher.state_dict()
    for k, v in got.items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=0)
    out = capsys.readouterr().out
    assert f"{path}: read 'model' (" in out
    assert "left out: optimizer, epoch, loss scaler, args" in out


def test_mmkd_distillation_checkpoint_is_fine_tuned(videos, tmp_path, capsys):
    """MMKD ``save_module``: the student under 'model', the alignment heads beside it."""
    student = _pretrain("pico", decoder_depth=0, seed=6)
    heads = torch.nn.Linear(32, 64)
    path = save_model_layout(
        student, tmp_path / "checkpoint-399.pth",
        Align_feature=heads.state_dict(), Align_valuesum=torch.nn.Linear(32, 64).state_dict(),
    )  # fmt: skip
    args = cli_args.parse("finetune", finetune_argv(videos, tmp_path / "ft", "--finetune", str(path)))
    model = run_class_finetuning.build_task(args, 3).model
    enc = student.encoder.state_dict()
    for k, v in model.state_dict().items():
        if k in enc:
            torch.testing.assert_close(v, enc[k], rtol=0, atol=0)
    assert sum(k in enc for k in model.state_dict()) >= 20
    out = capsys.readouterr().out
    assert "MM-hint alignment head (Align_feature)" in out and "(Align_valuesum)" in out


@pytest.mark.parametrize("where", ["root", "tag", "file"])
def test_real_deepspeed_checkpoint_is_fine_tuned_and_featurised(deepspeed_folder, videos, tmp_path, where, capsys):
    src = {"root": deepspeed_folder, "tag": deepspeed_folder / "checkpoint-4",
           "file": deepspeed_folder / "checkpoint-4" / "mp_rank_00_model_states.pt"}[where]  # fmt: skip
    want = torch.load(deepspeed_folder / "plain.pth", weights_only=True)
    assert read_checkpoint(deepspeed_folder / "checkpoint-4" / "mp_rank_00_model_states.pt")["args"]["window_size"] == (
        4, 4, 4,
    )  # fmt: skip
    args = cli_args.parse("finetune", finetune_argv(videos, tmp_path / "ft", "--finetune", str(src)))
    model = run_class_finetuning.build_task(args, 3).model
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=0)
    assert "read 'module' (" in capsys.readouterr().out
    encoder, report = build_feature_encoder("vit_pico_patch8", str(src), num_frames=8, input_size=32)
    torch.testing.assert_close(encoder.state_dict()["blocks.0.attn.qkv.weight"], want["blocks.0.attn.qkv.weight"])
    assert "tensors loaded" in report


def test_models_convert_reads_a_reference_checkpoint(tmp_path):
    from models import convert

    source = _pretrain("nano", decoder_depth=1, seed=7)
    path = save_model_layout(source, tmp_path / "checkpoint-1599.pth")
    out = tmp_path / "hf"
    assert convert.main(["to-hf", str(path), str(out), "--model", "pretrain_videomae_nano_patch8",
                         "--input_size", "32", "--num_frames", "8"]) == 0  # fmt: skip
    back = read_state_dict(out)
    for k, v in source.state_dict().items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: {"args": reference_args(out_path=pathlib.PurePosixPath("/work/out"))},
        lambda m: {"args": reference_args(hook=_Evil(m))},
        lambda m: {"extra": _Evil(m)},
    ],
    ids=["path-in-args", "object-in-args", "object-beside"],
)
def test_any_other_global_is_still_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.zeros(1)}, **payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"contains pickled Python objects .*refusing to load it") as err:
        read_checkpoint(path)
    assert len(str(err.value).splitlines()) == 1
    assert not marker.exists()


def test_videomae_vis_reads_a_reference_pretraining_checkpoint(videos, tmp_path, capsys):
    """VideoMAE's vis.sh line on the file VideoMAE's pre-training wrote (its Namespace included)."""
    from run_videomae_vis import main
    from tests.engine.test_vis_reference_cli import reference_argv

    source = _pretrain("nano", decoder_depth=1, seed=8)
    path = save_model_layout(source, tmp_path / "checkpoint-1599.pth")
    video = sorted((videos / "videos").rglob("*.mp4"))[0]
    files = {"VIDEO_PATH": str(video), "OUTPUT_DIR": str(tmp_path / "vis"), "MODEL_PATH": str(path)}
    written = main(reference_argv("VideoMAE:vis.sh", files))
    assert len(written) == 3 * 8 and f"{path}: read 'model'" in capsys.readouterr().out
