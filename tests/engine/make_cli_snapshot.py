"""Writes tests/engine/data/cli_snapshot.json (read by test_cli_snapshot.py): every option of the three
training parsers, and what the reference's and our recipes' command lines parse to (where not the defaults).

    python tests/engine/make_cli_snapshot.py

Run it only when a flag is meant to change; the snapshot is what proves a refactor left the CLI alone.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.args import build_parser  # noqa: E402

OUT = Path(__file__).with_name("data") / "cli_snapshot.json"
MODES = ("pretrain", "distill", "finetune")
ENTRY = {
    "run_mae_pretraining.py": "pretrain",
    "run_mmkd_distill.py": "distill",
    "run_class_finetuning.py": "finetune",
}
FIXTURES = ROOT.parent / "shared" / "fixtures" / "reference_parity"


def _name(obj) -> str | None:
    if obj is None:
        return None
    return getattr(obj, "__name__", None) or type(obj).__name__


def describe(parser) -> dict:
    """Every action (help excluded) in order with its group, the groups in help order, the set_defaults."""
    group_of = {id(a): g.title for g in parser._action_groups for a in g._group_actions}
    actions = []
    for a in parser._actions:
        if a.dest == "help":
            continue
        actions.append(
            dict(
                options=list(a.option_strings), dest=a.dest, default=a.default, nargs=a.nargs, const=a.const,
                choices=list(a.choices) if a.choices is not None else None, type=_name(a.type),
                action=type(a).__name__, metavar=a.metavar, help=a.help, required=a.required,
                group=group_of.get(id(a)),
            )
        )  # fmt: skip
    groups = [g.title for g in parser._action_groups]
    return {
        "description": parser.description,
        "groups": groups,
        "actions": actions,
        "defaults": dict(parser._defaults),
    }


def changed(parser, argv: list[str]) -> dict:
    """The values that ``argv`` parses to, where they differ from those of no argument at all."""
    base, got = vars(parser.parse_args([])), vars(parser.parse_args(argv))
    assert set(base) == set(got)
    return {k: v for k, v in got.items() if v != base[k] or type(v) is not type(base[k])}


def reference_lines() -> list[tuple[str, str, list[str]]]:
    """(source, job, argv) of the 30 public scripts of tests/test_reference_scripts.py, placeholders kept."""
    from tests.test_reference_scripts import SCRIPTS

    return [
        (src, job, ["--local_rank=0", *shlex.split(flags)]) for src, (job, flags) in sorted(SCRIPTS.items())
    ]


def recipe_lines() -> list[tuple[str, str, list[str]]]:
    """(recipe, job, argv) our scripts/ recipes hand to the entry point (recorded by a stub torchrun)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bin").mkdir()
        for name in ("torchrun", "srun", "python"):
            stub = tmp / "bin" / name
            stub.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@" > "$STUB_LOG"\n')
            stub.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG")}
        env.update(PATH=f"{tmp / 'bin'}:/usr/bin:/bin", STUB_LOG=str(tmp / "argv.txt"), DATA_PATH="/data",
                   OUTPUT_DIR="/out", TEACHER="/teacher.pth", CHECKPOINT="/student.pth")  # fmt: skip
        for path in sorted(
            p for d in ("distill", "finetune", "pretrain") for p in (ROOT / "scripts" / d).glob("[!_]*.sh")
        ):
            done = subprocess.run(
                ["bash", str(path)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=20
            )
            assert done.returncode == 0, (path, done.stderr)
            argv = (tmp / "argv.txt").read_text().splitlines()
            entry = next(a for a in argv if Path(a).name in ENTRY)
            rows.append((str(path.relative_to(ROOT)), ENTRY[Path(entry).name], argv[argv.index(entry) + 1 :]))
    return rows


def fixture_lines() -> list[tuple[str, str, list[str]]]:
    rows = []
    for path in sorted(FIXTURES.glob("train_*.pt")):
        cfg = torch.load(path, weights_only=True)["config"]
        rows.append((path.name, cfg["kind"], list(cfg["argv"])))
    return rows


def main() -> None:
    parsers = {mode: build_parser(mode) for mode in MODES}
    lines = []
    for source, job, argv in [*reference_lines(), *recipe_lines(), *fixture_lines()]:
        lines.append(dict(source=source, job=job, argv=argv, changed=changed(parsers[job], argv)))
    snapshot = {"parsers": {m: describe(p) for m, p in parsers.items()}, "lines": lines}
    OUT.parent.mkdir(exist_ok=True)
    rows = ",\n".join(json.dumps(row) for row in lines)  # a command line per line: diffs stay readable
    OUT.write_text(
        json.dumps(snapshot["parsers"], indent=1).join(['{"parsers": ', f',\n"lines": [\n{rows}\n]}}\n'])
    )
    print(
        f"{OUT}: {sum(len(p['actions']) for p in snapshot['parsers'].values())} options, {len(lines)} command lines"
    )


if __name__ == "__main__":
    main()
