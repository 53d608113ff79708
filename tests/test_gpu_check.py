"""benchmarks/gpu_check.sh in its CPU mode: the same steps on tiny presets, every CPU path passing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU_PASS = [
    "environment", "data", "teacher_checkpoint", "sdpa_fused_bf16", "sdpa_fused_fp32", "pretrain_bf16",
    "distill_bf16_teacher_fp32", "distill_bf16_teacher_bf16", "finetune_bf16", "ddp_gloo_2proc",
    "torchrun_distill", "deepspeed_zero1_bf16", "deepspeed_zero2_bf16", "bench_distill_b2",
    "distill_compile", "finetune_compile", "host_syncs_distill", "host_syncs_pretrain", "host_syncs_finetune",
]  # fmt: skip
CUDA_ONLY = [
    "sdpa_fused_fp16", "pretrain_fp16", "distill_fp16_teacher_fp32", "distill_fp16_teacher_bf16",
    "finetune_fp16", "ddp_nccl", "deepspeed_zero1_fp16", "deepspeed_zero2_fp16", "torchcodec_cuda",
]  # fmt: skip


def _table(stdout: str) -> dict[str, tuple[str, str]]:
    lines = stdout.split("gpu_check summary", 1)[1].splitlines()[2:]
    rows = {}
    for line in lines:
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[1] in ("PASS", "FAIL", "SKIP"):
            rows[parts[0]] = (parts[1], parts[3] if len(parts) > 3 else "")
    return rows


@pytest.mark.slow
def test_gpu_check_cpu_mode_passes_every_cpu_path(tmp_path):
    env = {**os.environ, "CPU": "1", "NO_INSTALL": "1", "WORK": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert "gpu_check summary" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _table(proc.stdout)
    failed = {k: v for k, v in rows.items() if v[0] == "FAIL"}
    assert proc.returncode == 0 and not failed, failed
    for name in CPU_PASS:
        assert rows[name][0] == "PASS", (name, rows.get(name))
    for name in CUDA_ONLY:
        assert rows[name][0] == "SKIP" and "CUDA" in rows[name][1], (name, rows.get(name))
    assert "clips/s" in rows["bench_distill_b2"][1]  # the benchmark's figures reach the table
    assert (tmp_path / "runs" / "finetune_bf16" / "test_views" / "0.txt").is_file()


def test_gpu_check_refuses_unknown_arguments():
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--bogus"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr


def test_gpu_check_stays_within_its_budget():
    """A spent budget skips every check (and says so) instead of running past it."""
    env = {**os.environ, "CPU": "1", "NO_INSTALL": "1", "BUDGET": "0"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = _table(proc.stdout)
    assert proc.returncode == 0 and rows["environment"][0] == "PASS"
    skipped = {k: v for k, v in rows.items() if k != "environment"}
    assert set(CPU_PASS) - {"environment"} <= set(skipped)
    assert all(v[0] == "SKIP" for v in skipped.values())
    assert "time budget" in skipped["distill_compile"][1]


FAKE_PYTHON = """#!/usr/bin/env bash
# python3, except: a GPU is "there", the data steps are no-ops and torchcodec_check.py prints $FAKE_LINE
case "$*" in
  *"sys.exit(not torch.cuda.is_available())"*) exit 0 ;;
  *datasets.synthetic* | *teacher.pth*) exit 0 ;;
  *torchcodec_check.py*) echo "$FAKE_LINE"; exit "$FAKE_RC" ;;
esac
exec python3 "$@"
"""
_FIGURES = {
    "check": "torchcodec_decode", "device": "cuda", "clips_per_s": {"torchcodec": 310.5, "pyav_cpu_1_thread": 41.2},
    "max_abs_diff": 2, "mean_abs_diff": 0.31, "within_atol": 1.0, "atol": 3,
}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "rc", "status", "note"),
    [
        ({**_FIGURES, "match": True}, 0, "PASS", "310.5 clips/s (PyAV, CPU, 1 thread: 41.2); vs PyAV: max |diff| 2"),
        ({**_FIGURES, "match": False, "within_atol": 0.5}, 1, "FAIL", "0.5000 within 3"),
        ({"check": "torchcodec_decode", "device": "cuda", "skip": "decoder 'torchcodec' needs it"}, 0, "SKIP",
         "decoder 'torchcodec' needs it"),
    ],
)  # fmt: skip
def test_gpu_check_reports_torchcodec_cuda_from_its_json_line(tmp_path, line, rc, status, note):
    """On a GPU the torchcodec_cuda row takes the check's figures, or its skip reason, as the note."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {
        **os.environ, "PYTHON": str(fake), "NO_INSTALL": "1", "WORK": str(tmp_path / "work"), "ONLY": "torchcodec_cuda",
        "FAKE_LINE": json.dumps(line), "FAKE_RC": str(rc),
    }  # fmt: skip
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    rows = _table(proc.stdout)
    assert rows["torchcodec_cuda"][0] == status and note in rows["torchcodec_cuda"][1], proc.stdout[-2000:]
    assert proc.returncode == (1 if status == "FAIL" else 0)
    assert all(
        v[0] == "SKIP"
        for k, v in rows.items()
        if k not in ("environment", "torchcodec_cuda", "data", "teacher_checkpoint")
    )
