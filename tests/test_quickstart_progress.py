"""The quickstart's progress reads well in a log file: one line per stage, no carriage-return animation;
on a terminal it keeps its live line. Before, a stage's line was rewritten with '\\r' per epoch even in
a log file, where a whole run became one long line."""

from __future__ import annotations

import atexit
import importlib.util
import os
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


_SCRIPT = """
import atexit, sys
atexit.register(lambda: print("atexit ran"))
for e in range(2):
    print(f"Epoch [{e}]  [0/1]  loss: 1.0")
print("argv", sys.argv[1:])
if "--fail" in sys.argv:
    sys.exit(3)
if "--raise" in sys.argv:
    raise RuntimeError("boom")
"""


def test_forked_stages_run_the_script_as_a_new_interpreter_would(tmp_path, monkeypatch, capsys, request):
    """With preload() (Linux), a stage is a fork of the quickstart's process: it runs the script as
    ``__main__`` with its own argv, output, exit status and atexit handlers, as ``python -u`` would."""
    if sys.platform != "linux":
        pytest.skip("stages are forked on Linux only")
    monkeypatch.setattr(quickstart, "_forking", True)
    # an exit handler of the parent's (pytest's fork server cleanup is one) must not run in a stage
    parent, leaked = os.getpid(), tmp_path / "parent_handler_ran_in_a_stage"

    def parent_handler() -> None:
        if os.getpid() != parent:
            leaked.write_text("ran")

    atexit.register(parent_handler)
    request.addfinalizer(lambda: atexit.unregister(parent_handler))  # also when an assertion fails
    script = tmp_path / "stage.py"
    script.write_text(_SCRIPT)
    py = [sys.executable, "-u"]
    stage = quickstart.run_stage("ok", [*py, str(script), "--x", "1"], tmp_path / "ok.log", epochs=2)
    log = (tmp_path / "ok.log").read_text()
    assert log.count("loss: 1.0\n") == 2 and "argv ['--x', '1']" in log and "atexit ran" in log
    assert "epoch 2/2" in capsys.readouterr().out and stage.peak_mib > 0
    with pytest.raises(SystemExit, match="stage 'exits 3' failed"):
        quickstart.run_stage("exits 3", [*py, str(script), "--fail"], tmp_path / "fail.log")
    assert "atexit ran" in (tmp_path / "fail.log").read_text()
    with pytest.raises(SystemExit, match="stage 'raises' failed"):
        quickstart.run_stage("raises", [*py, str(script), "--raise"], tmp_path / "raise.log")
    assert "RuntimeError: boom" in (tmp_path / "raise.log").read_text()
    quickstart.run_stage("module", [*py, "-m", "json.tool", "--help"], tmp_path / "module.log")
    assert "usage:" in (tmp_path / "module.log").read_text()
    assert sys.argv[0] != str(script)  # the parent's own state is untouched
    assert not leaked.exists()


def test_preload_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(quickstart, "_forking", False)
    monkeypatch.setenv("QUICKSTART_FORK", "0")
    assert quickstart.preload() is False and quickstart._forking is False
