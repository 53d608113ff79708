"""Test-only launcher: runs an entry point with one injected fault (SIGKILL, NaN, failing save).

    MMKD_FAULT=kill_after_step:4 python tests/faults/killer.py run_mmkd_distill.py <args...>

behaves exactly like ``python run_mmkd_distill.py <args...>`` (the entry point's ``main`` through
``engine.cli.run``) except that the fault fires at the chosen point. ``MMKD_FAULT`` is
``<kind>:<n>`` (n counts calls of the hook in this process, from 1):

=====================  ===========================================================================
kill_before_step:n      SIGKILL before the n-th optimiser step (``backward`` of ``engine.backend``'s backends)
kill_after_step:n       SIGKILL right after the n-th optimiser step
stop_after_step:n       SIGSTOP right after the n-th optimiser step (a hung rank: alive, silent)
kill_mid_save:n         n-th ``torch.save``: write half of the bytes to the temp file, fsync, SIGKILL
kill_after_rename:n     SIGKILL right after the n-th numbered checkpoint is renamed into place
fsize_after_save:n      after the n-th numbered checkpoint is in place: ``ulimit -f 64`` (RLIMIT_FSIZE)
shell_after_save:n      after the n-th numbered checkpoint is in place: run ``$MMKD_FAULT_CMD`` (e.g. a
                        remount read-only, or filling the disk)
kill_load:n             SIGKILL in the n-th clip decode (``read_clip``; data loading)
kill_eval:n             SIGKILL in the n-th validation item (one-clip evaluation)
kill_test:n             SIGKILL in the n-th multi-view test item
nan_after:n             every task forward after the n-th returns a NaN loss term
save_enospc:n           n-th ``torch.save`` writes some bytes, then raises OSError(ENOSPC)
save_eacces:n           creating the temp file of the n-th numbered checkpoint raises PermissionError
usr1_after_step:n       SIGUSR1 to this process right after the n-th micro-batch's backward / step
term_after_step:n       SIGTERM likewise
usr1_twice:n            SIGUSR1 after the n-th micro-batch, and again in the middle of the next save
usr1_mid_save:n         SIGUSR1 in the middle of the n-th ``torch.save`` (the write goes on)
usr1_eval:n             SIGUSR1 in the n-th validation item
usr1_test:n             SIGUSR1 in the n-th multi-view test item
=====================  ===========================================================================

``MMKD_FAULT_RANK=r``: only the process with ``RANK`` (or, under slurm, ``SLURM_PROCID``) r is faulty. ``MMKD_FAULT_ONCE=path``: the
fault fires only while ``path`` does not exist (it is created just before firing), so a relaunch
(e.g. by ``torchrun --max-restarts``) of the same command runs clean.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import re
import resource
import runpy
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_NUMBERED = re.compile(r"checkpoint-\d+\.pth")


def _die() -> None:
    """SIGKILL this process (output flushed first so the test can show what happened)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # dying anyway
            stream.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Counter:
    def __init__(self, n: int, once: str | None):
        self.n, self.calls, self.once = n, 0, once

    def hit(self) -> bool:
        """Counts a call; True exactly when the fault must fire now."""
        self.calls += 1
        if self.calls != self.n:
            return False
        if self.once:
            if os.path.exists(self.once):
                return False
            Path(self.once).touch()
        return True


def _signal(sig=signal.SIGUSR1) -> None:
    os.kill(os.getpid(), sig)


def _patch_backward(wrap) -> None:
    """Wraps the backward (and step) of every micro-batch, whichever backend the run uses."""
    import engine.backend

    for backend in (engine.backend.TorchBackend, engine.backend.DeepSpeedBackend):
        backend.backward = wrap(backend.backward)


def _install_signals(kind: str, counter: _Counter) -> None:
    """The stop-signal faults: the process signals itself at a chosen point and runs on."""
    import torch

    if kind in ("usr1_after_step", "term_after_step", "usr1_twice"):
        again = []

        def after_backward(original):
            def backward_step(*args, **kwargs):
                out = original(*args, **kwargs)
                if counter.hit():
                    _signal(signal.SIGTERM if kind == "term_after_step" else signal.SIGUSR1)
                    again.append(kind == "usr1_twice")
                return out

            return backward_step

        _patch_backward(after_backward)
        if kind == "usr1_twice":
            original_save = torch.save

            def save(obj, f, *args, **kwargs):
                if again and again[-1] and not isinstance(f, (str, os.PathLike)):
                    again[-1] = False
                    buf = io.BytesIO()
                    original_save(obj, buf, *args, **kwargs)
                    data = buf.getvalue()
                    f.write(data[: len(data) // 2])
                    _signal()  # the second signal, half-way through the checkpoint's bytes
                    f.write(data[len(data) // 2 :])
                    return None
                return original_save(obj, f, *args, **kwargs)

            torch.save = save
    elif kind == "usr1_mid_save":
        original_save = torch.save

        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) or not counter.hit():
                return original_save(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            original_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            _signal()
            f.write(data[len(data) // 2 :])
            return None

        torch.save = save
    else:  # usr1_eval / usr1_test
        from datasets.classification import VideoClsEvalDataset

        original_item = VideoClsEvalDataset.__getitem__

        def getitem(self, index):
            if self.test == (kind == "usr1_test") and counter.hit():
                _signal()
            return original_item(self, index)

        VideoClsEvalDataset.__getitem__ = getitem


def install(spec: str, once: str | None = None) -> None:
    """Patch the hook point named by ``spec`` (``kind:n``) in this process."""
    kind, _, n = spec.partition(":")
    counter = _Counter(int(n or 1), once)
    if kind.startswith(("usr1_", "term_")):
        _install_signals(kind, counter)
    elif kind in ("kill_before_step", "kill_after_step", "stop_after_step"):

        def around_backward(original):
            def backward_step(*args, **kwargs):
                if kind == "kill_before_step" and counter.hit():
                    _die()
                out = original(*args, **kwargs)
                if kind == "kill_after_step" and counter.hit():
                    _die()
                if kind == "stop_after_step" and counter.hit():
                    sys.stdout.flush()
                    os.kill(os.getpid(), signal.SIGSTOP)
                return out

            return backward_step

        _patch_backward(around_backward)
    elif kind in ("kill_mid_save", "save_enospc"):
        import torch

        original_save = torch.save

        def save(obj, f, *args, **kwargs):
            if not counter.hit() or isinstance(f, (str, os.PathLike)):
                return original_save(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            original_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            if kind == "kill_mid_save":
                _die()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        torch.save = save
    elif kind == "save_eacces":
        original_open = os.open

        def open_(path, flags, *args, **kwargs):
            name = os.path.basename(os.fspath(path))
            if name.endswith(".tmp") and _NUMBERED.search(name) and counter.hit():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return original_open(path, flags, *args, **kwargs)

        os.open = open_
    elif kind in ("kill_after_rename", "fsize_after_save", "shell_after_save"):
        original_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            original_replace(src, dst, *args, **kwargs)
            if _NUMBERED.fullmatch(os.path.basename(os.fspath(dst))) and counter.hit():
                if kind == "kill_after_rename":
                    _die()
                elif kind == "fsize_after_save":
                    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
                else:
                    subprocess.run(os.environ["MMKD_FAULT_CMD"], shell=True, check=True)

        os.replace = replace
    elif kind == "kill_load":
        import datasets.classification
        import datasets.pretrain

        original_read = datasets.pretrain.read_clip

        def read_clip(*args, **kwargs):
            if counter.hit():
                _die()
            return original_read(*args, **kwargs)

        datasets.pretrain.read_clip = read_clip
        datasets.classification.read_clip = read_clip
    elif kind in ("kill_eval", "kill_test"):
        from datasets.classification import VideoClsEvalDataset

        original_item = VideoClsEvalDataset.__getitem__

        def getitem(self, index):
            if self.test == (kind == "kill_test") and counter.hit():
                _die()
            return original_item(self, index)

        VideoClsEvalDataset.__getitem__ = getitem
    elif kind == "nan_after":
        from engine import tasks

        for cls in (tasks.PretrainTask, tasks.DistillTask, tasks.FinetuneTask):
            cls.forward = _nan_forward(cls.forward, counter)
    else:
        raise SystemExit(f"killer.py: unknown MMKD_FAULT kind {kind!r}")


def _nan_forward(original, counter: _Counter):
    def forward(self, batch):
        losses = original(self, batch)
        counter.calls += 1
        if counter.calls > counter.n:
            # poison one named term (the first that is not the total) and, through it, the total
            term = next((k for k in losses if k != "loss"), "loss")
            losses = dict(losses)
            losses[term] = losses[term] * math.nan
            losses["loss"] = losses["loss"] + losses[term]
        return losses

    return forward


def launch(script: str, argv: list[str]) -> int:
    """Install the fault from the environment, then run ``script``'s ``main`` as its ``__main__`` does."""
    spec = os.environ.get("MMKD_FAULT")
    rank = os.environ.get("MMKD_FAULT_RANK")
    once = os.environ.get("MMKD_FAULT_ONCE")
    own = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    if spec and (rank is None or own == rank):
        install(spec, once)
    sys.argv = [script, *argv]
    entry = runpy.run_path(str(ROOT / script), run_name="__mmkd_entry__")
    from engine.cli import run

    return run(entry["main"], argv)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: [MMKD_FAULT=kind:n] python tests/faults/killer.py <entry script> <args...>")
    sys.exit(launch(sys.argv[1], sys.argv[2:]))
