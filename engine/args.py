"""The command line of the three training entry points, generated from their typed configs.

Every flag of the reference (VideoMAE / MaskAgain) scripts is accepted with the same meaning, so
the paper's shell scripts run unchanged; cryptic names also get a self-explaining alias. The options
are the fields of `engine.config` (one config per task, its defaults in one place); `parse` reads
them into the task's config and checks it once (`engine.config.validate`), raising `UsageError`
with one line naming the option and the fix.
"""

from __future__ import annotations

import argparse

from common.cli import OneLineParser, UsageError
from engine.config import DATA_SETS, PRECISIONS, TASKS, TaskConfig
from engine.config.validate import check_decoder_flag, resolve_precision, validate, writable_dir

__all__ = [
    "DATA_SETS",
    "PRECISIONS",
    "OneLineParser",
    "UsageError",
    "build_parser",
    "check_decoder_flag",
    "parse",
    "resolve_precision",
    "validate",
]

_writable_dir = writable_dir  # the side tools' name (engine.feature_args, engine.visualize)


def build_parser(mode: str) -> argparse.ArgumentParser:
    """mode: 'pretrain' | 'distill' | 'finetune'; generated from the task's typed config."""
    return TASKS[mode].build_parser()


def parse(mode: str, argv: list[str] | None = None) -> TaskConfig:
    """The task's checked config from a command line (``sys.argv[1:]`` when None)."""
    return validate(TASKS[mode].from_namespace(build_parser(mode).parse_args(argv)))
