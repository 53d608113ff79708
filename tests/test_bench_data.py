"""benchmarks/bench_data.py --per_core on a few tiny generated videos: the JSON line's schema.

Figures are not checked (a shared machine times anything); only that every pipeline is measured,
clips are counted as clips (``--num_sample`` R per video) and the cores-per-GPU arithmetic holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datasets.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def video_list(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench_videos")
    lists = make_synthetic_dataset(
        out, num_classes=2, videos_per_class=2, num_frames=20, width=64, height=48, seed=2,
        val_fraction=0, test_fraction=0, workers=1,
    )  # fmt: skip
    return str(lists["pretrain"])


def _per_core(video_list: str, *extra: str) -> dict:
    cmd = [sys.executable, "benchmarks/bench_data.py", "--per_core", "--csv", video_list, "--clips", "4",
           "--repeats", "1", "--batch_size", "2", "--cores", "2", "--decoders", "pyav", "--normalize_on", "none",
           *extra]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_per_core_record_with_repeated_sampling(video_list: str) -> None:
    record = _per_core(video_list, "--num_sample", "2", "--transcoded", video_list)
    assert record["mode"] == "per_core"
    settings = record["settings"]
    assert (settings["recipe"], settings["num_sample"], settings["cores"], settings["workers"]) == (
        "pretrain",
        2,
        2,
        2,
    )
    assert {"load_avg_1min_at_start", "load_avg_1min_at_end", "cpu"} <= set(record["machine"])
    (name,) = record["clips_per_s_per_core"]
    rates = record["clips_per_s_per_core"][name]
    assert set(rates) == {"reference", "ours_pyav", "ours_pyav_transcoded"}
    assert all(rate > 0 for rate in rates.values())
    assert set(record["clips_per_cpu_s"][name]) == set(rates)
    gpu = record["gpu"]
    for label, rate in rates.items():
        cores = record["cores_per_gpu"][name][label]
        need_10 = gpu["dense_bf16_tflops"] * 1000 * 0.1 / gpu["gflop_per_clip"]
        assert cores["mfu_10"] == pytest.approx(need_10 / rate, rel=0.02, abs=0.1)
        assert cores["mfu_40"] == pytest.approx(4 * cores["mfu_10"], rel=0.02, abs=0.3)


@pytest.mark.parametrize("recipe", ["finetune", "test"])
def test_per_core_other_recipes_have_no_reference_row(video_list: str, recipe: str) -> None:
    record = _per_core(video_list, "--recipe", recipe, "--cores", "1", "--gflop_per_clip", "111")
    (rates,) = record["clips_per_s_per_core"].values()
    assert set(rates) == {"ours_pyav"} and rates["ours_pyav"] > 0
    (cores,) = record["cores_per_gpu"].values()
    need_10 = record["gpu"]["dense_bf16_tflops"] * 1000 * 0.1 / 111
    assert cores["ours_pyav"]["mfu_10"] == pytest.approx(need_10 / rates["ours_pyav"], rel=0.02, abs=0.1)
    assert record["settings"]["workers"] == 1


def test_bad_flags_are_one_line(video_list: str) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_data.py", "--per_core", "--csv", video_list, "--num_sample", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "--cores and --num_sample must be >= 1" in proc.stderr.splitlines()[-1]


def test_torchcodec_that_cannot_load_is_one_line(video_list: str, tmp_path: Path) -> None:
    (tmp_path / "torchcodec").mkdir()  # shadows any installed torchcodec
    (tmp_path / "torchcodec" / "__init__.py").write_text("raise ImportError('no torchcodec here')\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench_data.py"), "--per_core", "--csv", video_list,
         "--decoders", "pyav,torchcodec"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "decoder 'torchcodec' needs the torchcodec package (pip install torchcodec); or use --decoder auto"
        )
    )
