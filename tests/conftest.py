"""Shared test helpers: the reference-parity fixture folder (``../shared`` beside the checkout)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = Path(os.environ.get("MMKD_FIXTURES", ROOT.parent / "shared" / "fixtures" / "reference_parity"))

# scripts/run_tests.sh runs the suite on pytest-xdist workers (one per core): the cores are split
# between them, and the entry points a test starts inherit the same share.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
torch.set_num_threads(_THREADS)


def load_fixture(name: str) -> dict:
    """Loads one golden file, or skips the test with a clear message when the folder is absent."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"reference fixtures not found at {path} (expected ../shared beside the checkout)")
    return torch.load(path, weights_only=True)


@pytest.fixture
def fixture_loader():
    return load_fixture
