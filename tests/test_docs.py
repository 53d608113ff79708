"""The README's commands exist, its Python example runs, and every documented flag is accepted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from datasets import check, prepare, transcode
from engine.args import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _flags_of(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def test_readme_opens_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["bash scripts/quickstart.sh", "bash scripts/run_tests.sh"]
    for cmd in commands:
        assert (ROOT / cmd.split()[1]).is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/run_tests.sh" in ci


def test_documented_flags_are_accepted():
    known = set()
    for mode in ("pretrain", "distill", "finetune"):
        known |= _flags_of(build_parser(mode))
    scripts = (
        "run_vis.py",
        "scripts/quickstart.py",
        "datasets/synthetic.py",  # the quickstart passes its flags from a table
        "run_linear_probe.py",
        "engine/feature_args.py",
        "models/convert.py",
        "models/zoo.py",
        "run_inference.py",
        "run_videomae_vis.py",
        "engine/visualize.py",
        "benchmarks/bench_data.py",
        "benchmarks/bench_model.py",
        "benchmarks/bench_compare.py",
        "benchmarks/bench_quickstart.py",
    )
    for script in scripts:
        known |= set(re.findall(r'"(--[A-Za-z][A-Za-z0-9_]*)"', (ROOT / script).read_text()))
    for tool in (prepare, check, transcode):
        known |= _flags_of(tool.build_parser())
    torchrun = {"--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--max-restarts", "--help"}
    torchrun |= {"--signal", "--requeue"}  # sbatch / srun options, in the slurm section
    torchrun |= set(re.findall(r'Flag\("\w+", \("(--\w+)",\)', README))  # the example objective's own flags
    documented = set(re.findall(r"(?<![\w-])(--[A-Za-z][A-Za-z0-9_-]*[A-Za-z0-9_])", README)) - torchrun
    missing = sorted(f for f in documented if f not in known)
    assert not missing, f"README documents flags no entry point accepts: {missing}"


def test_readme_scripts_exist():
    for path in set(re.findall(r"(scripts/[\w/]+\.sh)", README)):
        assert (ROOT / path).is_file(), path
    for pattern in re.findall(r"(scripts/\w+/[\w{}.,_]+\.sh)", README):
        if "{" in pattern:
            assert list((ROOT).glob(re.sub(r"\{[^}]+\}", "*", pattern))), pattern


def test_readme_data_tool_commands_parse():
    """Every ``python -m datasets.<tool> ...`` line of the README is accepted by that tool's parser."""
    tools = {"prepare": prepare, "check": check, "transcode": transcode}
    commands = re.findall(r"^python -m datasets\.(\w+) (.+)$", README, re.M)
    assert {name for name, _ in commands} == set(tools)
    for name, rest in commands:
        tools[name].build_parser().parse_args(rest.split("#")[0].split())


def test_readme_python_example_runs():
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (our own documentation)
    assert set(namespace["terms"]) == {"loss", "hint", "relation", "global", "local"}
    assert namespace["student"].encoder.blocks[0].attn.qkv.weight.grad is not None


def test_readme_objective_example_registers_a_term(monkeypatch):
    """The "How to add an objective" block, run as written, adds its flag and its term."""
    from engine.args import build_parser
    from models.distill import MMKDConfig, registry

    section = README.split("### How to add an objective", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setattr(registry, "OBJECTIVES", dict(registry.OBJECTIVES))  # undone after the test
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (our own documentation)
    assert "cos" in registry.OBJECTIVES and "--w_cos" in build_parser("distill").format_help()
    assert MMKDConfig(mode="hybrid", w_cos=0.5).w_cos == 0.5


@pytest.mark.parametrize("doc", ["INSTALL.md", "MODEL_ZOO.md", "LICENSE"])
def test_docs_exist(doc):
    assert (ROOT / doc).stat().st_size > 500


def test_the_how_to_sections_name_files_that_exist():
    """Every path the "How to add an objective / a task" sections point at is in the tree."""
    sections = re.findall(r"^### How to add an? (?:objective|task)\n(.*?)(?=^#)", README, re.S | re.M)
    assert len(sections) == 2
    paths = set(re.findall(r"`((?:[\w/]+/)?[\w]+\.py)`", "".join(sections)))
    assert {"engine/tasks.py", "tests/engine/test_objective_registry.py", "run_mae_pretraining.py"} <= paths
    for path in paths:
        found = (ROOT / path).is_file() or (ROOT / "models" / "distill" / path).is_file()
        assert found, f"README names {path}, which is not in the tree"
