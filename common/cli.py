"""One-line command-line errors for every tool: a bad value is one line on stderr, never a traceback.

The training entry points add their own expected failures and the distributed teardown on top
(:func:`engine.cli.run`); the data tools (``python -m datasets.prepare`` / ``check`` / ``transcode``)
and ``python -m models.zoo`` run through :func:`run_tool` directly, without importing the engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(ValueError):
    """A bad command-line value; the message names the option and what to do."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr with exit code 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def one_line(err: BaseException) -> str:
    """The error's own message on one line (DataLoader workers wrap it in their traceback)."""
    text = str(err).strip()
    if "Original Traceback" in text:  # torch.utils.data re-raise: the original message is the last line
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def program() -> str:
    """The running script's name, as its error lines start."""
    return sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "mmkd"


def run_tool(
    main: Callable[[list[str] | None], object],
    argv: list[str] | None = None,
    errors: tuple[type[BaseException], ...] = (),
    *,
    stops: tuple[type[BaseException], int] | None = None,
    say: Callable[[str], None] | None = None,
    interrupted: str = "interrupted",
) -> int:
    """Calls ``main(argv)`` and returns its exit code: a `UsageError` is one line and 2, one of
    ``errors`` one line and 1, ``stops = (type, code)`` its own message and ``code`` (a planned stop,
    not an error), Ctrl-C ``interrupted`` and 130; 0 otherwise. ``say`` writes a line (default:
    stderr, prefixed with the program's name)."""
    say = say or _say
    stop_type, stop_code = stops or ((), 0)
    try:
        main(argv)
    except UsageError as err:
        say(f"error: {one_line(err)}")
        return EXIT_USAGE
    except errors as err:
        say(f"error: {one_line(err)}")
        return EXIT_FAILURE
    except stop_type as err:
        say(one_line(err))
        return stop_code
    except KeyboardInterrupt:
        say(interrupted)
        return 130
    return 0


def _say(message: str) -> None:
    sys.stderr.write(f"{program()}: {message}\n")
    sys.stderr.flush()
