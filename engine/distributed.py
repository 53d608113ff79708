"""Process-group set-up for torchrun, slurm (``srun``) and single-process runs.

:func:`init_distributed` reads the launcher's environment, picks the device and backend and
returns a :class:`DistEnv`. The helpers below it work whether or not a process group exists,
so the same training code runs on a laptop, one GPU or many nodes.
"""

from __future__ import annotations

import builtins
import itertools
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from engine.args import UsageError

__all__ = [
    "DistEnv",
    "all_gather_object",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup",
    "expand_slurm_nodelist",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "setup_for_distributed",
]

DEFAULT_MASTER_PORT = "29500"


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    """Global rank, 0 .. world_size-1."""
    world_size: int
    """Number of processes in the job."""
    local_rank: int
    """Rank on this node; also the CUDA device index."""
    device: torch.device
    """Device this process computes on."""
    distributed: bool
    """True when a process group was initialised (world_size > 1)."""
    backend: str | None
    """``"nccl"`` / ``"gloo"``, or None without a process group."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0


def _expand_item(item: str) -> list[str]:
    # One host expression such as "rack[1-2]-gpu[01,03]": expand each bracket group and
    # take the product, keeping zero-padding ("01-04" -> 01, 02, 03, 04).
    parts: list[list[str]] = []
    for literal, group in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", item):
        if literal:
            parts.append([literal])
        if group:
            choices = []
            for rng in group.split(","):
                lo, _, hi = rng.partition("-")
                if hi:
                    choices += [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
                else:
                    choices.append(lo)
            parts.append(choices)
    return ["".join(p) for p in itertools.product(*parts)]


def expand_slurm_nodelist(nodelist: str) -> list[str]:
    """Host names of a slurm node list, e.g. ``"node[01-02],gpu7"`` -> ``["node01", "node02", "gpu7"]``.

    Raises:
        ValueError: empty or unbalanced list.
    """
    if not nodelist.strip() or nodelist.count("[") != nodelist.count("]"):
        raise ValueError(f"cannot parse SLURM_NODELIST {nodelist!r}")
    # Split on commas outside brackets only.
    items = re.findall(r"(?:[^,\[]|\[[^\]]*\])+", nodelist.strip())
    return [host for item in items for host in _expand_item(item)]


def _launcher_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun or slurm variables, else None.

    For a multi-task slurm job this also exports MASTER_ADDR/PORT, RANK, WORLD_SIZE and
    LOCAL_RANK so that the ``env://`` rendezvous works as under torchrun.
    """
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local_rank = int(env.get("SLURM_LOCALID", 0))
        if world > 1:
            # env:// rendezvous needs these; the first node of the job hosts rank 0.
            if "MASTER_ADDR" not in env:
                nodelist = env.get("SLURM_NODELIST") or env.get("SLURM_JOB_NODELIST")
                if not nodelist:
                    raise RuntimeError("slurm job without SLURM_NODELIST: set MASTER_ADDR to rank 0's host")
                env["MASTER_ADDR"] = expand_slurm_nodelist(nodelist)[0]
            env.setdefault("MASTER_PORT", DEFAULT_MASTER_PORT)
            env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank))
        return rank, world, local_rank
    return None


def _pick_device(requested: str, local_rank: int) -> torch.device:
    kind = torch.device(requested).type
    if kind == "cuda" and not torch.cuda.is_available():
        print("WARNING: CUDA requested but not available; running on the CPU.")
        kind = "cpu"
    if kind == "cuda":
        device = torch.device("cuda", _cuda_index(local_rank, torch.cuda.device_count()))
        torch.cuda.set_device(device)
        return device
    return torch.device(kind)


def _cuda_index(local_rank: int, visible: int) -> int:
    """The GPU of this process: ``LOCAL_RANK`` when the node's GPUs are all visible, else the one
    the launcher bound to it (slurm ``--gpus-per-task=1`` leaves each task exactly one: ``cuda:0``)."""
    if local_rank < visible:
        return local_rank
    if visible == 1:
        return 0
    raise UsageError(
        f"LOCAL_RANK {local_rank} but only {visible} GPUs are visible to this process; "
        "bind one GPU per task (slurm --gpus-per-task=1) or expose all of the node's GPUs"
    )


def init_distributed(device: str = "cuda", dist_url: str = "env://") -> DistEnv:
    """Initialise the process group from the launcher's environment.

    torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``) and slurm
    (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODELIST`` -> first host as
    ``MASTER_ADDR``, port 29500 unless set) are recognised; without either, or with a world
    size of 1, this is a single process and no group is created. The backend is nccl on CUDA
    and gloo otherwise; "cuda" without a GPU falls back to the CPU with a warning.
    """
    launched = _launcher_env()
    rank, world_size, local_rank = launched if launched is not None else (0, 1, 0)
    dev = _pick_device(device, local_rank)
    if world_size <= 1:
        setup_for_distributed(True)
        return DistEnv(rank, 1, local_rank, dev, distributed=False, backend=None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size, rank=rank)
    setup_for_distributed(rank == 0)
    return DistEnv(rank, world_size, local_rank, dev, distributed=True, backend=backend)


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 without a process group)."""
    return dist.get_rank() if _initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if _initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in single-process runs)."""
    return get_rank() == 0


def _comm_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo moves CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for all ranks (no-op without a process group)."""
    if not _initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """Mean of ``value`` over all ranks; a float stays a float, a tensor is not modified in place."""
    if not _initialized() or get_world_size() == 1:
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().to(_comm_device(), copy=True)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return (t / get_world_size()).to(value.device)
    t = torch.tensor(float(value), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / get_world_size()).item()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj_of_rank0, obj_of_rank1, ...]`` (picklable objects; ``[obj]`` without a group)."""
    if not _initialized():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a group).

    For decisions that lead to collectives (which checkpoint to resume, whether to save a best
    copy): taken on one rank and shared, so no rank enters a collective the others skip.
    """
    if not _initialized():
        return obj
    box = [obj if get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def is_distributed() -> bool:
    """Whether this process has joined a process group (torchrun / slurm), whatever its size."""
    return _initialized()


def cleanup() -> None:
    """Destroy the process group if there is one."""
    if _initialized():
        dist.destroy_process_group()


_builtin_print = builtins.print


def setup_for_distributed(is_master: bool) -> None:
    """Silence ``print`` on non-master ranks; ``print(..., force=True)`` still prints.

    Idempotent: always wraps the original built-in ``print``.
    """

    def rank_aware_print(*args: Any, **kwargs: Any) -> None:
        force = kwargs.pop("force", False)
        if is_master or force:
            _builtin_print(*args, **kwargs)

    builtins.print = rank_aware_print
