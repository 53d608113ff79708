"""PyAV's clip fast path (start at a key frame, stop after the last wanted frame, skip unwanted
non-reference frames; in key-frame-only streams send only the wanted packets) returns the same uint8
frames as decoding the whole file, on every container and codec the public data sets ship (and the
quickstart's Motion JPEG), at clip positions that stress the key-frame choice.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from datasets import VideoDecodeError
from datasets.decoding import PyAVVideo

FRAMES = 60
GOP = 12  # key frames at 0, 12, 24, ...: clips start on, just after and just before one


def _encode(
    path: Path, codec: str, *, options: dict[str, str] | None = None, bframes: int = 0, pix_fmt: str = "yuv420p"
) -> str:
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.gop_size = GOP
        if options:
            stream.options = options
        if bframes:
            stream.codec_context.max_b_frames = bframes
        for t in range(FRAMES):
            image = (rng.random((48, 64, 3)) * 80).astype(np.uint8)
            image[:, t % 56 : t % 56 + 8] = 255  # a moving bar: every frame differs
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Kinetics-like H.264 mp4 (B-pyramid), its transcoded form, UCF-like avi, SSv2-like webm."""
    root = tmp_path_factory.mktemp("fastpath")
    keyint = f"keyint={GOP}:min-keyint={GOP}:scenecut=0"
    return {
        "h264_mp4": _encode(root / "k.mp4", "libx264", options={"x264-params": keyint}),
        "h264_transcoded": _encode(
            root / "t.mp4",
            "libx264",
            options={"tune": "fastdecode", "x264-params": f"{keyint}:b-pyramid=none"},
        ),
        "mpeg4_avi": _encode(root / "u.avi", "mpeg4"),
        "mpeg4_avi_bframes": _encode(root / "b.avi", "mpeg4", bframes=2),
        "vp9_webm": _encode(root / "s.webm", "libvpx-vp9"),
        # key frames only: the quickstart's videos (datasets.synthetic --codec mjpeg), all-intra H.264
        "mjpeg_avi": _encode(root / "m.avi", "mjpeg", pix_fmt="yuvj420p"),
        "h264_intra": _encode(root / "i.mp4", "libx264", options={"x264-params": "keyint=1:min-keyint=1"}),
    }


def _full_decode(path: str) -> torch.Tensor:
    """Every frame, in presentation order, by plain PyAV (no seeking, no skipping): uint8 [N, H, W, 3]."""
    with av.open(path) as container:
        frames = sorted(container.decode(video=0), key=lambda frame: frame.pts)
        return torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in frames]))


def _clips(length: int) -> list[list[int]]:
    """Pre-training-style strided clips at the start, middle and end and around key frames."""
    starts = [0, 1, GOP - 1, GOP, GOP + 1, 2 * GOP - 1, length // 2, length - 16]
    clips = [list(range(s, min(s + 16, length), 2)) for s in starts]
    return clips + [[length - 1], [GOP], [GOP - 1, GOP], [length - 1, 0, GOP, GOP]]


KINDS = ["h264_mp4", "h264_transcoded", "mpeg4_avi", "mpeg4_avi_bframes", "vp9_webm", "mjpeg_avi", "h264_intra"]
INTRA_ONLY = {"mjpeg_avi", "h264_intra"}


def _check_against_full_decode(path: str) -> None:
    full = _full_decode(path)
    with PyAVVideo(path) as video:
        assert len(video) == len(full) == FRAMES
        for indices in _clips(len(video)):  # one reader: later requests restart after earlier ones
            assert torch.equal(video.get_frames(indices), full[indices]), indices


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_full_decode(videos: dict[str, str], kind: str) -> None:
    _check_against_full_decode(videos[kind])


@pytest.mark.parametrize("kind", ["mpeg4_avi", "h264_transcoded"])
def test_a_broken_seek_fails_the_check(
    videos: dict[str, str], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting at the first wanted frame, not at the key frame before it, fails the check above:
    silently wrong frames (MPEG-4 part 2) or frames the decoder cannot produce (H.264)."""
    original = PyAVVideo._packet_span

    def no_key_frame(self: PyAVVideo, wanted: set[int]) -> tuple[int, int]:
        _, stop = original(self, wanted)
        ranks = [self._rank[p.pts] for p in self._packets]
        return next(i for i, rank in enumerate(ranks) if rank >= min(wanted)), stop

    monkeypatch.setattr(PyAVVideo, "_packet_span", no_key_frame)
    expected = AssertionError if kind == "mpeg4_avi" else VideoDecodeError
    with pytest.raises(expected):
        _check_against_full_decode(videos[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_key_frame_only_streams_decode_only_the_wanted_frames(
    videos: dict[str, str], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream of key frames only decodes each clip's own frames (8 of a 16-frame span at stride 2);
    any other stream decodes from its key frame on, so that the frames stay exact."""
    decoded: list[int] = []
    original = PyAVVideo._frames

    def counted(self: PyAVVideo, wanted: set[int]):
        for index, frame in original(self, wanted):
            decoded.append(index)
            yield index, frame

    monkeypatch.setattr(PyAVVideo, "_frames", counted)
    with PyAVVideo(videos[kind]) as video:
        assert video._intra_only == (kind in INTRA_ONLY)
        clip = list(range(GOP + 1, GOP + 17, 2))
        video.get_frames(clip)
    if kind in INTRA_ONLY:
        assert decoded == clip
    else:
        assert len(decoded) > len(clip) and set(clip) <= set(decoded)
