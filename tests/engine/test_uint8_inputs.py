"""Clips travel from the data sets as uint8 and are normalised on the device, by the task, where it
needs them (distillation: only the visible tubelets, in the patch embeddings)."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

import models  # noqa: F401
import run_class_finetuning
import run_mae_pretraining
import run_mmkd_distill
from datasets import build_dataset, collate_batch, normalize_video
from engine import args as cli_args
from engine.build import build_masked_clips
from engine.distributed import DistEnv
from engine.evaluation import evaluate, predict_views
from engine.loop import to_device
from engine.precision import autocast_context
from engine.runner import Trainer
from tests.engine.conftest import CLIP, distill_argv, finetune_argv

CPU = DistEnv(0, 1, 0, torch.device("cpu"), distributed=False, backend=None)

SMALL = {"num_frames": 8, "sampling_rate": 2, "input_size": 32}


def test_to_device_moves_clips_as_shipped() -> None:
    video = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    mask = torch.rand(2, 16) > 0.5
    batch = to_device({"video": video, "mask": mask, "name": ["a", "b"]}, torch.device("cpu"))
    assert batch["video"].dtype == torch.uint8 and torch.equal(batch["video"], video)  # the task normalises
    assert torch.equal(batch["mask"], mask) and batch["name"] == ["a", "b"]
    floats = torch.randn(2, 3, 4, 8, 8)
    assert torch.equal(to_device({"video": floats}, torch.device("cpu"))["video"], floats)


def _shipped_clips(b: int = 2, t: int = 8, size: int = 32) -> torch.Tensor:
    # as collate_batch ships them: [B, 3, T, H, W] views of frames-last memory
    frames = torch.randint(
        0, 256, (b, t, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )
    return frames.permute(0, 4, 1, 2, 3)


def test_the_patch_embedding_normalises_uint8_clips_exactly_as_the_whole_clip() -> None:
    """Gathering the uint8 tubelets and normalising them gives the values of normalising the clip
    first (elementwise, one rounding per operation), so the tokens are the same numbers."""
    torch.manual_seed(0)
    embed = timm.create_model("pretrain_videomae_pico_patch8", img_size=32, num_frames=8).encoder.patch_embed
    video = _shipped_clips()
    index = torch.stack([torch.randperm(64)[:16].sort().values for _ in range(2)])
    with torch.no_grad():
        assert torch.equal(
            embed.forward_selected(video, index), embed.forward_selected(normalize_video(video), index)
        )
        assert torch.equal(embed(video), embed(normalize_video(video)))


def _task_and_batch(mode: str, videos: Path, teacher: Path, out: Path):
    if mode == "finetune":  # erasing and mixup act on the normalised clips, inside the task
        argv = finetune_argv(videos, out, "--reprob", "0.5", "--mixup", "0.8", "--cutmix", "1.0")
        args = cli_args.parse("finetune", argv)
        return run_class_finetuning.build_task(args, 3), {
            "video": _shipped_clips(),
            "label": torch.tensor([0, 2]),
        }
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, 1::2] = True
    if mode == "distill":
        args = cli_args.parse("distill", distill_argv(videos, teacher, out))
        task = run_mmkd_distill.build_task(args)
    else:
        args = cli_args.parse("pretrain", [*CLIP, "--data_path", str(videos / "pretrain.csv"), "--model",
                                           "pretrain_videomae_pico_patch8", "--decoder_depth", "1"])  # fmt: skip
        task = run_mae_pretraining.build_task(args)
    return task, {"video": _shipped_clips(), "mask": mask, "num_visible": 32}


@pytest.mark.parametrize("mode", ["distill", "pretrain", "finetune"])
def test_each_entry_points_task_takes_the_same_step_from_uint8_and_normalised_clips(
    videos: Path, teacher_ckpt: Path, tmp_path: Path, mode: str
) -> None:
    torch.manual_seed(0)
    task, batch = _task_and_batch(mode, videos, teacher_ckpt, tmp_path)
    task.train()
    results = []
    for video in (batch["video"], normalize_video(batch["video"])):
        random.seed(5)  # erasing's regions, mixup's draws (numpy) and the noise (torch) as before
        np.random.seed(5)
        torch.manual_seed(5)
        task.zero_grad(set_to_none=True)
        with autocast_context("cpu", "fp32"):
            losses = task({**batch, "video": video})
        losses["loss"].backward()
        grads = {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}
        results.append(({k: v.detach() for k, v in losses.items()}, grads))
    (losses_u, grads_u), (losses_f, grads_f) = results
    assert losses_u.keys() == losses_f.keys() and grads_u.keys() == grads_f.keys() and len(grads_u) > 5
    for k in losses_f:
        torch.testing.assert_close(losses_u[k], losses_f[k], msg=lambda m, k=k: f"{k}: {m}")
    for n in grads_f:
        torch.testing.assert_close(grads_u[n], grads_f[n], msg=lambda m, n=n: f"{n}: {m}")


class _FloatClipWatch(TorchDispatchMode):
    """Records every floating-point tensor an op creates with the shape of the whole clip batch."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape, self.seen = shape, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if torch.is_tensor(t) and t.is_floating_point() and t.shape == self.shape:
                self.seen.append(str(func))
        return out


def test_a_distillation_step_through_the_trainer_makes_no_float_copy_of_the_clips(
    videos: Path, teacher_ckpt: Path, tmp_path: Path
) -> None:
    """The clips as the data set ships them, through the loop the entry point runs: both encoders
    normalise only the tubelets they embed (at the paper's batch 32, a float copy of the clips is
    294 MiB; the old loop made one per step)."""
    args = cli_args.parse("distill", distill_argv(videos, teacher_ckpt, tmp_path))
    task = run_mmkd_distill.build_task(args)
    batch = collate_batch([build_masked_clips(args, task.student)[i] for i in range(2)])
    assert batch["video"].dtype == torch.uint8
    trainer = Trainer(args, CPU, task, [batch] * 2)
    watch = _FloatClipWatch(batch["video"].shape)
    with watch:
        trainer.train_epoch(0)
    assert trainer.state.global_step == 2
    assert watch.seen == []


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


class _Copies(TorchDispatchMode):
    """Records (source device, non_blocking) of every copy onto another device."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and "device" in kwargs:
            self.seen.append((args[0].device.type, kwargs["device"].type, bool(kwargs.get("non_blocking"))))
        return func(*args, **kwargs)


def test_normalising_on_an_accelerator_copies_the_constants_without_blocking() -> None:
    """A blocking copy from host memory makes the host wait for the GPU: one sync per call, twice per
    distillation step (both encoders). On the meta device the copies can be seen without a GPU."""
    video = torch.empty(2, 8, 3, 2, 8, 8, dtype=torch.uint8, device="meta")  # gathered tubelets
    with _Copies() as copies:
        out = normalize_video(video)
    assert out.dtype == torch.float32 and out.device.type == "meta"
    assert copies.seen == [("cpu", "meta", True), ("cpu", "meta", True)]
