"""Training tasks on the tiny presets: what is trained, what is saved, and that the loss falls."""

from __future__ import annotations

import random

import pytest
import timm
import torch

import models  # noqa: F401
from engine.tasks import DistillTask, FinetuneTask, PretrainTask, clip_erasing, erase_clips
from models.distill import MMKDConfig, MMKDLoss

KW = dict(img_size=32, num_frames=4)


def tube_mask(batch: int, grid=(2, 4, 4), ratio=0.5, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t, h, w = grid
    masks = []
    for _ in range(batch):
        m = torch.zeros(h * w, dtype=torch.bool)
        m[torch.randperm(h * w, generator=g)[: int(ratio * h * w)]] = True
        masks.append(m.repeat(t))
    return torch.stack(masks)


def fixed_batch(b=2):
    torch.manual_seed(0)
    return {
        "video": torch.randn(b, 3, 4, 32, 32),
        "mask": tube_mask(b),
        "label": torch.tensor([0, 1] * (b // 2)),
    }


def _distill_task(mode="hybrid"):
    student = timm.create_model("pretrain_videomae_pico_patch8", decoder_depth=0, **KW)
    teacher = timm.create_model("pretrain_videomae_nano_patch8", decoder_depth=0, **KW)
    heads = MMKDLoss(32, 64, MMKDConfig(mode=mode, num_k=2, num_f=4))
    return DistillTask(student, teacher, heads)


def _losses_fall(task, steps=8, lr=1e-3):
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=lr)
    batch = fixed_batch()
    values = []
    for _ in range(steps):
        loss = task(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert values[-1] < values[0], values
    return values


def test_distill_task_trains_student_and_heads_only():
    task = _distill_task()
    names = {n.split(".")[0] for n, _ in task.named_parameters()}
    assert names == {"student", "heads"}
    assert not any(k.startswith("teacher") for k in task.state_dict())
    teacher_before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    out = task(fixed_batch())
    assert set(out) == {"loss", "hint", "relation", "global", "local"}
    out["loss"].backward()
    assert all(p.grad is None for p in task.teacher.parameters())
    task.train()
    assert not task.teacher.training
    _losses_fall(task)
    for k, v in task.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k


def test_distill_task_to_moves_teacher():
    task = _distill_task().double()
    assert next(task.teacher.parameters()).dtype == torch.float64


@pytest.mark.parametrize("mode", ["onlymse", "onlykd", "hinTop", "VTop"])
def test_distill_modes_train(mode):
    _losses_fall(_distill_task(mode), steps=5)


def test_pretrain_task_loss_falls():
    model = timm.create_model("pretrain_videomae_pico_patch8", decoder_depth=1, **KW)
    task = PretrainTask(model)
    _losses_fall(task, steps=10, lr=3e-3)
    assert set(task.checkpoint_state()) == set(model.state_dict())


def test_finetune_task_with_mixup_loss_falls():
    import numpy as np
    from timm.data import Mixup

    np.random.seed(0)  # timm's Mixup draws lambda from numpy's global generator
    torch.manual_seed(0)
    model = timm.create_model("vit_pico_patch8", num_classes=2, all_frames=4, img_size=32)
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2)
    task = FinetuneTask(model, mix, smoothing=0.1).train()
    _losses_fall(task, steps=10, lr=3e-3)
    task.eval()
    assert task(fixed_batch())["loss"].item() > 0


def test_clip_erasing_is_the_reference_pixel_mode():
    erasing = clip_erasing(0.25, "cpu")
    assert (erasing.probability, erasing.mode, erasing.min_count, erasing.max_count) == (0.25, "pixel", 1, 1)
    assert clip_erasing(0.0, "cpu") is None


def _erased(seed: int, video: torch.Tensor, probability: float = 1.0) -> torch.Tensor:
    random.seed(seed)
    torch.manual_seed(seed)
    return erase_clips(video.clone(), clip_erasing(probability, video.device))


def test_erasing_gives_every_frame_its_own_region_and_repeats_from_the_seed():
    video = torch.zeros(2, 3, 6, 32, 32)
    erased = _erased(0, video)
    changed = (erased != video).any(dim=1)  # [B, T, H, W], a region per frame
    assert changed.flatten(2).any(-1).all()  # probability 1: every frame of every clip erased
    regions = {
        tuple(changed[b, t].nonzero().float().mean(0).round().tolist()) for b in range(2) for t in range(6)
    }
    assert len(regions) > 1  # drawn per frame, not once per clip
    assert torch.equal(erased, _erased(0, video)) and not torch.equal(erased, _erased(1, video))
    assert 0.5 < erased[changed[:, None].expand_as(erased)].std() < 1.5  # per-pixel N(0, 1) noise


def test_finetune_task_erases_only_in_training():
    torch.manual_seed(0)
    model = timm.create_model("vit_pico_patch8", num_classes=2, all_frames=4, img_size=32)
    task = FinetuneTask(model, erasing=clip_erasing(1.0, "cpu"))
    batch = fixed_batch()
    before = batch["video"].clone()
    task.eval()(batch)
    assert torch.equal(batch["video"], before)
    task.train()(batch)
    assert not torch.equal(batch["video"], before)


def test_distill_task_runs_with_16_bit_weights_as_deepspeed_stores_them():
    """DeepSpeed bf16 / fp16 casts every weight, the heads' too: the heads run in their dtype, the
    objectives (softmaxes over the attention logits) stay in float32."""
    task = _distill_task().to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = task(fixed_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in task.heads.parameters())
    full = _distill_task()(fixed_batch())  # float32 weights: the objectives stay in float32
    assert full["loss"].dtype == torch.float32
