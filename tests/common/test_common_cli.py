"""common.cli: one-line errors for every tool, and the data tools run without the engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from common.cli import EXIT_FAILURE, EXIT_USAGE, OneLineParser, UsageError, run_tool

ROOT = Path(__file__).resolve().parents[2]


class _Stop(Exception):
    pass


def _raises(err: BaseException):
    def main(argv):
        raise err

    return main


@pytest.mark.parametrize(
    ("err", "code", "line"),
    [
        (UsageError("--epochs must be positive"), EXIT_USAGE, "error: --epochs must be positive"),
        (OSError(13, "Permission denied"), EXIT_FAILURE, "error: [Errno 13] Permission denied"),
        (_Stop("stopped by SIGUSR1:\n  checkpoint written"), 75, "stopped by SIGUSR1: checkpoint written"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_run_tool_maps_each_failure_to_one_line_and_a_code(capsys, err, code, line) -> None:
    assert run_tool(_raises(err), [], errors=(OSError,), stops=(_Stop, 75)) == code
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith(f": {line}"), lines


def test_an_unexpected_error_is_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        run_tool(_raises(ZeroDivisionError("a bug")), [], errors=(OSError,))


def test_parser_errors_are_one_line(capsys) -> None:
    p = OneLineParser(prog="tool")
    p.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as stop:
        p.parse_args(["--n", "x"])
    assert stop.value.code == EXIT_USAGE
    assert capsys.readouterr().err == "tool: error: argument --n: invalid int value: 'x' (see --help)\n"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("datasets", {"engine"}), ("models", {"engine", "datasets"}),
                                                    ("common", {"engine", "datasets", "models"})])  # fmt: skip
def test_packages_import_only_below_them(package: str, forbidden: set[str]) -> None:
    """engine -> datasets -> models -> common: no package reaches up (no import cycle)."""
    offenders = {p.name: _imports(p) & forbidden for p in (ROOT / package).rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_data_tools_start_without_the_engine_or_the_models() -> None:
    code = (
        "import sys, datasets.check, datasets.prepare, datasets.transcode\n"
        "print(sorted(m for m in ('engine', 'models', 'timm') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
