"""benchmarks/torchcodec_check.py (issue 24.4): torchcodec's decode against PyAV's, one JSON line."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import torchcodec_check
from datasets.decoding import PyAVVideo
from tests.datasets.test_data_decoding import needs_torchcodec

TINY = ["--videos", "1", "--frames", "64", "--size", "96x64", "--clips", "3"]


def _line(capsys: pytest.CaptureFixture[str]) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def test_cannot_run_is_a_skip_line_with_the_reason(capsys, monkeypatch) -> None:
    monkeypatch.setattr(
        torchcodec_check, "torchcodec_problem", lambda: "decoder 'torchcodec' needs the package"
    )
    assert torchcodec_check.main(["--device", "cpu", *TINY]) == 0
    assert _line(capsys) == {
        "check": "torchcodec_decode",
        "device": "cpu",
        "skip": "decoder 'torchcodec' needs the package",
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the no-CUDA reason cannot show")
def test_no_cuda_is_a_skip_line(monkeypatch) -> None:
    monkeypatch.setattr(torchcodec_check, "torchcodec_problem", lambda: None)
    assert "needs CUDA" in torchcodec_check.why_not("cuda")
    assert torchcodec_check.why_not("cpu") is None


class _Shifted(PyAVVideo):
    """PyAV's frames, brighter by ``SHIFT`` (a stand-in for a decoder whose conversion differs)."""

    SHIFT = 2

    def __init__(self, path: str, device: str = "cpu") -> None:
        super().__init__(path)

    def get_frames(self, indices, size=None) -> torch.Tensor:
        return (super().get_frames(indices, size).int() + self.SHIFT).clamp(max=255).to(torch.uint8)


@pytest.mark.parametrize(
    ("device", "shift", "match"), [("cpu", 0, True), ("cpu", 2, False), ("cuda", 2, True), ("cuda", 5, False)]
)
def test_frames_match_within_the_stated_tolerance(capsys, monkeypatch, device, shift, match) -> None:
    """Equal on the CPU; on CUDA within --atol (3) on --min_within of the values; else exit 1."""
    monkeypatch.setattr(torchcodec_check, "torchcodec_problem", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "fake")
    monkeypatch.setattr(_Shifted, "SHIFT", shift)
    monkeypatch.setattr(torchcodec_check, "TorchCodecVideo", _Shifted)
    assert torchcodec_check.main(["--device", device, *TINY]) == (0 if match else 1)
    line = _line(capsys)
    assert line["match"] is match and line["clips"] == 3 and line["atol"] == (0 if device == "cpu" else 3)
    assert line["max_abs_diff"] == shift and set(line["clips_per_s"]) == {"torchcodec", "pyav_cpu_1_thread"}
    assert (line["within_atol"] >= line["min_within"]) is match


@needs_torchcodec
def test_torchcodec_on_the_cpu_gives_pyav_frames(capsys) -> None:
    assert torchcodec_check.main(["--device", "cpu", *TINY]) == 0
    line = _line(capsys)
    assert line["match"] and line["max_abs_diff"] == 0 and line["within_atol"] == 1.0
