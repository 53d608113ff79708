"""benchmarks/bench_quickstart.py: the teacher stage's parts, measured on the quickstart's own command.

Figures are not checked (a shared machine times anything); only that it times the quickstart's
teacher command (its defaults and extra flags), and that the prediction's arithmetic holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(*extra: str) -> dict:
    cmd = [sys.executable, "benchmarks/bench_quickstart.py", "--videos", "10", "--clips", "8", "--repeats", "1",
           "--real_epochs", "1", *extra]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON line
    return json.loads(lines[0])


def test_parts_and_prediction_of_the_quickstart_teacher_stage() -> None:
    r = _bench("--", "--num_sample", "2", "--batch_size", "4", "--epochs", "25")
    assert r["extra_flags"] == ["--num_sample", "2", "--batch_size", "4", "--epochs", "25"]
    assert r["threads"] == 1 and r["clips"] == 8 * 2
    # the quickstart's 3000 teacher videos, the extra flags' 25 epochs (they override the stage's 50), 2 clips each
    assert r["stage_clips"] == 25 * 5 * 600 * 2
    for part in ("decode_ms", "augment_ms", "collate_ms", "step_ms"):
        assert r[part] >= 0, part
    assert r["decode_ms"] > 0 and r["step_ms"] > 0
    data = r["decode_ms"] + r["augment_ms"] + r["collate_ms"]
    assert abs(r["data_share"] - data / (data + r["step_ms"])) < 2e-3
    for workers in (1, 2):
        p = r["predicted"][f"workers_{workers}"]
        limits = {"data": workers / data, "compute": 1 / r["step_ms"], "cores": 2 / (data + r["step_ms"])}
        assert p["bound"] == min(limits, key=limits.get)
        assert abs(p["clips_per_s"] - 1000 * min(limits.values())) <= 0.01 * p["clips_per_s"] + 0.1
        assert abs(p["stage_s"] - r["stage_clips"] / p["clips_per_s"]) <= 0.01 * p["stage_s"] + 1
    assert r["real_clips_per_s"] > 0
    assert abs(r["real_stage_s"] - r["stage_clips"] / r["real_clips_per_s"]) <= 0.01 * r["real_stage_s"] + 1


def test_bad_sizes_are_one_line_usage_errors() -> None:
    proc = subprocess.run([sys.executable, "benchmarks/bench_quickstart.py", "--clips", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "--clips and --videos must be >= 8" in proc.stderr
    assert "Traceback" not in proc.stderr
