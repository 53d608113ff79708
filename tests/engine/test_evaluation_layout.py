"""Evaluation code has one home (issue 22.3): `engine.evaluation`; the training loop holds none."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "engine"
EVAL_NAMES = (
    "evaluate",
    "predict_views",
    "video_to_device",
    "format_view_line",
    "write_rank_file",
    "merge_views",
    "multiview_test",
    "newest_checkpoint",
    "eval_source",
    "load_for_eval",
)


def test_the_eval_names_come_from_engine_evaluation():
    evaluation = importlib.import_module("engine.evaluation")
    for name in EVAL_NAMES:
        assert getattr(evaluation, name).__module__ == "engine.evaluation", name


def test_the_training_loop_defines_no_eval_code():
    tree = ast.parse((ENGINE / "loop.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert not defined & set(EVAL_NAMES)
    no_grad = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and any("no_grad" in ast.unparse(d) for d in node.decorator_list)
    ]
    assert not no_grad, f"engine/loop.py defines no_grad loops {no_grad}; they belong in engine/evaluation.py"


@pytest.mark.parametrize("old", ["engine.testing", "engine.multiview"])
def test_the_old_homes_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
