"""Multi-node launch through the recipes' ``launch`` (scripts/slurm/launch.sh): two "nodes" of one process
each on 127.0.0.1 train exactly what one node of two processes does, with a fixed master (NNODES, NODE_RANK,
MASTER_ADDR, MASTER_PORT) and with a c10d rendezvous (RDZV_ENDPOINT, the ranks decided at start-up).

The recipe below is a real one cut down: it sources launch.sh with the environment a user sets (NNODES,
NODE_RANK, MASTER_ADDR, MASTER_PORT, GPUS) and hands the tiny fine-tuning flags of the engine tests to
``launch``; ``torchrun`` (first on PATH) is this interpreter's ``torch.distributed.run``, on gloo / CPU.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import CheckpointManager
from tests.engine.conftest import ROOT, finetune_argv

# what a caller's shell may hold that would change the launch (the test sets its own)
_LAUNCH_VARS = frozenset(
    "RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT LAUNCHER GPUS NNODES NODE_RANK RDZV_ENDPOINT RDZV_ID "
    "RDZV_BACKEND".split()
)

# log.txt keys that measure the machine, not the training
_TIMINGS = {"train_data_wait", "train_clips_per_s"}

_RECIPE = f"""#!/usr/bin/env bash
set -euo pipefail
DATASET="synthetic"
source {shlex.quote(str(ROOT / "scripts/slurm/launch.sh"))}
launch run_class_finetuning.py --data_path "$DATA_DIR" --output_dir "$OUT_DIR" "$@"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The cut-down recipe and the environment it runs in (a ``torchrun`` of this interpreter first on PATH)."""
    tmp_path = tmp_path_factory.mktemp("recipe")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    torchrun = bin_dir / "torchrun"
    torchrun.write_text(f'#!/bin/sh\nexec {sys.executable} -m torch.distributed.run "$@"\n')
    torchrun.chmod(0o755)
    script = tmp_path / "tiny_finetune.sh"
    script.write_text(_RECIPE)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS and not k.startswith("SLURM_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        OMP_NUM_THREADS="1",
        # torch 2.14's shared rendezvous store now and then aborts a CPU group at start-up (README)
        TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
    )
    return script, env


def _launch(script: Path, env: dict[str, str], nodes: list[dict[str, str]], argv: list[str]) -> list[tuple]:
    """Starts one recipe process per node side by side; returns (returncode, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(
            ["bash", str(script), *argv],
            env=env | node,
            cwd=script.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so that a hung node (torchrun and its worker) can be stopped as a group
        )
        for node in nodes
    ]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
        return [(p.returncode, *texts) for p, texts in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _run(recipe, videos: Path, out: Path, nodes: list[dict[str, str]]) -> tuple[dict, list[dict], str]:
    """Fine-tunes on ``nodes``; returns the last checkpoint's weights, log.txt's records and all stdout."""
    script, env = recipe
    env = env | {"DATA_PATH": str(videos), "OUTPUT_DIR": str(out)}
    argv = finetune_argv(videos, out, "--epochs", "2", "--deterministic", "--save_ckpt_freq", "1")
    results = _launch(script, env, nodes, argv)
    for node, (rc, stdout, stderr) in zip(nodes, results):
        assert rc == 0, f"node {node}: rc={rc}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    last = CheckpointManager(out).latest()
    assert last is not None, sorted(p.name for p in out.iterdir())
    weights = torch.load(last, map_location="cpu", weights_only=True)["model"]
    records = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    return weights, records, "".join(stdout for _, stdout, _ in results)


def _static(rank: int, port: str) -> dict[str, str]:
    return {
        "NNODES": "2",
        "NODE_RANK": str(rank),
        "GPUS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
    }


def _elastic(_rank: int, port: str) -> dict[str, str]:  # c10d decides the ranks: no NODE_RANK
    return {"NNODES": "2", "GPUS": "1", "RDZV_ENDPOINT": f"127.0.0.1:{port}", "RDZV_ID": "tiny"}


@pytest.fixture(scope="module")
def one_node(recipe, videos, tmp_path_factory) -> tuple[dict, list[dict], str]:
    """The reference: one node of two processes."""
    out = tmp_path_factory.mktemp("one_node") / "out"
    return _run(recipe, videos, out, [{"GPUS": "2", "MASTER_PORT": str(_free_port())}])


@pytest.mark.slow
@pytest.mark.parametrize("node_env", [_static, _elastic], ids=["master_addr", "rdzv_endpoint"])
def test_two_nodes_of_one_process_match_one_node_of_two(node_env, recipe, one_node, videos, tmp_path):
    port = str(_free_port())
    two_nodes = [node_env(rank, port) for rank in (0, 1)]
    w_nodes, log_nodes, stdout_nodes = _run(recipe, videos, tmp_path / "two_nodes", two_nodes)
    w_one, log_one, stdout_one = one_node

    for stdout in (stdout_nodes, stdout_one):  # both runs are one group of 2 ranks, not 2 runs of 1
        assert "--update_freq 1 x 2 processes)" in stdout
    assert w_nodes.keys() == w_one.keys()
    for name, value in w_one.items():
        torch.testing.assert_close(w_nodes[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert [r["epoch"] for r in log_nodes if "epoch" in r] == [0, 1]
    assert len(log_nodes) == len(log_one) and log_one[-1]["final_test"]["num_videos"] == 3
    for got, want in zip(log_nodes, log_one):
        assert got.keys() == want.keys()
        for key in want.keys() - _TIMINGS:  # losses, accuracies, lr, grad norm, the final multi-view test
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
