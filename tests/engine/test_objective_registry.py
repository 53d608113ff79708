"""A fifth MMKD term, declared and registered in this file only, trains through the entry point.

Nothing else is edited: its flag reaches the command line and the config, its head the trained
module and the checkpoint, its loss the total and the log, from the registration alone.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import run_mmkd_distill
from engine.args import UsageError, build_parser
from engine.runner import weights_digest
from models.distill import Flag, Objective, register, registry
from tests.engine.conftest import distill_argv


class Cosine(Objective):
    """w_cos * (1 - cos(proj(f_s), f_t)) over the visible tokens; off at weight 0."""

    name = "cos"
    flags = (
        Flag(
            "w_cos",
            ("--w_cos",),
            0.0,
            "weight of the cosine term",
            check=lambda v: None if v >= 0 else "must be >= 0",
        ),
    )

    def enabled(self, cfg) -> bool:
        return cfg.w_cos != 0

    def weight(self, cfg, terms) -> float:
        return cfg.w_cos

    def build_heads(self, cfg, widths):
        return {"cos_proj": nn.Linear(widths.student, widths.teacher)}  # a head of its own, aligned or not

    def loss(self, out_s, out_t, cfg, heads, ctx):
        pred = heads["cos_proj"](out_s.features)  # [B, P, Ct]
        return 1 - F.cosine_similarity(pred, out_t.features.detach(), dim=-1).mean()


def _register_fifth_term(monkeypatch) -> None:
    monkeypatch.setattr(registry, "OBJECTIVES", dict(registry.OBJECTIVES))  # undone after the test
    register(Cosine)


def _one_step(videos, teacher_ckpt, out, *extra: str) -> tuple[dict, dict]:
    """One optimiser step through run_mmkd_distill.main: (logged record, saved weights)."""
    argv = distill_argv(
        videos,
        teacher_ckpt,
        out,
        "--epochs",
        "1",
        "--warmup_epochs",
        "0",
        "--max_steps_per_epoch",
        "1",
        *extra,
    )
    record = run_mmkd_distill.main(argv)[-1]
    return record, torch.load(out / "checkpoint-0.pth", weights_only=True)["model"]


def test_a_fifth_term_registered_in_a_test_trains_through_the_entry_point(
    videos, teacher_ckpt, tmp_path, monkeypatch
):
    four, four_state = _one_step(videos, teacher_ckpt, tmp_path / "four")
    _register_fifth_term(monkeypatch)
    assert "--w_cos" in build_parser("distill").format_help()

    off, off_state = _one_step(videos, teacher_ckpt, tmp_path / "off", "--w_cos", "0")
    assert "train_cos" not in off and not any("cos_proj" in k for k in off_state)
    assert weights_digest(off_state) == weights_digest(four_state)  # weight 0: the four-term step

    on, on_state = _one_step(videos, teacher_ckpt, tmp_path / "on", "--w_cos", "0.5")
    assert {"heads.cos_proj.weight", "heads.cos_proj.bias"} <= set(on_state)
    assert 0 < on["train_cos"] <= 2
    for term in ("hint", "relation", "global", "local"):  # same start, same batch: same four terms
        assert on[f"train_{term}"] == pytest.approx(four[f"train_{term}"], rel=1e-6)
    assert on["train_loss"] == pytest.approx(four["train_loss"] + 0.5 * on["train_cos"], rel=1e-5)
    moved = [k for k in four_state if not torch.equal(on_state[k], four_state[k])]
    assert any(k.startswith("student.") for k in moved)  # its gradient reached the student


def test_the_fifth_terms_flag_is_checked_like_the_others(videos, teacher_ckpt, tmp_path, monkeypatch):
    _register_fifth_term(monkeypatch)
    with pytest.raises(UsageError, match="--w_cos must be >= 0, got -1.0") as err:
        run_mmkd_distill.main(distill_argv(videos, teacher_ckpt, tmp_path, "--w_cos", "-1"))
    assert "\n" not in str(err.value) and not (tmp_path / "log.txt").exists()
