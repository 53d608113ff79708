"""Whole-step parity: every reference training-step fixture replayed through the real code path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import replay_train_steps as replay_tool

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "reference_parity"
TRAIN_FIXTURES = sorted(FIXTURES.glob("train_*.pt"))


def _skip_without_fixtures() -> None:
    if not TRAIN_FIXTURES:
        pytest.skip(
            f"no train_*.pt reference fixtures in {FIXTURES} (expected ../shared beside the repo root)"
        )


@pytest.mark.parametrize("path", TRAIN_FIXTURES or [None], ids=lambda p: p.stem if p else "missing")
def test_training_steps_match_the_reference(path) -> None:
    _skip_without_fixtures()
    result = replay_tool.replay(path)
    assert result["ok"], result["problems"]
    assert result["groups_match"] and result["max_rel_err_params"] <= 1e-9


def test_cli_prints_one_json_line_last_and_exits_zero() -> None:
    _skip_without_fixtures()
    path = FIXTURES / "train_finetune_case2.pt"
    if not path.exists():
        pytest.skip(f"{path} not found")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "replay_train_steps.py"), str(path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("fixture", "ok", "max_rel_err_params", "max_rel_err_losses", "max_rel_err_lr",
                "max_rel_err_grad_norm", "max_rel_err_loss_backward", "max_rel_err_ema"):  # fmt: skip
        assert key in result, key
    assert result["ok"] is True and result["fixture"] == path.name


def test_replay_fails_on_a_wiring_mistake(monkeypatch) -> None:
    """Fine-tuning without layer-wise lr decay (the bug this tool was written to catch) is caught."""
    _skip_without_fixtures()
    from engine import optim
    from engine.tasks import FinetuneTask

    monkeypatch.setattr(FinetuneTask, "parameter_groups", lambda self, wd: optim.param_groups(self.model, wd))
    result = replay_tool.replay(FIXTURES / "train_finetune_case0.pt")
    assert not result["ok"] and not result["groups_match"]
    assert result["max_rel_err_params"] > 1e-4


def test_replay_fails_when_the_loss_is_not_divided_by_update_freq(monkeypatch) -> None:
    """Nearly invisible in the weights (Adam is scale-invariant), visible in grad_norm / loss_backward."""
    _skip_without_fixtures()
    from engine.backend import TorchBackend

    original = TorchBackend.backward
    monkeypatch.setattr(
        TorchBackend, "backward", lambda self, loss, *a, **k: original(self, loss * 2, *a, **k)
    )
    result = replay_tool.replay(FIXTURES / "train_finetune_case2.pt")
    assert not result["ok"] and result["max_rel_err_grad_norm"] > 0.5
