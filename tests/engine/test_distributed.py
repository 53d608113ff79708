"""engine.distributed: single-process paths, slurm parsing and a 2-process gloo group."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import engine.distributed as dist_mod
from engine.distributed import (
    Heartbeat,
    all_gather_object,
    all_reduce_mean,
    barrier,
    cleanup,
    expand_slurm_nodelist,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    setup_for_distributed,
)

_LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_NODELIST",
    "SLURM_JOB_NODELIST",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = dict(os.environ)  # init_distributed writes launcher variables that monkeypatch cannot undo
    for var in _LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)
    setup_for_distributed(True)  # tests may silence print


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("nodeA", ["nodeA"]),
        ("node[01-04],node10", ["node01", "node02", "node03", "node04", "node10"]),
        ("gpu[1,3-4]", ["gpu1", "gpu3", "gpu4"]),
        ("a1,b[7-8]", ["a1", "b7", "b8"]),
        ("rack[1-2]-n[09-10]", ["rack1-n09", "rack1-n10", "rack2-n09", "rack2-n10"]),
        ("host-1.cluster", ["host-1.cluster"]),
    ],
)
def test_expand_slurm_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert expand_slurm_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["", "node[01-02"])
def test_expand_slurm_nodelist_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError, match="SLURM_NODELIST"):
        expand_slurm_nodelist(bad)


def test_single_process_without_launcher() -> None:
    env = init_distributed(device="cpu")
    assert (env.rank, env.world_size, env.local_rank, env.distributed) == (0, 1, 0, False)
    assert env.device == torch.device("cpu") and env.backend is None and env.is_main
    assert get_rank() == 0 and get_world_size() == 1 and is_main_process()
    assert all_reduce_mean(2.5) == 2.5
    t = torch.tensor([1.0, 3.0])
    assert all_reduce_mean(t) is t
    assert all_gather_object({"a": 1}) == [{"a": 1}]
    barrier()
    cleanup()


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU fallback")
def test_cuda_request_falls_back_to_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    env = init_distributed(device="cuda")
    assert env.device.type == "cpu"
    assert "CUDA requested but not available" in capsys.readouterr().out


def test_slurm_env_sets_rendezvous(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(dist_mod.dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_NODELIST", "node[03-04],node10")
    env = init_distributed(device="cpu")
    assert (env.rank, env.world_size, env.local_rank, env.backend) == (5, 8, 1, "gloo")
    assert env.distributed and not env.is_main
    assert calls == [
        {
            "backend": "gloo",
            "init_method": "env://",
            "world_size": 8,
            "rank": 5,
            "timeout": timedelta(seconds=600),
        }
    ]
    assert os.environ["MASTER_ADDR"] == "node03"
    assert os.environ["MASTER_PORT"] == "29500"
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "1")


def test_torchrun_env_keeps_given_master(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(dist_mod.dist, "init_process_group", lambda **kw: calls.append(kw))
    for var, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "SLURM_PROCID": "7"}.items():
        monkeypatch.setenv(var, value)
    env = init_distributed(device="cpu", dist_url="tcp://10.0.0.1:1234")
    assert (env.rank, env.world_size) == (0, 2)  # torchrun variables win over slurm
    assert calls[0]["init_method"] == "tcp://10.0.0.1:1234"


def test_setup_for_distributed_silences_non_master(capsys: pytest.CaptureFixture[str]) -> None:
    setup_for_distributed(False)
    print("hidden")
    print("shown", force=True)
    setup_for_distributed(False)  # idempotent: no nested wrappers
    setup_for_distributed(True)
    print("back")
    assert capsys.readouterr().out == "shown\nback\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    env = init_distributed(device="cpu")
    try:
        assert env.distributed and env.backend == "gloo" and get_world_size() == world_size
        t = torch.tensor([float(rank), 10.0 * rank])
        mean = all_reduce_mean(t)
        assert torch.allclose(mean, torch.tensor([0.5, 5.0]))
        assert torch.equal(t, torch.tensor([rank, 10.0 * rank]))  # input untouched
        assert all_reduce_mean(float(rank + 1)) == pytest.approx(1.5)
        assert all_gather_object({"rank": rank}) == [{"rank": 0}, {"rank": 1}]
        barrier()
    finally:
        cleanup()
    assert not dist.is_initialized()


def test_two_process_gloo_all_reduce_mean() -> None:
    mp.spawn(_worker, args=(2, _free_port()), nprocs=2, join=True)


def test_heartbeat_names_the_rank_that_went_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 beat once and went quiet: rank 0's watcher names it after --dist_timeout and posts the
    verdict in the store for every other rank (the real processes: tests/faults/test_faults_shape.py)."""
    reports = []
    monkeypatch.setattr(
        Heartbeat, "_report", lambda self, verdict: (reports.append(verdict), self._stop.set())
    )
    store = dist.HashStore()
    beat = Heartbeat(store, rank=0, world_size=2, timeout=1.0)
    store.set("beat/1", "0")
    beat._thread.start()
    beat._thread.join(timeout=20)
    assert reports and reports[0].startswith("rank 1 of 2 has not answered for "), reports
    assert "--dist_timeout 1" in reports[0] and store.get("verdict").decode() == reports[0]
    assert int(store.get("beat/0")) >= 2  # its own counter moved meanwhile
