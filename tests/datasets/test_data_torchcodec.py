"""The optional torchcodec decoder (``decoder="torchcodec"``, issue 24.4): PyAV's frames on the CPU.

Unreadable inputs: `test_data_decoding.test_unreadable_inputs_raise_one_error_type` covers it too.

Skipped, with the reason, where torchcodec is not installed or cannot load its FFmpeg libraries;
the "unavailable" path is tested everywhere.
"""

from __future__ import annotations

import pytest
import torch

import datasets.decoding
from datasets import build_pretraining_dataset
from datasets.decoding import PyAVVideo, check_decoder, open_video
from datasets.decoding_torchcodec import PYAV_CODECS, TorchCodecVideo
from tests.datasets.test_data_decoding import _encode, needs_torchcodec


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory, video_path: str) -> dict[str, str]:
    """H.264 mp4 (the generated data set's), VP9 webm, MPEG-4 part 2 avi without and with B-frames."""
    root = tmp_path_factory.mktemp("torchcodec")
    return {
        "mp4": video_path,
        "webm": _encode(root / "clip.webm", "libvpx-vp9"),
        "avi": _encode(root / "clip.avi", "mpeg4"),
        "avi_bframes": _encode(root / "bframes.avi", "mpeg4", bframes=2),
        "h264_bframes": _encode(root / "bframes.mp4", "libx264", frames=40, bframes=3),
    }


@needs_torchcodec
@pytest.mark.parametrize("kind", ["mp4", "webm", "avi", "avi_bframes", "h264_bframes"])
def test_same_frames_as_pyav(containers: dict[str, str], kind: str) -> None:
    path = containers[kind]
    with PyAVVideo(path) as pyav, open_video(path, "torchcodec") as codec:
        # MPEG-4 part 2 is read by PyAV (torchcodec 0.17 mis-seeks in it when it has B-frames)
        assert isinstance(codec, PyAVVideo) == kind.startswith("avi")
        assert len(codec) == len(pyav)
        n = len(pyav)
        for indices in (list(range(n)), list(range(1, n, 4)), [n - 1, 0, 5, 5, n // 2]):
            assert torch.equal(codec.get_frames(indices), pyav.get_frames(indices)), (kind, indices)


@needs_torchcodec
def test_torchcodec_itself_mis_seeks_in_mpeg4_with_bframes(containers: dict[str, str]) -> None:
    """Why MPEG-4 part 2 goes to PyAV; when a torchcodec release fixes it, this fails: drop the rule."""
    path = containers["avi_bframes"]
    with PyAVVideo(path) as pyav, TorchCodecVideo(path) as codec:
        assert codec.codec in PYAV_CODECS
        strided = list(range(1, len(pyav) - 1, 4))
        assert not torch.equal(codec.get_frames(strided), pyav.get_frames(strided))


@needs_torchcodec
def test_pretraining_items_equal_pyav_ones(synthetic) -> None:
    small = dict(num_frames=8, sampling_rate=2, input_size=32, patch_size=16, normalize=False)
    pyav = build_pretraining_dataset(synthetic["pretrain"], decoder="pyav", **small)
    codec = build_pretraining_dataset(synthetic["pretrain"], decoder="torchcodec", **small)
    for index in (0, 4):
        assert torch.equal(codec[index]["video"], pyav[index]["video"])


def test_unavailable_torchcodec_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where torchcodec cannot load, choosing it says why (bench_data: tests/test_bench_data.py)."""
    monkeypatch.setattr(datasets.decoding, "torchcodec_problem", lambda: "decoder 'torchcodec' needs X")
    with pytest.raises(ImportError, match="decoder 'torchcodec' needs X"):
        check_decoder("torchcodec")
