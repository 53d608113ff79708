"""benchmarks/bench_compare.py: pairs the runs A B A B, reports B's speed-up per pair, checks out --base."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_compare  # noqa: E402


def _fake(tmp_path: Path, name: str, seconds: list[float], mib: float, steps_mib: float | None = None) -> str:
    """A command that prints the next of ``seconds`` as sec_per_step on each call (state in a file)."""
    state = tmp_path / f"{name}.n"
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import json, pathlib\n"
        f"s = pathlib.Path({str(state)!r}); n = int(s.read_text()) if s.exists() else 0; s.write_text(str(n + 1))\n"
        "print('some log line')\n"
        f"r = {{'sec_per_step': {seconds!r}[n], 'process_max_rss_MiB': {mib}}}\n"
        + (f"r['steps_max_rss_MiB'] = {steps_mib}\n" if steps_mib is not None else "")
        + "print(json.dumps(r))\n"
    )
    return f"{sys.executable} {script}"


def test_pairs_rounds_and_reports_the_speedup_per_pair(tmp_path, capsys):
    # The machine "drifts" 2x between rounds; per pair B stays 1.5x faster.
    a = _fake(tmp_path, "a", [3.0, 6.0, 3.0], 100.0)
    b = _fake(tmp_path, "b", [2.0, 4.0, 2.0], 90.0, steps_mib=80.0)
    result = bench_compare.main(["--a", a, "--b", b, "--rounds", "3"])
    assert result["a_sec_per_step"] == [3.0, 6.0, 3.0]
    assert result["b_sec_per_step"] == [2.0, 4.0, 2.0]
    assert result["speedup_b_over_a"] == {"min": 1.5, "median": 1.5, "max": 1.5}
    assert result["a_peak_MiB"] == [100.0] * 3 and result["b_peak_MiB"] == [90.0] * 3
    assert result["a_steps_peak_MiB"] == [None] * 3 and result["b_steps_peak_MiB"] == [80.0] * 3
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_a_command_without_a_json_line_is_one_clear_error(tmp_path):
    good = _fake(tmp_path, "good", [1.0], 1.0)
    with pytest.raises(SystemExit, match="printed no JSON line with sec_per_step"):
        bench_compare.main(["--a", f"{sys.executable} -c print(1)", "--b", good, "--rounds", "1"])


def test_base_placeholder_needs_a_revision():
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_compare.py", "--a", "python {base}/x.py", "--b", "true"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "give --base REV" in proc.stderr


def test_base_revision_is_checked_out_and_removed(tmp_path):
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    probe = (
        f'{sys.executable} -c "import json, pathlib; '
        "print(json.dumps({'sec_per_step': float(pathlib.Path('{base}/benchmarks/bench_model.py').is_file())}))\""
    )
    result = bench_compare.main(["--base", "HEAD", "--a", probe, "--b", probe, "--rounds", "1"])
    assert result["a_sec_per_step"] == [1.0] and result["base"] == "HEAD"
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "bench_base_" not in listed
