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


def test_the_teachers_repeated_sampling_keeps_the_batch_of_clips(tmp_path):
    """--teacher_num_sample R: the teacher's command asks R clips per video from batch_size / R
    videos (the same clips per step); a batch that R does not divide is refused in one line."""
    a = quickstart.parse(["--teacher_num_sample", "4"])
    flags = quickstart.pretrain_flags(a, quickstart.TEACHER, 13, 0, tmp_path / "l.csv", tmp_path, (), 4)
    assert flags[flags.index("--num_sample") + 1] == "4"
    assert flags[flags.index("--batch_size") + 1] == str(a.batch_size // 4)
    default = quickstart.parse([])
    plain = quickstart.pretrain_flags(default, quickstart.TEACHER, 50, 0, tmp_path / "l.csv", tmp_path)
    assert (default.teacher_num_sample, default.pretrain_epochs) == (1, 50)
    assert plain[plain.index("--num_sample") + 1] == "1"
    assert plain[plain.index("--batch_size") + 1] == str(default.batch_size)
    with pytest.raises(SystemExit):
        quickstart.parse(["--teacher_num_sample", "3"])
