"""Two benchmark commands in turn (A B A B ...), each printing a JSON line with ``sec_per_step``.

Prints one JSON line: both commands' seconds per step and peak memory per round, and the speed-up
of B over A pair by pair (A's time / B's time of the same round: the machine's drift cancels), as
min / median / max. ``--base REV`` checks that git revision out into a temporary worktree and
substitutes its path for ``{base}`` in either command, so a step can be measured against an older
version of itself in the same run:

    python benchmarks/bench_compare.py --base 14d9c2d \\
        --a "python {base}/benchmarks/bench_model.py --device cpu --batch_size 2" \\
        --b "python benchmarks/bench_model.py --device cpu --batch_size 2"

(14d9c2d is the code whose isolated step the issue measured at parity with the reference's step.)
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_KEYS = ("process_max_rss_MiB", "cuda_max_allocated_MiB")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="the baseline command (a shell-quoted string)")
    p.add_argument("--b", required=True, help="the command measured against it")
    p.add_argument("--rounds", type=int, default=4, help="pairs of runs (A then B)")
    p.add_argument("--base", default=None, help="git revision checked out at {base} for the commands")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    if "{base}" in args.a + args.b and not args.base:
        p.error("a command names {base}: give --base REV (the git revision to check out there)")
    return args


def last_record(cmd: list[str]) -> dict:
    """Runs ``cmd`` from the repository root; its last JSON line, or exits with one line saying why not."""
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            record = json.loads(line)
            if "sec_per_step" in record:
                return record
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    sys.exit(
        f"bench_compare: {shlex.join(cmd)} printed no JSON line with sec_per_step (exit {proc.returncode}): {tail[0]}"
    )


def memory(record: dict) -> float | None:
    return next((record[k] for k in MEMORY_KEYS if k in record), None)


def spread(values: list[float]) -> dict:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def compare(a: list[str], b: list[str], rounds: int) -> dict:
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    for _ in range(rounds):
        runs["a"].append(last_record(a))
        runs["b"].append(last_record(b))
    sec = {k: [r["sec_per_step"] for r in v] for k, v in runs.items()}
    return {
        "bench": "compare",
        "a": shlex.join(a),
        "b": shlex.join(b),
        "rounds": rounds,
        "a_sec_per_step": sec["a"],
        "b_sec_per_step": sec["b"],
        "speedup_b_over_a": spread([x / y for x, y in zip(sec["a"], sec["b"])]),
        "a_peak_MiB": [memory(r) for r in runs["a"]],
        "b_peak_MiB": [memory(r) for r in runs["b"]],
        # bench_model's peak of the timed steps alone (the process peak also holds the build)
        "a_steps_peak_MiB": [r.get("steps_max_rss_MiB") for r in runs["a"]],
        "b_steps_peak_MiB": [r.get("steps_max_rss_MiB") for r in runs["b"]],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench_base_") as tmp:
        base = Path(tmp) / "base"
        if args.base:
            subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True,
                           capture_output=True)  # fmt: skip
        try:
            a, b = (shlex.split(c.replace("{base}", str(base))) for c in (args.a, args.b))
            result = compare(a, b, args.rounds)
        finally:
            if args.base:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True
                )
    if args.base:
        result["base"] = args.base
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
