"""benchmarks/bench_model.py on tiny presets: its JSON line carries the settings and both memory peaks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--student", "pico", "--teacher", "nano", "--num_frames", "4", "--input_size", "32", "--mask_ratio", "0.75",
        "--num_k", "2", "--num_f", "2", "--steps", "2", "--warmup", "1", "--batch_size", "2"]  # fmt: skip


def _bench(*extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_model.py", *TINY, *extra], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("isolated", [False, True])
def test_teacher_precision_reaches_the_task_and_the_record(isolated):
    record = _bench("--teacher_precision", "bf16", *(["--isolated"] if isolated else []))
    assert record["step"] == ("isolated" if isolated else "trainer")
    assert record["precision"] == "fp32" and record["teacher_precision"] == "bf16"
    assert record["sec_per_step"] > 0 and record["gflop_per_step"] > 0


def test_the_steps_peak_is_read_apart_from_the_whole_process_peak():
    record = _bench()
    if not Path("/proc/self/clear_refs").exists():
        assert record["steps_max_rss_MiB"] is None
        return
    # the whole-process peak also holds the build and the checkpoint load; the steps' peak is within it
    # (the two are read a moment apart, from two kernel counters: 1 % slack)
    assert 0 < record["steps_max_rss_MiB"] <= 1.01 * record["process_max_rss_MiB"]


def test_the_cpu_gemm_flag_reaches_the_entry_point_and_the_record():
    record = _bench("--cpu_gemm", "blas")
    assert record["cpu_gemm"] == "blas" and record["gflop_per_step"] > 0
    # the FLOP count is the same whichever kernels run it (the oneDNN op has its own formula)
    assert _bench()["gflop_per_step"] == record["gflop_per_step"]


@pytest.mark.parametrize("task", ["distill", "pretrain", "finetune"])
def test_no_host_sync_between_log_lines_through_the_trainer(task):
    """--count_syncs through each entry point's task and the real loop: reads happen only at the log
    lines (the summed loss terms and the gradient norm), none in the steps between them."""
    record = _bench("--task", task, "--count_syncs", "--steps", "7", "--print_freq", "3")
    steps = record["syncs_per_step"]
    assert record["ok"] and record["unexpected_steps"] == [] and len(steps) == 8
    assert record["log_lines"] == 3  # micro-batches 0, 3 and 6 (the last one's comes after the count)
    assert [i for i, n in enumerate(steps) if n] == [1, 4, 7] and all(n <= 3 for n in steps)


def _counter():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_model
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_model.host_syncs


def test_the_cpu_sync_counter_sees_what_would_wait_for_a_gpu():
    host_syncs = _counter()
    x, counters = torch.randn(4, 3), torch.tensor([2, 0])
    with host_syncs(torch.device("cpu")) as syncs:
        int(counters.sum())  # an integer counter of the batch: a host tensor on a GPU run too
        x.sum() * 2  # device work only
        assert syncs() == 0
        x.sum().item()
        x.tolist()
        bool((x > 0).any())
        x[x > 0]
        (x > 0).nonzero()
        x.masked_select(x > 0)
        assert syncs() == 6
    assert torch.Tensor.tolist.__name__ == "tolist"  # restored
