"""The generated CLI is the one of before: every option, alias, default, choice and help line, and the
values of every reference / recipe / fixture command line (snapshot: tests/engine/make_cli_snapshot.py,
written from the hand-written parsers before they were generated from the typed configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.args import build_parser
from tests.engine.make_cli_snapshot import changed, describe

SNAPSHOT = json.loads((Path(__file__).with_name("data") / "cli_snapshot.json").read_text())
MODES = ("pretrain", "distill", "finetune")
MODES_DIRS = ("pretrain", "distill", "finetune")  # scripts/<dir>/*.sh


def _plain(obj):
    return json.loads(json.dumps(obj))  # tuples as lists, as in the file


@pytest.mark.parametrize("mode", MODES)
def test_every_option_is_the_same(mode):
    old, new = SNAPSHOT["parsers"][mode], _plain(describe(build_parser(mode)))
    assert new["description"] == old["description"]
    assert new["groups"] == old["groups"]  # the help's sections, in order
    by_options = lambda actions: {tuple(a["options"]): a for a in actions}  # noqa: E731
    assert by_options(new["actions"]) == by_options(old["actions"])
    with_option = {a["dest"] for a in old["actions"]}
    assert {k: v for k, v in new["defaults"].items() if k not in with_option} == {
        k: v for k, v in old["defaults"].items() if k not in with_option
    }


@pytest.mark.parametrize("mode", MODES)
def test_parsed_names_are_the_same(mode):
    old = SNAPSHOT["parsers"][mode]
    assert set(vars(build_parser(mode).parse_args([]))) == {a["dest"] for a in old["actions"]} | set(
        old["defaults"]
    )


@pytest.mark.parametrize("line", SNAPSHOT["lines"], ids=lambda line: line["source"])
def test_command_line_parses_to_the_same_values(line):
    assert _plain(changed(build_parser(line["job"]), line["argv"])) == line["changed"]


def test_snapshot_covers_the_recipes_the_reference_scripts_and_the_fixtures():
    root = Path(__file__).resolve().parents[2]
    recipes = {str(p.relative_to(root)) for d in MODES_DIRS for p in (root / "scripts" / d).glob("[!_]*.sh")}
    sources = [line["source"] for line in SNAPSHOT["lines"]]
    assert sum(s.startswith(("VideoMAE:", "MaskAgain:")) for s in sources) == 30
    assert {
        s for s in sources if s.startswith("scripts/")
    } == recipes  # a new recipe: rerun make_cli_snapshot.py
    assert sum(s.startswith("train_") for s in sources) == 8
