"""decord and PyAV readers, the automatic fallback, frame folders and unreadable inputs."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from datasets import VideoDecodeError, decoding
from datasets.decoding import PyAVVideo, check_decoder, open_video
from datasets.decoding_torchcodec import torchcodec_problem
from datasets.frames import FrameFolder

needs_decord = pytest.mark.skipif(decoding.decord is None, reason="decord is not installed")
needs_torchcodec = pytest.mark.skipif(torchcodec_problem() is not None, reason=str(torchcodec_problem()))


def _encode(path: Path, codec: str, frames: int = 30, bframes: int = 0) -> str:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if bframes:
            stream.codec_context.max_b_frames = bframes
        for t in range(frames):
            image = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
            image[:, (2 * t) % 56 : (2 * t) % 56 + 8] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return str(path)


@pytest.fixture(scope="module")
def other_containers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SSv2-style VP9 webm and UCF-style MPEG-4 part 2 avi, without and with B-frames."""
    root = tmp_path_factory.mktemp("containers")
    return {
        "webm": _encode(root / "clip.webm", "libvpx-vp9"),
        "avi": _encode(root / "clip.avi", "mpeg4"),
        "avi_bframes": _encode(root / "bframes.avi", "mpeg4", bframes=2),
    }


@needs_decord
def test_decord_and_pyav_agree(video_path: str, other_containers: dict[str, str]) -> None:
    # Not on the B-frame avi: decord returns frame i - 1 for some i after seeking there.
    for path in [video_path, other_containers["webm"], other_containers["avi"]]:
        with open_video(path, "decord") as a, open_video(path, "pyav") as b:
            assert len(a) == len(b)
            indices = [0, 3, 7, 7, 2, len(a) - 1]
            fa, fb = a.get_frames(indices), b.get_frames(indices)
            assert fa.shape == fb.shape == (6, 48, 64, 3) and fa.dtype == fb.dtype == torch.uint8
            assert (fa.float() - fb.float()).abs().mean() < 3.0


@needs_decord
def test_decord_and_pyav_bit_identical_on_h264_strided_clip(video_path: str) -> None:
    """The generated H.264 (B-frames) videos: a pre-training-style strided clip is the same bytes."""
    with open_video(video_path, "decord") as a, open_video(video_path, "pyav") as b:
        indices = list(range(1, len(a), 3))
        assert torch.equal(a.get_frames(indices), b.get_frames(indices))


def test_pyav_sparse_decode_equals_full_decode(video_path: str, other_containers: dict[str, str]) -> None:
    for path in [video_path, *other_containers.values()]:
        with open_video(path, "pyav") as video:
            full = video.get_frames(range(len(video)))
            indices = [20, 4, 8, 8, 12, 23]
            # Later requests restart from a key frame and skip unneeded non-reference frames.
            assert torch.equal(video.get_frames(indices), full[indices])
            assert torch.equal(video.get_frames([5]), full[[5]])
            assert torch.equal(video.get_frames([17, 18]), full[[17, 18]])
    with open_video(video_path, "pyav") as video:
        assert len(video) == 24 and video.fps == pytest.approx(25.0)


@pytest.mark.parametrize("decoder", ["pyav", pytest.param("decord", marks=needs_decord)])
def test_resize_while_decoding(video_path: str, decoder: str) -> None:
    with open_video(video_path, decoder) as video:
        small = video.get_frames([0, 5], size=(24, 32))
        assert small.shape == (2, 24, 32, 3)
        full = video.get_frames([0, 5]).permute(0, 3, 1, 2).float()
        reference = torch.nn.functional.interpolate(full, size=(24, 32), mode="area").permute(0, 2, 3, 1)
        assert (small.float() - reference).abs().mean() < 12


def test_out_of_range_index(video_path: str) -> None:
    with open_video(video_path, "pyav") as video, pytest.raises(IndexError):
        video.get_frames([24])


def test_auto_tries_pyav_first(video_path: str) -> None:
    with open_video(video_path, "auto") as video:
        assert isinstance(getattr(video, "_reader", video), PyAVVideo)  # no wrapper without decord
        frames = video.get_frames([1, 2])
    with open_video(video_path, "pyav") as video:
        assert torch.equal(frames, video.get_frames([1, 2]))


@needs_decord
def test_auto_falls_back_to_decord_when_pyav_fails_to_decode(
    video_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, indices, size=None):
        raise VideoDecodeError("PyAV broke")

    monkeypatch.setattr(decoding.PyAVVideo, "get_frames", broken)
    with open_video(video_path, "auto") as video:
        frames = video.get_frames([1, 2])
        assert isinstance(video._reader, decoding.DecordVideo)
    with open_video(video_path, "decord") as video:
        assert torch.equal(frames, video.get_frames([1, 2]))


@needs_decord
def test_auto_falls_back_to_decord_when_pyav_cannot_open(
    video_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, path):
        raise VideoDecodeError("PyAV cannot open")

    monkeypatch.setattr(decoding.PyAVVideo, "__init__", broken)
    with open_video(video_path, "auto") as video:
        assert isinstance(video._reader, decoding.DecordVideo) and len(video) == 24


@needs_decord
def test_fallback_with_fewer_frames_is_a_decode_error(
    video_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, indices, size=None):
        raise VideoDecodeError("PyAV broke")

    monkeypatch.setattr(decoding.PyAVVideo, "get_frames", broken)
    monkeypatch.setattr(decoding.PyAVVideo, "__len__", lambda self: 30)  # PyAV over-counts
    with open_video(video_path, "auto") as video, pytest.raises(VideoDecodeError, match="out of range"):
        video.get_frames([2, 27])


def test_auto_without_decord(video_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "decord", None)
    with open_video(video_path, "auto") as video:
        assert isinstance(video, PyAVVideo)
    with pytest.raises(ImportError, match="decord"):
        check_decoder("decord")
    with pytest.raises(ValueError, match="decoder must be one of"):
        check_decoder("opencv")


@pytest.mark.parametrize(
    "decoder",
    [
        "auto",
        "pyav",
        pytest.param("decord", marks=needs_decord),
        pytest.param("torchcodec", marks=needs_torchcodec),
    ],
)
@pytest.mark.parametrize(
    "kind", ["empty", "truncated", "garbage", "codec", "corrupt", "missing", "symlink_loop", "directory"]
)
def test_unreadable_inputs_raise_one_error_type(bad_files: dict[str, str], kind: str, decoder: str) -> None:
    with pytest.raises(VideoDecodeError), open_video(bad_files[kind], decoder) as video:
        video.get_frames(range(0, len(video), 3))


def test_frame_folder(frame_folders: dict[str, object]) -> None:
    with open_video(frame_folders["long"]) as folder:
        assert isinstance(folder, FrameFolder) and len(folder) == 30 and folder.fps is None
        frames = folder.get_frames([12, 0, 29, 12])
        assert frames.shape == (4, 48, 64, 3) and frames.dtype == torch.uint8
        assert frames[:, 0, 0, 0].tolist() == [96, 0, 232, 96]  # red channel = 8 * frame number
        assert folder.get_frames([1], size=(24, 32)).shape == (1, 24, 32, 3)
    assert len(FrameFolder(str(frame_folders["short"]), num_frames=5)) == 5  # the list's count wins


def test_frame_folder_natural_order(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        Image = pytest.importorskip("PIL.Image")
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f"f{i}.png")
    assert FrameFolder(str(tmp_path)).get_frames([0, 1, 2])[:, 0, 0, 0].tolist() == [1, 2, 10]


def test_broken_frame_folders(frame_folders: dict[str, object]) -> None:
    with pytest.raises(VideoDecodeError, match="cannot read frame"):
        FrameFolder(str(frame_folders["broken"])).get_frames([2, 3])
    with pytest.raises(VideoDecodeError, match="holds no images"):
        FrameFolder(str(frame_folders["empty"]))
    with pytest.raises(VideoDecodeError, match="listed with 20 frames but holds 7"):
        FrameFolder(str(frame_folders["short"]), num_frames=20).get_frames([15])
    with pytest.raises(VideoDecodeError, match="cannot list"):
        FrameFolder(os.path.join(str(frame_folders["root"]), "nope"))
