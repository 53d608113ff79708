"""The four MMKD terms, their totals and all gradients against the reference golden numbers."""

from __future__ import annotations

import pytest
import torch

from models import EncoderOutput
from models.distill import (
    MMKDConfig,
    MMKDLoss,
    mm_global_loss,
    mm_hint_loss,
    mm_local_loss,
    mm_relation_loss,
    select_tokens,
)
from tests.conftest import load_fixture

CASES = [f"mmkd_losses_case{i}_{d}.pt" for i in range(3) for d in ("f32", "f64")]
CASES += [f"mmkd_noalign_case0_{d}.pt" for d in ("f32", "f64")]
LAYOUTS = {"reference": "expected", "time_major": "expected_frame_major"}
TERMS = {"hint": "loss_hint", "relation": "loss_relation", "global": "loss_global", "local": "loss_local"}


def rtol_for(dtype: torch.dtype) -> float:
    return 1e-9 if dtype == torch.float64 else 1e-5


def assert_rel(actual, expected, rtol, what):
    err = (actual.detach() - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= rtol * max(scale, 1e-12), (
        f"{what}: max abs err {err:.3g}, rel {err / max(scale, 1e-30):.3g}"
    )


def setup(name: str, layout: str):
    fx = load_fixture(name)
    cfg = fx["config"]
    aligned = cfg.get("alignment") != "none"
    mmkd_cfg = MMKDConfig(
        mode=cfg["distill"],
        num_k=cfg["num_k"],
        num_f=cfg["num_f"],
        kd_T=cfg["kd_T"],
        temperature_s=cfg["temperature_s"],
        temperature_t=cfg["temperature_t"],
        gamma=cfg["gamma"],
        beta=cfg["beta"],
        beta_kd1=cfg["beta_kd1"],
        beta_kd2=cfg["beta_kd2"],
        alpha=cfg["alpha"],
        alignment="always" if aligned else "none",
        value_layout=layout,
    )
    dtype = fx["inputs"]["s"].dtype
    crit = MMKDLoss(cfg["Cs"], cfg["Ct"], mmkd_cfg).to(dtype)
    crit.load_state_dict(fx["params"], strict=True)
    inp = {k: v.clone().requires_grad_(k in ("s", "attn_s", "v_s")) for k, v in fx["inputs"].items()}
    expected = {**fx["expected"], **(fx[LAYOUTS[layout]] if layout == "time_major" else {})}
    return fx, crit, inp, expected, dtype


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", CASES)
def test_mmkd_module_losses_and_gradients(name, layout):
    fx, crit, inp, expected, dtype = setup(name, layout)
    rtol = rtol_for(dtype)
    out = crit(
        EncoderOutput(inp["s"], inp["attn_s"], inp["v_s"]),
        EncoderOutput(inp["t"], inp["attn_t"], inp["v_t"]),
        num_temporal=fx["config"]["frame_t"],
    )
    for term, key in TERMS.items():
        assert_rel(out[term], expected[key], rtol, term)
    assert_rel(out["loss"], expected["loss_total"], rtol, "total")
    hidden = fx["config"]["beta_kd1"] * out["global"] + fx["config"]["beta_kd2"] * out["local"]
    assert_rel(hidden, expected["loss_hidden"], rtol, "hidden")
    out["loss"].backward()
    grads = {f"grad.{k}": v.grad for k, v in inp.items() if v.requires_grad}
    grads.update({f"grad.{k}": p.grad for k, p in crit.named_parameters()})
    expected_grads = {k for k in expected if k.startswith("grad.")}
    assert set(grads) == expected_grads
    for key in expected_grads:
        assert_rel(grads[key], expected[key], max(rtol, 1e-9) if dtype == torch.float64 else 2e-5, key)


@pytest.mark.parametrize("name", CASES)
def test_functional_api_matches(name):
    fx, crit, inp, expected, dtype = setup(name, "reference")
    c, rtol = fx["config"], rtol_for(dtype)
    s, t = inp["s"], inp["t"]
    assert torch.equal(select_tokens(t, c["num_f"]), expected["hint_select_mask"])
    assert int(select_tokens(t, c["num_f"]).sum()) == expected["num_selected"]
    attn = (inp["attn_s"], inp["attn_t"], inp["v_s"], inp["v_t"])
    assert_rel(mm_hint_loss(s, t, crit.align_feature, c["num_f"]), expected["loss_hint"], rtol, "hint")
    rel = mm_relation_loss(s, t, c["num_f"], c["temperature_s"], c["temperature_t"])
    assert_rel(rel, expected["loss_relation"], rtol, "relation")
    glob = mm_global_loss(*attn, c["num_k"], c["kd_T"], crit.global_s, crit.global_t)
    assert_rel(glob, expected["loss_global"], rtol, "global")
    for layout, key in (("reference", "expected"), ("time_major", "expected_frame_major")):
        loc = mm_local_loss(
            *attn, c["frame_t"], c["num_k"], c["kd_T"], crit.local_s, crit.local_t, value_layout=layout
        )
        assert_rel(loc, fx[key]["loss_local"], rtol, f"local/{layout}")


def _random_outputs(b=2, t_slices=4, s=6, heads=2, dh=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    p, c = t_slices * s, heads * dh
    feats = torch.randn(b, p, c, generator=g, dtype=torch.float64)
    attn = torch.randn(b, heads, p, p, generator=g, dtype=torch.float64)
    v = torch.randn(b, heads, p, dh, generator=g, dtype=torch.float64)
    return feats, attn, v


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_student_equals_teacher_gives_zero(layout):
    f, a, v = _random_outputs()
    out = EncoderOutput(f, a, v)
    same_t = MMKDLoss(
        16,
        16,
        MMKDConfig(
            num_k=3, num_f=5, alignment="none", value_layout=layout, temperature_s=0.1, temperature_t=0.1
        ),
    )
    res = same_t(out, out, num_temporal=4)
    for term in ("hint", "global", "local", "relation"):
        assert res[term].abs().item() < 1e-12, term
    diff_t = MMKDLoss(16, 16, MMKDConfig(num_k=3, num_f=5, alignment="none", value_layout=layout))
    assert diff_t(out, out, num_temporal=4)["relation"].item() > 1e-3  # unequal temperatures


def test_no_gradient_reaches_teacher():
    f, a, v = _random_outputs()
    fs, as_, vs = (x.clone().requires_grad_() for x in (f, a, v))
    ft, at, vt = (x.clone().requires_grad_() for x in _random_outputs(seed=1))
    crit = MMKDLoss(16, 16, MMKDConfig(num_k=3, num_f=5, alignment="always")).double()
    crit(EncoderOutput(fs, as_, vs), EncoderOutput(ft, at, vt), num_temporal=4)["loss"].backward()
    assert all(x.grad is None for x in (ft, at, vt))
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (fs, as_, vs))


def test_modes_select_terms_and_heads():
    expect = {
        "hybrid": {"hint", "relation", "global", "local"},
        "hinTop": {"hint", "relation", "global"},
        "VTop": {"hint", "relation", "local"},
        "onlymse": {"hint", "relation"},
        "onlykd": {"global", "local"},
    }
    f, a, v = _random_outputs()
    ft, at, vt = _random_outputs(seed=3)
    fs = torch.randn(2, 24, 8, dtype=torch.float64)
    vs = torch.randn(2, 1, 24, 8, dtype=torch.float64)
    for mode, terms in expect.items():
        crit = MMKDLoss(8, 16, MMKDConfig(mode=mode, num_k=3, num_f=5)).double()
        res = crit(EncoderOutput(fs, a[:, :1], vs), EncoderOutput(ft, at, vt), num_temporal=4)
        assert set(res) == terms | {"loss"}, mode
        heads = {n.split(".")[0] for n, _ in crit.named_parameters()}
        want = ({"align_feature"} if "hint" in terms else set()) | {
            f"{t}_{s}" for t in ("global", "local") if t in terms for s in "st"
        }
        assert heads == want, mode
    assert "relation" not in MMKDLoss(16, 16, MMKDConfig(alpha=0.0)).cfg.terms
    assert not list(MMKDLoss(16, 16, MMKDConfig()).parameters())  # equal widths: no alignment by default


@pytest.mark.parametrize("mode", ["hybrid", "hinTop", "VTop", "onlykd", "onlymse"])
def test_mode_weights_are_the_reference_sums(mode):
    """loops(_mlp).py: hybrid / onlykd weigh global and local by beta_kd1 / beta_kd2 inside beta;
    hinTop and VTop add beta times their one hidden term (no beta_kd factor)."""
    f, a, v = _random_outputs()
    ft, at, vt = _random_outputs(seed=3)
    cfg = MMKDConfig(mode=mode, num_k=3, num_f=5, gamma=0.3, alpha=0.7, beta=2.0, beta_kd1=5.0, beta_kd2=11.0)
    crit = MMKDLoss(16, 16, cfg).double()
    res = crit(EncoderOutput(f, a, v), EncoderOutput(ft, at, vt), num_temporal=4)
    hidden = {
        "hybrid": 5.0 * res.get("global", 0) + 11.0 * res.get("local", 0),
        "onlykd": 5.0 * res.get("global", 0) + 11.0 * res.get("local", 0),
        "hinTop": res.get("global", 0),
        "VTop": res.get("local", 0),
        "onlymse": 0,
    }[mode]
    output = 0.3 * res["hint"] + 0.7 * res["relation"] if mode != "onlykd" else 0
    torch.testing.assert_close(res["loss"], output + 2.0 * hidden, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="bogus"), "distillation mode"),
        (dict(alignment="maybe"), "alignment"),
        (dict(value_layout="frame"), "value layout"),
        (dict(num_k=0), "num_k"),
        (dict(kd_T=0), "kd_T"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MMKDConfig(**kwargs)


def test_bad_shapes_are_clear_errors():
    f, a, v = _random_outputs()
    with pytest.raises(ValueError, match="temporal slices"):
        mm_local_loss(a, a, v, v, num_temporal=5, num_k=2, kd_T=1.0)
    with pytest.raises(ValueError, match="top-k"):
        mm_local_loss(a, a, v, v, num_temporal=4, num_k=7, kd_T=1.0)
    with pytest.raises(ValueError, match="top-k"):
        mm_hint_loss(f, f, None, num_f=25)
    with pytest.raises(ValueError, match="alignment heads are required"):
        MMKDLoss(8, 16, MMKDConfig(alignment="none"))
