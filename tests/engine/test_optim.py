"""engine.optim against the reference schedule / layer-decay fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.optim import (
    LayerDecayValueAssigner,
    apply_schedules,
    build_optimizer,
    cosine_scheduler,
    layer_decay_values,
    layer_id_for_vit,
    param_groups,
    param_groups_for_finetune,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reference_parity"


def _load(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"reference fixture {path} not found (expected ../shared beside the repo root)")
    return torch.load(path, weights_only=True)


def _real_model(fixture: dict) -> nn.Module:
    """Our VisionTransformer built and loaded exactly like the fixture's reference model."""
    from functools import partial

    from models import VisionTransformer

    cfg = {
        k: v
        for k, v in fixture["config"].items()
        if k not in ("norm_layer", "norm_eps", "seed", "class_name")
    }
    model = VisionTransformer(norm_layer=partial(nn.LayerNorm, eps=fixture["config"]["norm_eps"]), **cfg)
    model.load_state_dict(fixture["params"], strict=True)
    return model


def _assert_same_groups(got: list[dict], expected: list[dict]) -> None:
    """Names and weight decay exactly; lr_scale (a power, rounded by each libm) within 1e-12."""
    assert [(g["params"], g["weight_decay"]) for g in got] == [
        (g["params"], g["weight_decay"]) for g in expected
    ]
    np.testing.assert_allclose([g["lr_scale"] for g in got], [g["lr_scale"] for g in expected], rtol=1e-12)


# --- cosine schedule ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["case0", "case1", "case2"])
def test_cosine_matches_reference(case: str) -> None:
    data = _load("schedules_cosine.pt")
    got = cosine_scheduler(**data["config"][case])
    expected = data["expected"][case].numpy()
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)  # math.cos rounds per libm / CPU


def test_cosine_reference_error_cases_raise_value_error() -> None:
    data = _load("schedules_cosine.pt")
    assert data["error_cases"], "fixture lists no error cases"
    for case in data["error_cases"]:
        assert case["error"] == "AssertionError"
        with pytest.raises(ValueError, match="warmup"):
            cosine_scheduler(**case["args"])


def test_cosine_warmup_longer_than_schedule_raises() -> None:
    with pytest.raises(ValueError, match="longer than the whole schedule"):
        cosine_scheduler(1.0, 0.0, epochs=1, niter_per_ep=3, warmup_epochs=2)


def test_cosine_warmup_shape() -> None:
    sched = cosine_scheduler(1.0, 0.1, epochs=3, niter_per_ep=2, warmup_epochs=1, start_warmup_value=0.5)
    assert sched[0] == 0.5 and sched[1] == 1.0 and sched[2] == 1.0  # endpoint repeated
    assert sched[-1] > 0.1


# --- layer decay --------------------------------------------------------------------------


@pytest.mark.parametrize("case", [0, 1])
def test_layer_decay_groups_match_reference(case: int) -> None:
    data = _load(f"schedules_layer_decay_case{case}.pt")
    cfg, exp = data["config"], data["expected"]
    model = _real_model(_load(cfg["finetune_fixture"]))
    assert [n for n, _ in model.named_parameters()] == exp["param_names"]

    values = layer_decay_values(cfg["layer_decay"], cfg["num_layers"])
    np.testing.assert_allclose(np.asarray(values), exp["values"].numpy(), rtol=1e-12, atol=0)
    assigner = LayerDecayValueAssigner(values)
    assert [assigner.get_layer_id(n) for n in exp["param_names"]] == exp["layer_ids"]
    np.testing.assert_allclose([assigner.get_scale(i) for i in exp["layer_ids"]], exp["lr_scale"], rtol=1e-12)

    groups = param_groups_for_finetune(model, cfg["weight_decay"], exp["skip_list"], assigner)
    got = [
        {"weight_decay": g["weight_decay"], "lr_scale": g["lr_scale"], "params": g["param_names"]}
        for g in groups
    ]
    _assert_same_groups(got, exp["groups"])
    by_name = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert [by_name[n] for n in exp["param_names"]] == exp["weight_decay"]
    params = dict(model.named_parameters())
    for g in groups:
        assert all(p is params[n] for p, n in zip(g["params"], g["param_names"], strict=True))


@pytest.mark.parametrize("case", [0, 1])
def test_build_optimizer_layer_decay_matches_reference(case: int) -> None:
    """The fine-tuning path: the classifier's `param_groups` (layers from the model) into the optimiser."""
    data = _load(f"schedules_layer_decay_case{case}.pt")
    cfg, exp = data["config"], data["expected"]
    model = _real_model(_load(cfg["finetune_fixture"]))
    assert model.get_num_layers() == cfg["num_layers"]
    groups = param_groups(model, cfg["weight_decay"], layer_decay=cfg["layer_decay"])
    optimizer = build_optimizer(
        groups, opt="adamw", lr=1e-3, weight_decay=cfg["weight_decay"], opt_betas=(0.9, 0.999)
    )
    assert isinstance(optimizer, torch.optim.AdamW)
    got = [
        {"weight_decay": g["weight_decay"], "lr_scale": g["lr_scale"], "params": g["param_names"]}
        for g in optimizer.param_groups
    ]
    _assert_same_groups(got, exp["groups"])
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)


def test_layer_id_rules() -> None:
    assert layer_id_for_vit("cls_token", 12) == 0
    assert layer_id_for_vit("pos_embed", 12) == 0
    assert layer_id_for_vit("patch_embed.proj.weight", 12) == 0
    assert layer_id_for_vit("blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id_for_vit("blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id_for_vit("head.weight", 12) == 13
    assert layer_id_for_vit("fc_norm.bias", 12) == 13


# --- build_optimizer / apply_schedules ----------------------------------------------------


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_pretrain_optimizer_has_decay_and_no_decay_groups() -> None:
    model = _tiny()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.05, opt_betas=(0.9, 0.95))
    wds = [g["weight_decay"] for g in optimizer.param_groups]
    assert wds == [0.05, 0.0]
    assert optimizer.param_groups[0]["param_names"] == ["0.weight", "2.weight"]
    assert all(g["lr_scale"] == 1.0 for g in optimizer.param_groups)


def test_frozen_params_are_left_out() -> None:
    model = _tiny()
    model[0].weight.requires_grad_(False)
    groups = param_groups_for_finetune(model, 0.1)
    names = [n for g in groups for n in g["param_names"]]
    assert "0.weight" not in names and "0.bias" in names


def test_skip_list_gets_no_decay() -> None:
    groups = param_groups_for_finetune(_tiny(), 0.1, skip_list=["2.weight"])
    decayed = [n for g in groups if g["weight_decay"] > 0 for n in g["param_names"]]
    assert decayed == ["0.weight"]


def test_unknown_optimizer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown optimiser 'adamx'.*adamw"):
        build_optimizer(_tiny(), opt="adamx", lr=1e-3, weight_decay=0.0)


def test_sgd_accepts_groups_and_drops_betas() -> None:
    groups = [{"params": list(_tiny().parameters()), "weight_decay": 0.0}]
    optimizer = build_optimizer(groups, opt="sgd", lr=0.1, weight_decay=0.0, opt_betas=(0.9, 0.99))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr_scale"] == 1.0


def test_apply_schedules_scales_lr_and_keeps_no_decay_at_zero() -> None:
    data = _load("schedules_layer_decay_case0.pt")
    cfg = data["config"]
    model = _real_model(_load(cfg["finetune_fixture"]))
    groups = param_groups(model, 0.05, layer_decay=cfg["layer_decay"])
    optimizer = build_optimizer(groups, lr=1.0, weight_decay=0.05)
    for wd in (0.2, 0.0, 0.3):  # a wd of 0 mid-schedule must not turn decay off for good
        apply_schedules(optimizer, lr=2e-3, wd=wd)
        for g in optimizer.param_groups:
            assert g["lr"] == 2e-3 * g["lr_scale"]
            assert g["weight_decay"] == (wd if g["base_weight_decay"] > 0 else 0.0)
    # The extra group keys (lr_scale, param_names, base_weight_decay) must not upset step().
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()


def test_build_optimizer_uses_the_fused_kernel_where_there_is_one() -> None:
    adamw = build_optimizer(_tiny(), lr=1e-3, weight_decay=0.05)
    assert adamw.defaults["fused"] is True  # torch has a fused AdamW for CPU and CUDA parameters
    lamb = build_optimizer(_tiny(), opt="lamb", lr=1e-3, weight_decay=0.05)
    assert lamb.defaults.get("fused") is None and lamb.defaults["foreach"] is True


def test_fused_adamw_steps_like_the_per_tensor_one() -> None:
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = _tiny()
        if fused:
            opt = build_optimizer(model, lr=1e-2, weight_decay=0.05)
        else:
            opt = torch.optim.AdamW(param_groups_for_finetune(model, 0.05), lr=1e-2, foreach=False)
        for _ in range(3):
            opt.zero_grad()
            model(torch.ones(2, model[0].in_features)).square().sum().backward()
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-7)
