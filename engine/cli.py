"""Runs an entry point so that every expected failure ends in one line on stderr, not a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from engine import preempt
from engine.args import UsageError
from engine.preempt import EXIT_PREEMPTED, Preempted

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _expected_errors() -> tuple[type[BaseException], ...]:
    from torch.distributed import DistError

    from datasets import AnnotationError, BadDataError
    from engine.loop import NonFiniteLossError, TooManyBadFilesError
    from models.checkpoint import CheckpointError

    return (
        CheckpointError,
        DistError,  # a collective that timed out (--dist_timeout) or lost its peer, where no rank was named
        NonFiniteLossError,
        TooManyBadFilesError,
        BadDataError,
        AnnotationError,
    )


def one_line(err: BaseException) -> str:
    """The error's own message on one line (DataLoader workers wrap it in their traceback)."""
    text = str(err).strip()
    if "Original Traceback" in text:  # torch.utils.data re-raise: the original message is the last line
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Calls ``main(argv)``; maps known failures to an exit code and a one-line message.

    A process that joined a process group ends here with ``os._exit`` once the group is torn down
    and the output flushed: DeepSpeed / gloo leave C++ threads behind whose static destruction
    sometimes aborts a finished run ("terminate called without an active exception", SIGABRT).
    Checkpoints, log.txt and TensorBoard files are closed by then.
    """
    from engine.distributed import cleanup, is_distributed

    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "mmkd"
    try:
        code = _call(main, argv, prog)
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


def _call(main: Callable[[list[str] | None], object], argv: list[str] | None, prog: str) -> int:
    try:
        main(argv)
    except UsageError as err:
        _say(prog, f"error: {one_line(err)}")
        return EXIT_USAGE
    except _expected_errors() as err:
        _say(prog, f"error: {one_line(err)}")
        return EXIT_FAILURE
    except Preempted as err:
        _say(prog, one_line(err))
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        _say(prog, "interrupted; resume with the same command (--auto_resume is on by default)")
        return 130
    return 0
