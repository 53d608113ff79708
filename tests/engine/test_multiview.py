"""engine.evaluation's view files and merge against the reference multi-view merge fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.evaluation import format_view_line, merge_views, softmax_f64, write_rank_file

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reference_parity"


def _case(case: int) -> tuple[dict, list[Path]]:
    path = FIXTURES / f"multiview_merge_case{case}.pt"
    if not path.exists():
        pytest.skip(f"reference fixture {path} not found (expected ../shared beside the repo root)")
    data = torch.load(path, weights_only=True)
    return data, [FIXTURES / name for name in data["inputs"]["rank_files"]]


def _check(result, expected: dict) -> None:
    assert result.top1 == expected["final_top1"]
    assert result.top5 == expected["final_top5"]
    np.testing.assert_allclose(
        result.mean_prob, expected["mean_prob"].numpy(), rtol=1e-12, atol=0
    )  # other CPUs round exp differently
    assert result.pred == expected["pred"]
    assert result.n_views_used == expected["n_views_used"]
    if "video_names" in expected:
        assert result.video_names == expected["video_names"]
    if "label" in expected:
        assert result.label == expected["label"]
        assert result.video_top1 == expected["top1"]
        assert result.video_top5 == expected["top5"]


@pytest.mark.parametrize("case", [0, 1])
def test_reference_dedupe_bit_for_bit(case: int) -> None:
    data, files = _case(case)
    _check(merge_views(files, dedupe="reference"), data["expected"])


@pytest.mark.parametrize("case", [0, 1])
def test_pair_dedupe_matches_int_pair_expectation(case: int) -> None:
    data, files = _case(case)
    result = merge_views(files)  # "pair" is the default
    _check(result, data["expected_if_dedupe_by_int_pair"])
    assert result.video_names == data["expected"]["video_names"]


@pytest.mark.parametrize("case", [0, 1])
def test_written_files_merge_like_the_fixture(case: int, tmp_path: Path) -> None:
    """Parse every fixture line, re-format it with format_view_line and re-merge."""
    data, _ = _case(case)
    files = []
    for rank, lines in enumerate(data["inputs"]["lines"]):
        views = []
        for line in lines[1:]:
            name, rest = line.split(" [", 1)
            body, tail = rest.split("] ", 1)
            label, chunk, crop = (int(v) for v in tail.split())
            logits = [float(v) for v in body.split(", ")]
            formatted = format_view_line(name, logits, label, chunk, crop)
            assert formatted == line  # byte-identical to the reference text
            views.append(formatted)
        files.append(write_rank_file(tmp_path / f"{rank}.txt", views, header=lines[0].rstrip("\n")))
        assert files[-1].read_text() == "".join(lines)
    _check(merge_views(files, dedupe="reference"), data["expected"])
    assert list(tmp_path.glob(".*.tmp")) == []


def test_format_view_line_from_fp16_tensor() -> None:
    logits = torch.tensor([0.1, -2.5, 3.0], dtype=torch.float16)
    line = format_view_line("v1", logits, torch.tensor(2), 0, 1)
    assert line == "v1 [0.0999755859375, -2.5, 3.0] 2 0 1\n"


@pytest.mark.parametrize("video_id", ["", "a[1]", "x\ny"])
def test_format_view_line_rejects_bad_ids(video_id: str) -> None:
    with pytest.raises(ValueError, match="video id"):
        format_view_line(video_id, [1.0], 0, 0, 0)


def test_format_view_line_rejects_2d_logits() -> None:
    with pytest.raises(ValueError, match="1-D"):
        format_view_line("v", torch.zeros(2, 3), 0, 0, 0)


@pytest.mark.parametrize(
    "bad",
    [
        "vid [1.0, 2.0] 1 0\n",  # missing crop
        "vid [1.0, x] 1 0 0\n",  # bad float
        "vid 1.0, 2.0 1 0 0\n",  # no brackets
        "vid [1.0] one 0 0\n",  # bad label
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "0.txt"
    path.write_text("header\nvid [1.0, 2.0] 1 0 0\n" + bad)
    with pytest.raises(ValueError, match=rf"{path}:3: malformed view line"):
        merge_views([path])


def test_merge_handles_padding_duplicates_and_blank_lines(tmp_path: Path) -> None:
    lines = [format_view_line("a", [0.0, 1.0], 1, 0, 0), format_view_line("a", [5.0, 0.0], 1, 0, 0)]
    path = write_rank_file(tmp_path / "0.txt", [*lines, "\n"])
    result = merge_views([path])
    assert result.n_views_used == [1]  # the padded repeat is dropped
    np.testing.assert_allclose(result.mean_prob[0], softmax_f64(np.array([0.0, 1.0])), rtol=1e-12, atol=0)
    assert result.top1 == 100.0


def test_merge_rejects_empty_and_unknown_mode(tmp_path: Path) -> None:
    path = write_rank_file(tmp_path / "0.txt", [], header="only a header")
    with pytest.raises(ValueError, match="no view lines"):
        merge_views([path])
    with pytest.raises(ValueError, match="dedupe"):
        merge_views([path], dedupe="string")  # type: ignore[arg-type]


def test_softmax_f64_is_stable() -> None:
    p = softmax_f64(np.array([1000.0, 1000.0]))
    np.testing.assert_allclose(p, [0.5, 0.5], rtol=1e-12, atol=0)
