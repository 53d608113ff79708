"""Runs an entry point so that every expected failure ends in one line on stderr, not a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import partial

from common.cli import EXIT_FAILURE, EXIT_USAGE, program, run_tool
from engine import preempt
from engine.preempt import EXIT_PREEMPTED, Preempted

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "run"]


def _expected_errors() -> tuple[type[BaseException], ...]:
    from torch.distributed import DistError

    from datasets import AnnotationError, BadDataError
    from engine.loop import NonFiniteLossError, TooManyBadFilesError
    from models.weights import CheckpointError

    return (
        CheckpointError,
        DistError,  # a collective that timed out (--dist_timeout) or lost its peer, where no rank was named
        NonFiniteLossError,
        TooManyBadFilesError,
        BadDataError,
        AnnotationError,
    )


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Calls ``main(argv)``; maps known failures to an exit code and a one-line message.

    A process that joined a process group ends here with ``os._exit`` once the group is torn down
    and the output flushed: DeepSpeed / gloo leave C++ threads behind whose static destruction
    sometimes aborts a finished run ("terminate called without an active exception", SIGABRT).
    Checkpoints, log.txt and TensorBoard files are closed by then.
    """
    from engine.distributed import cleanup, is_distributed

    prog = program()
    try:
        code = run_tool(
            main, argv, _expected_errors(), stops=(Preempted, EXIT_PREEMPTED), say=partial(_say, prog),
            interrupted="interrupted; resume with the same command (--auto_resume is on by default)",
        )  # fmt: skip
    finally:
        distributed = is_distributed()
        cleanup()
        preempt.uninstall()
    if distributed:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _say(prog: str, message: str) -> None:
    """One line on stderr from *every* rank (``print`` is silenced on ranks > 0), naming the rank."""
    from engine.distributed import get_rank, get_world_size

    where = f" [rank {get_rank()}]" if get_world_size() > 1 else ""
    sys.stderr.write(f"{prog}{where}: {message}\n")
    sys.stderr.flush()
