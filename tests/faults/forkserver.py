"""A fork server for the fault tests: one interpreter pays for ``import torch, timm, models, ...``
(3-5 s) once, then forks a fresh child process per launch.

Each child is a real process with its own pid, files and exit status (SIGKILL shows as -9); it
runs ``tests/faults/killer.py``'s :func:`launch` exactly as ``python tests/faults/killer.py
<script> <args...>`` would (which, without ``MMKD_FAULT``, is ``python <script> <args...>``), with
stdout/stderr in files and the requested environment. The server itself never computes, so no
thread pool exists when it forks (``OMP_NUM_THREADS=1`` as in ``run_script``).

Protocol (server stdin/stdout, one JSON object per line): request ``{"script", "argv", "env",
"stdout", "stderr"}`` -> ``{"pid"}`` after the fork -> ``{"rc"}`` when the child has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# ----- server (python tests/faults/forkserver.py) ------------------------------------------------
def _child(req: dict) -> None:
    rc = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.stdout.reconfigure(line_buffering=True)  # as `python -u`
        sys.stderr.reconfigure(line_buffering=True)
        os.chdir(ROOT)
        for key, value in req.get("env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from tests.faults.killer import launch

        rc = launch(req["script"], req["argv"])
    except SystemExit as exc:  # argparse errors, sys.exit(...)
        code = exc.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except BaseException:  # what the interpreter would do with an uncaught exception
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(rc if isinstance(rc, int) else 1)


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    # what every entry point imports; nothing here runs a tensor op
    import av  # noqa: F401
    import numpy  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401
    from timm.data import Mixup  # noqa: F401

    import datasets  # noqa: F401
    import engine.build  # noqa: F401
    import engine.cli  # noqa: F401
    import engine.evaluation  # noqa: F401
    import engine.runner  # noqa: F401
    import models  # noqa: F401
    import tests.faults.killer  # noqa: F401

    out = sys.stdout
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        print(json.dumps({"pid": pid}), file=out, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), file=out, flush=True)


# ----- client -------------------------------------------------------------------------------------
@dataclass
class Result:
    """Like ``subprocess.CompletedProcess``: returncode (negative signal number when killed)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def show(self) -> str:
        return f"$ {' '.join(self.args)}\nrc={self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


class ForkServer:
    """Client of one server process; ``run`` launches one entry point in a fresh forked process."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.lock = threading.Lock()
        from tests.faults.harness import clean_env

        env = clean_env(PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        ready = self._read(120)
        if not ready.get("ready"):
            raise RuntimeError(f"fork server did not start: {ready}")

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server died (rc {self.proc.poll()})")
        return json.loads(line)

    def run(self, script: str, argv: list[str], env: dict | None = None, timeout: float = 300) -> Result:
        """Runs ``script argv`` (through ``killer.launch``; ``env`` adds/removes (None) variables)."""
        with self.lock:
            self.count += 1
            out, err = self.workdir / f"{self.count}.out", self.workdir / f"{self.count}.err"
            req = {
                "script": script,
                "argv": list(map(str, argv)),
                "env": env or {},
                "stdout": str(out),
                "stderr": str(err),
            }
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            pid = self._read(60)["pid"]
            try:
                rc = self._read(timeout)["rc"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)  # the child we started, by its id
                self._read(60)
                raise TimeoutError(
                    f"{script} did not finish in {timeout} s: {out.read_text()[-3000:]}"
                ) from None
            prefix = [f"{k}={v}" for k, v in (env or {}).items()]
            return Result(
                [*prefix, script, *req["argv"]],
                rc,
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    serve()
