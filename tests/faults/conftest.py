"""Fixtures of the fault-injection tests.

Re-exports the engine tests' generated videos and nano teacher, starts one fork server per
session (each launch is a fresh process without paying the 3-5 s of imports again), and runs
the uninterrupted reference of every entry point once, as true subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import teacher_ckpt, videomae_checkpoint, videos  # noqa: F401  (session fixtures)
from tests.faults.forkserver import ForkServer
from tests.faults.harness import (
    DISTILL,
    EPOCHS,
    FINETUNE,
    PRETRAIN,
    argv_for,
    model_digest,
    ok,
    python_cmd,
    run_parallel,
)


@pytest.fixture(scope="session")
def forkserver(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def references(tmp_path_factory, videos, teacher_ckpt):  # noqa: F811
    """Uninterrupted deterministic runs of the three entry points (true processes, side by side).

    Returns {script: {"out", "final" (digest of the last checkpoint), "first" (of checkpoint-0)}}.
    """
    root = tmp_path_factory.mktemp("references")
    scripts = [PRETRAIN, DISTILL, FINETUNE]
    outs = {s: root / s.removesuffix(".py") for s in scripts}
    procs = run_parallel([python_cmd(s, argv_for(s, videos, teacher_ckpt, outs[s])) for s in scripts])
    refs = {}
    for script, proc in zip(scripts, procs):
        ok(proc)
        out = outs[script]
        refs[script] = {
            "out": out,
            "final": model_digest(out / f"checkpoint-{EPOCHS - 1}.pth"),
            "first": model_digest(out / "checkpoint-0.pth"),
        }
    return refs


@pytest.fixture(scope="session")
def pico_ckpt(tmp_path_factory) -> Path:
    """A VideoMAE-format checkpoint of the pico preset (wrong architecture for --model_t nano)."""
    return videomae_checkpoint("pico", tmp_path_factory.mktemp("pico"))


@pytest.fixture(scope="session")
def garbage_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("garbage") / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint\n" * 40)
    return path
