"""The quickstart's progress reads well in a log file: one line per stage, no carriage-return animation;
on a terminal it keeps its live line. Before, a stage's line was rewritten with '\\r' per epoch even in
a log file, where a whole run became one long line."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.engine.conftest import ROOT

_spec = importlib.util.spec_from_file_location("quickstart", ROOT / "scripts" / "quickstart.py")
quickstart = importlib.util.module_from_spec(_spec)
sys.modules["quickstart"] = quickstart  # its dataclasses look their module up
_spec.loader.exec_module(quickstart)

# a stand-in entry point printing three epochs as the real ones do
_EPOCHS = [sys.executable, "-c", "for e in range(3): print(f'Epoch [{e}]  [0/1]  loss: 1.0')"]


@pytest.mark.parametrize("tty", [False, True])
def test_stage_progress_is_one_line_in_a_log_and_live_on_a_terminal(tty, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    stage = quickstart.run_stage("teacher: VideoMAE pre-training", _EPOCHS, tmp_path / "log.txt", epochs=3)
    out = capsys.readouterr().out
    assert stage.seconds >= 0 and (tmp_path / "log.txt").read_text().count("loss: 1.0\n") == 3
    if tty:
        assert out.count("\r") == 4 and "epoch 1/3" in out and out.endswith("s\n")  # 3 epochs + the last line
    else:
        assert "\r" not in out
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].startswith("teacher: VideoMAE pre-training") and "epoch 3/3" in lines[0]
