"""Stop signals of clusters: a requested stop becomes a checkpoint and a clean exit.

SLURM warns a job before its time limit or a preemption with a signal (``#SBATCH
--signal=B:USR1@120`` sends SIGUSR1 two minutes ahead); schedulers and torchrun send SIGTERM. The
handler only records the signal. The trainer asks :meth:`StopRequest.agreed` at step boundaries (a
collective, so every rank stops after the same step and no rank saves alone), writes a checkpoint
and raises :class:`Preempted`; `engine.cli.run` turns that into exit code :data:`EXIT_PREEMPTED`.
A second signal while saving changes nothing: the save is atomic and the flag is already set.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading

import torch
import torch.distributed as dist

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later"; relaunching the same command resumes
SIGNALS = {"USR1": signal.SIGUSR1, "TERM": signal.SIGTERM, "USR2": signal.SIGUSR2, "INT": signal.SIGINT}


class Preempted(Exception):
    """Raised after the stop checkpoint is written; the message says how to continue."""


def parse_signals(spec: str) -> list[signal.Signals]:
    """``"USR1,TERM"`` -> [SIGUSR1, SIGTERM]; ``"none"`` -> []. Raises ValueError on unknown names."""
    if spec.strip().lower() == "none":
        return []
    names = [s.strip().upper().removeprefix("SIG") for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in SIGNALS]
    if unknown or not names:
        raise ValueError(
            f"unknown signal(s) {unknown or spec!r}; use names from {', '.join(SIGNALS)} or 'none'"
        )
    return [SIGNALS[n] for n in names]


class StopRequest:
    """Records the stop signals received by this process (handlers installed in the main thread)."""

    def __init__(self, signals: list[signal.Signals]):
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed there; nothing is caught
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "none"

    def local(self) -> bool:
        """This process received a stop signal (no communication)."""
        return self.received is not None

    def agreed(self) -> bool:
        """Some rank received a stop signal (a collective: every rank must call it at the same point)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.local()
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        flag = torch.tensor([1 if self.local() else 0], device=device or "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.received is None:
            self.received = signal.SIGUSR1  # another rank's signal; name it for the message
        return bool(flag.item())

    def close(self) -> None:
        """Puts the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


_ACTIVE: StopRequest | None = None
_REQUEUE = False
_REQUEUED = False  # asked once per process, however many places stop


def install(spec: str = "USR1,TERM", requeue: bool = False) -> StopRequest:
    """Catch ``spec``'s signals for the rest of this process (the entry points' set-up calls this)."""
    global _ACTIVE, _REQUEUE
    if _ACTIVE is not None:
        _ACTIVE.close()
    _ACTIVE, _REQUEUE = StopRequest(parse_signals(spec)), requeue
    return _ACTIVE


def uninstall() -> None:
    """Put the previous signal handlers back (the end of `engine.cli.run`)."""
    global _ACTIVE
    if _ACTIVE is not None:
        _ACTIVE.close()
    _ACTIVE = None


def current() -> StopRequest:
    """This process's stop request (one that never fires when nothing was installed)."""
    return _ACTIVE if _ACTIVE is not None else StopRequest([])


def stop_requested() -> bool:
    """This process received a stop signal (local check: for loops without per-batch collectives)."""
    return _ACTIVE is not None and _ACTIVE.local()


def leave(what: str) -> None:
    """Raise :class:`Preempted` saying ``what`` was kept; first ask SLURM to requeue (``--requeue``,
    rank 0 only)."""
    global _REQUEUED
    note = ""
    if _REQUEUE and not _REQUEUED and int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
        _REQUEUED = True
        note = f"; {requeue_slurm_job()}"
    raise Preempted(
        f"stopped by SIG{current().name.removeprefix('SIG')}: {what}{note}; relaunch the same command to resume "
        f"(exit code {EXIT_PREEMPTED})"
    )


def requeue_slurm_job() -> str:
    """Asks SLURM to requeue this job (``scontrol requeue $SLURM_JOB_ID``); returns what happened."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return "not a SLURM job (SLURM_JOB_ID unset): no requeue"
    if shutil.which("scontrol") is None:
        return "scontrol not found: no requeue"
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return f"scontrol requeue {job} failed: {(proc.stderr or proc.stdout).strip()}"
    return f"SLURM job {job} requeued"
