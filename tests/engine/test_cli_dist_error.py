"""A collective that timed out (--dist_timeout) where the heartbeat named no rank ends in one line."""

from __future__ import annotations

from torch.distributed import DistError

from engine.cli import EXIT_FAILURE, run


def _times_out(argv):
    raise DistError("[../gloo/transport/tcp/pair.cc:534] Read error\nTimed out waiting 600000ms")


def test_dist_error_is_one_line_and_failure_code(capsys):
    assert run(_times_out, []) == EXIT_FAILURE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: [../gloo/transport/tcp/pair.cc:534] Read error Timed out" in err[0]
    assert "Traceback" not in err[0]
