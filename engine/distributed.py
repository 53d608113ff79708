"""Process-group set-up for torchrun, slurm (``srun``) and single-process runs.

:func:`init_distributed` reads the launcher's environment, picks the device and backend and
returns a :class:`DistEnv`. The helpers below it work whether or not a process group exists,
so the same training code runs on a laptop, one GPU or many nodes.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from engine.args import UsageError

__all__ = [
    "DistEnv",
    "Heartbeat",
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
DEFAULT_TIMEOUT_S = (
    600.0  # --dist_timeout: NCCL's own default; gloo's (30 min) leaves a hung job idle too long
)


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


def init_distributed(
    device: str = "cuda", dist_url: str = "env://", timeout: float = DEFAULT_TIMEOUT_S
) -> DistEnv:
    """Initialise the process group from the launcher's environment.

    torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``) and slurm
    (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODELIST`` -> first host as
    ``MASTER_ADDR``, port 29500 unless set) are recognised; without either, or with a world
    size of 1, this is a single process and no group is created. The backend is nccl on CUDA
    and gloo otherwise; "cuda" without a GPU falls back to the CPU with a warning.

    ``timeout`` (seconds, ``--dist_timeout``) bounds every collective, and a :class:`Heartbeat`
    stops all ranks with one line naming a rank that died or stopped answering.
    """
    launched = _launcher_env()
    rank, world_size, local_rank = launched if launched is not None else (0, 1, 0)
    dev = _pick_device(device, local_rank)
    if world_size <= 1:
        setup_for_distributed(True)
        return DistEnv(rank, 1, local_rank, dev, distributed=False, backend=None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        init_method=dist_url,
        world_size=world_size,
        rank=rank,
        timeout=timedelta(seconds=timeout),
    )
    setup_for_distributed(rank == 0)
    if dist.is_initialized():
        Heartbeat.start(rank, world_size, timeout)
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
    """Stop the heartbeat and destroy the process group if there is one."""
    Heartbeat.stop()
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


class Heartbeat:
    """Names a rank that died (SIGKILL, OOM killer, a lost node) or stopped answering (SIGSTOP, a hung
    node) and ends every other rank within about ``timeout`` seconds, on any launcher.

    Each rank's daemon thread writes a counter to the process group's rendezvous store every
    ``beat`` seconds and reads its ring neighbour's (rank - 1): one key read per rank and beat
    however large the job. When the neighbour's counter has not moved for ``timeout`` seconds the
    thread writes a verdict to the store, which every rank's thread reads at its next beat, and
    each rank prints it as one line and exits with code 1. A collective that fails first (gloo sees
    a dead peer's closed socket at once) goes through :meth:`explain`, which finds the silent ranks in
    two beats. Silence is timed on each rank's own clock (node clocks may disagree), and a rank
    busy for a long time (a large checkpoint save, a slow validation) still beats: the thread runs
    beside the main one.
    """

    _active: Heartbeat | None = None
    _report_lock = threading.Lock()

    def __init__(self, store, rank: int, world_size: int, timeout: float) -> None:
        self.store, self.rank, self.world_size, self.timeout = store, rank, world_size, timeout
        self.beat = min(10.0, max(0.5, timeout / 10))
        self._stop = threading.Event()
        self._count = 0
        self.store.set(self._key(rank), "0")
        self._thread = threading.Thread(target=self._run, name="mmkd-heartbeat", daemon=True)

    @classmethod
    def start(cls, rank: int, world_size: int, timeout: float) -> None:
        """Beats for this process's group (the entry points' set-up calls this via `init_distributed`)."""
        cls.stop()
        store = dist.PrefixStore(
            f"mmkd_heartbeat/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", _store()
        )
        cls._active = cls(store, rank, world_size, timeout)
        cls._active._thread.start()

    @classmethod
    def stop(cls) -> None:
        if cls._active is not None:
            cls._active._stop.set()
        cls._active = None

    @staticmethod
    def _key(rank: int) -> str:
        return f"beat/{rank}"

    def _run(self) -> None:
        watched = (self.rank - 1) % self.world_size
        last_seen, last_change, last_answer = None, time.monotonic(), time.monotonic()
        while not self._stop.wait(self.beat):
            now = time.monotonic()
            try:
                self._count += 1
                self.store.set(self._key(self.rank), str(self._count))
                if self.store.check(["verdict"]):
                    self._report(self.store.get("verdict").decode())
                seen = self.store.get(self._key(watched))
                last_answer = now
            except Exception:  # noqa: BLE001 - a store that stopped answering: its host (rank 0) is gone
                if now - last_answer > self.timeout:
                    self._report(
                        f"the rendezvous store (MASTER_ADDR, hosted by rank 0 or the launcher) has not answered for "
                        f"{now - last_answer:.0f} s: rank 0 or its node is gone"
                    )
                continue
            if seen != last_seen:
                last_seen, last_change = seen, now
            elif now - last_change > self.timeout and not self._stop.is_set():
                self._convict([watched], now - last_change)

    def _convict(self, ranks: list[int], silent_for: float) -> None:
        names = ", ".join(map(str, ranks))
        verdict = (
            f"rank{'s' if len(ranks) > 1 else ''} {names} of {self.world_size} ha{'ve' if len(ranks) > 1 else 's'} not "
            f"answered for {silent_for:.0f} s (died, stopped or its node hangs; --dist_timeout {self.timeout:g})"
        )
        with contextlib.suppress(Exception):  # the others also stop by their own timeout
            self.store.set("verdict", verdict)
        self._report(verdict)

    def silent_ranks(self) -> list[int]:
        """Ranks whose counter does not move for two beats (a one-off read of every rank's key)."""
        keys = [self._key(r) for r in range(self.world_size)]
        before = self.store.multi_get(keys)
        time.sleep(2 * self.beat + 0.1)
        after = self.store.multi_get(keys)
        return [r for r, (a, b) in enumerate(zip(before, after)) if a == b and r != self.rank]

    def _report(self, verdict: str) -> None:
        """One line on stderr, then the process ends (exit 1); a second reporter waits for the exit."""
        self._report_lock.acquire()
        prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "mmkd"
        sys.stderr.write(
            f"{prog} [rank {self.rank}]: error: {verdict}; stopping this rank; relaunch the same command "
            "to resume from the newest checkpoint\n"
        )
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)

    @classmethod
    @contextlib.contextmanager
    def explain_failures(cls):
        """Around code whose collectives may fail because a peer is gone: names the silent rank(s)
        in one line and exits instead of raising the back-end's error (re-raised when every rank beats)."""
        try:
            yield
        except (RuntimeError, dist.DistError) as err:
            active = cls._active
            if active is None or not _is_comm_error(err):
                raise
            try:
                if active.store.check(["verdict"]):  # another rank named the silent one already
                    active._report(active.store.get("verdict").decode())
                silent = active.silent_ranks()
            except Exception:  # noqa: BLE001 - the store is gone with its host
                silent = [0]
            if not silent:
                raise
            active._convict(silent, 2 * active.beat)


def _is_comm_error(err: BaseException) -> bool:
    if isinstance(err, dist.DistError):
        return True
    text = str(err)
    return any(word in text for word in ("gloo", "Gloo", "NCCL", "Connection", "Timed out", "timed out"))


def _store():
    """The default process group's rendezvous store (a client of MASTER_ADDR:MASTER_PORT)."""
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()
