"""engine.cli.run: exit codes, one-line errors, and the exit of a process that joined a process group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from engine.args import UsageError
from engine.cli import EXIT_USAGE, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fails(argv):
    raise UsageError("--epochs must be positive, got -1")


def test_single_process_returns_codes_and_prints_one_line(capsys):
    assert run(lambda argv: None, []) == 0
    assert run(_fails, []) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs must be positive, got -1" in err[0]


_GROUP_SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys, tempfile
    sys.path.insert(0, {repo!r})
    import torch.distributed as dist
    from engine.args import UsageError
    from engine.cli import run
    from engine.distributed import is_distributed

    store = os.path.join(tempfile.mkdtemp(), "store")
    dist.init_process_group("gloo", init_method="file://" + store, rank=0, world_size=1)
    atexit.register(lambda: print("ATEXIT", flush=True))

    def main(argv):
        assert is_distributed()
        print("trained and saved")  # buffered: stdout is a pipe
        if argv == ["fail"]:
            raise UsageError("bad --data_path")

    code = run(main, sys.argv[1:])
    print("NOT REACHED", code)
    """
)


@pytest.mark.parametrize("argv, expected", [([], 0), (["fail"], EXIT_USAGE)])
def test_process_group_member_exits_with_code_after_flushing(tmp_path, argv, expected):
    script = tmp_path / "entry.py"
    script.write_text(_GROUP_SCRIPT.format(repo=REPO))
    proc = subprocess.run(
        [sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == expected, proc.stderr
    # the buffered line reached the pipe; the process left at run() (no code after it, no atexit)
    assert proc.stdout.splitlines() == ["trained and saved"], proc.stdout
    if expected:
        assert proc.stderr.strip().splitlines()[-1].endswith("bad --data_path")
