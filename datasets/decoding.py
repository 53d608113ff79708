"""Video decoding: decord (the reference's decoder) and PyAV, behind one small interface.

Every reader has ``__len__``, ``fps`` and ``get_frames(indices, size=None)`` returning uint8
``[T, H, W, 3]`` RGB, plus ``close()`` / context-manager use. Back-end exceptions are translated
into :class:`~datasets.errors.VideoDecodeError`, so callers catch exactly one type.

``decoder="auto"`` uses PyAV and falls back to decord (when installed) for a file PyAV fails on (at
open or while decoding); ``"decord"`` / ``"pyav"`` force one back-end; ``"torchcodec"`` (optional,
:mod:`datasets.decoding_torchcodec`) uses the PyTorch project's decoder. PyAV comes first because it
decodes only what a clip needs (see :class:`PyAVVideo`); decord decodes every frame up to the last
one asked for, has had no release since 2021 and returns a wrong frame after seeking in MPEG-4
part 2 files with B-frames.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from typing import Literal, Protocol

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from .decoding_torchcodec import PYAV_CODECS, TorchCodecVideo, torchcodec_problem
from .errors import VideoDecodeError
from .frames import FrameFolder

try:
    import decord
except ImportError:  # decord has no wheels for some platforms; PyAV covers them.
    decord = None

Decoder = Literal["auto", "decord", "pyav", "torchcodec"]
DECODERS: tuple[str, ...] = ("auto", "decord", "pyav", "torchcodec")

logger = logging.getLogger("datasets")

_PYAV_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError)
_DECORD_ERRORS: tuple[type[BaseException], ...] = (
    # decord reports an empty or unreadable stream with a bare ``assert`` in VideoReader.__init__.
    (decord.DECORDError, RuntimeError, ValueError, AssertionError) if decord is not None else ()
)
_local = threading.local()


class VideoReader(Protocol):
    """What the datasets and visualisation scripts need from a decoded video."""

    fps: float | None

    def __len__(self) -> int: ...

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Frames ``indices`` (any order, repeats allowed) as uint8 ``[T, H, W, 3]``; ``size`` = (H, W)."""
        ...

    def close(self) -> None: ...


def check_decoder(decoder: str) -> None:
    """Fail early (at dataset build time) on an unknown or unavailable decoder."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "decord" and decord is None:
        raise ImportError("decoder='decord' needs the decord package; install it or use decoder='auto'")
    if decoder == "torchcodec" and torchcodec_problem() is not None:
        raise ImportError(torchcodec_problem())


def open_video(
    path: str | os.PathLike[str], decoder: Decoder = "auto", num_frames: int | None = None
) -> VideoReader:
    """Open a video file, or a frame folder when ``path`` is a directory.

    Args:
        path: video file or directory of frames.
        decoder: ``"auto"`` (PyAV, decord fallback), ``"decord"``, ``"pyav"`` or ``"torchcodec"``.
        num_frames: frame count of a frame folder as listed (``None``: count the images).

    Raises:
        VideoDecodeError: missing, empty, unreadable or undecodable input.
    """
    check_decoder(decoder)
    path = os.fspath(path)
    try:
        info = os.stat(path)  # follows symlinks: a loop raises ELOOP here
    except OSError as err:
        raise VideoDecodeError(f"cannot open {path}: {err}") from err
    if stat.S_ISDIR(info.st_mode):
        return FrameFolder(path, num_frames)
    if not stat.S_ISREG(info.st_mode):
        raise VideoDecodeError(f"{path} is not a regular file")
    if info.st_size == 0:
        # Checked here so decord never sees it (it logs noisily and the reference even hung on tiny files).
        raise VideoDecodeError(f"{path} is empty")
    if decoder == "pyav" or (decoder == "auto" and decord is None):  # nothing to fall back to
        return PyAVVideo(path)
    if decoder == "decord":
        return DecordVideo(path)
    if decoder == "torchcodec":
        reader = TorchCodecVideo(path)
        if reader.codec not in PYAV_CODECS:
            return reader
        reader.close()  # a codec torchcodec mis-seeks in: PyAV's frames instead
        return PyAVVideo(path)
    return _FallbackVideo(path)


def _checked(indices: Sequence[int], length: int, path: str) -> list[int]:
    order = [int(i) for i in indices]
    for index in order:
        if not 0 <= index < length:
            raise IndexError(f"frame {index} out of range for {path} ({length} frames)")
    return order


class PyAVVideo:
    """PyAV reader that decodes only what a request needs.

    All packets are demuxed once (cheap; the compressed clip fits in memory) so frame ``i`` is the
    ``i``-th presentation timestamp, as in decord. A request decodes from the last key frame at or
    before its first frame, and tells the decoder to drop non-reference frames that are not
    requested (``skip_frame="NONREF"``), which leaves the requested frames bit-identical; in a stream
    of key frames only (MJPEG, all-intra H.264) only the requested frames are decoded. Colour
    conversion (and an optional resize) happens only for requested frames.

    Demuxing only what a clip needs (an index of timestamps and key frames, then a seek) was
    measured and not done (issue 24.3; 2-core AMD EPYC Zen 5, shared, in-process CPU time): the full
    demux adds 0.4-0.6 ms per clip to ``av.open``'s 1.0-1.6 ms on transcoded files (0.6-0.8 ms to
    2.5-3.2 ms on raw long-GOP ones), and a seek with a free, perfect index saved 0.42-0.45 ms per
    16x4 clip at the median of three paired runs (raw: 0.13-0.22 ms: those clips decode from frame
    0 anyway, only the packets after the clip are spared), about 2 % of a clip's CPU time, below
    the ~10 % spread of the pipeline's clips per CPU-second between runs, while an index would be a
    second file to keep in step with each video.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._container = None
        try:
            self._container = av.open(path, metadata_errors="ignore")
            self._stream = self._container.streams.video[0]
            if self._stream.codec_context is None:
                raise VideoDecodeError(f"{path}: no decoder for its video codec")
            # One thread per reader: DataLoader workers already use every core.
            self._stream.codec_context.thread_count = 1
            self._packets = [p for p in self._container.demux(self._stream) if p.size > 0]
        except _PYAV_ERRORS as err:
            self.close()
            raise VideoDecodeError(f"cannot open {path} with PyAV: {err}") from err
        except VideoDecodeError:
            self.close()
            raise
        if not self._packets:
            self.close()
            raise VideoDecodeError(f"{path} has no video frames")
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._rank = _presentation_ranks(self._packets)
        # Every packet a key frame (MJPEG, all-intra H.264): each frame decodes on its own, so a
        # request sends only its own packets (8 of a 16-frame span at stride 2, not all 16).
        self._intra_only = self._rank is not None and all(p.is_keyframe for p in self._packets)
        self._started = False

    def __len__(self) -> int:
        return len(self._packets)

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Frames ``indices`` as uint8 ``[T, H, W, 3]`` (``size`` = (H, W) resizes while converting)."""
        order = _checked(indices, len(self), self.path)
        rows: dict[int, list[int]] = {}
        for row, index in enumerate(order):
            rows.setdefault(index, []).append(row)
        clip = _ClipBuffer(rows, len(order), size)
        try:
            for index, frame in self._frames(set(rows)):
                clip.put(index, frame)
                if clip.complete:
                    break
        except _PYAV_ERRORS as err:
            raise VideoDecodeError(f"cannot decode {self.path} with PyAV: {err}") from err
        if not clip.complete:
            raise VideoDecodeError(f"{self.path}: frames {clip.missing[:5]} could not be decoded")
        return torch.from_numpy(clip.array)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> PyAVVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frames(self, wanted: set[int]) -> Iterator[tuple[int, av.VideoFrame]]:
        """(frame index, decoded frame) from the last key frame before the first wanted frame on."""
        codec = self._stream.codec_context
        if self._started:
            codec.flush_buffers()
        self._started = True
        start, stop = (0, len(self._packets)) if self._rank is None else self._packet_span(wanted)
        packets = self._packets[start:stop]
        if self._intra_only:
            packets = [p for p in packets if self._rank[p.pts] in wanted]
        position = 0  # output order: the index when timestamps cannot give it
        for packet in packets:
            if self._rank is not None:
                codec.skip_frame = "DEFAULT" if self._rank[packet.pts] in wanted else "NONREF"
            for frame in codec.decode(packet):
                yield self._index(frame, position), frame
                position += 1
        codec.skip_frame = "DEFAULT"
        for frame in codec.decode(None):  # drain frames held back for reordering
            yield self._index(frame, position), frame
            position += 1

    def _packet_span(self, wanted: set[int]) -> tuple[int, int]:
        """Packets [start, stop) to send: from the last key frame at or before the first wanted frame
        to the last wanted frame in decode order.

        Stopping there and draining the decoder returns the frames it holds back for reordering
        without decoding the reference frames that follow the clip (they cannot change it).
        """
        first = min(wanted)
        start = stop = 0
        for i, packet in enumerate(self._packets):
            rank = self._rank[packet.pts]
            if packet.is_keyframe and rank <= first:
                start = i
            if rank in wanted:
                stop = i + 1
        return start, stop

    def _index(self, frame: av.VideoFrame, position: int) -> int:
        if self._rank is None:
            return position
        if frame.pts not in self._rank:
            raise VideoDecodeError(f"{self.path}: decoded frame with unknown timestamp {frame.pts}")
        return self._rank[frame.pts]


class _ClipBuffer:
    """Requested frames, converted to RGB and written straight into one uint8 ``[T, H, W, 3]`` array.

    ``rows`` maps a frame index to every output row that asked for it (requests may repeat frames).
    """

    def __init__(self, rows: dict[int, list[int]], count: int, size: tuple[int, int] | None) -> None:
        self._rows, self._count, self._size = rows, count, size
        self._pending = set(rows)
        self.array: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return not self._pending

    @property
    def missing(self) -> list[int]:
        return sorted(self._pending)

    def put(self, index: int, frame: av.VideoFrame) -> None:
        if index not in self._pending:
            return
        self._pending.discard(index)
        rgb = _rgb(frame, self._size)
        if self.array is None:
            self.array = np.empty((self._count, *rgb.shape), dtype=np.uint8)
        self.array[self._rows[index]] = rgb


def _presentation_ranks(packets: list[av.Packet]) -> dict[int, int] | None:
    """Map packet pts -> frame index (presentation order); ``None`` if timestamps cannot do that."""
    stamps = [p.pts for p in packets]
    if any(s is None for s in stamps) or len(set(stamps)) != len(stamps):
        return None
    return {pts: rank for rank, pts in enumerate(sorted(stamps))}


def _rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    """``frame`` as RGB ``[H, W, 3]``: a view of a converted copy (one copy fewer than ``to_ndarray``)."""
    height, width = size if size is not None else (None, None)
    # threads=1: swscale's default thread pool would both use extra cores and, inherited by a
    # forked DataLoader worker without its threads, hang the worker on its first conversion.
    rgb = _reformatter().reformat(frame, width=width, height=height, format="rgb24", threads=1)
    plane = rgb.planes[0]
    # Rows are padded to line_size bytes; slicing the padding off keeps this a view.
    rows = np.frombuffer(plane, np.uint8, count=rgb.height * plane.line_size).reshape(rgb.height, -1)
    return rows[:, : rgb.width * 3].reshape(rgb.height, rgb.width, 3)


def _reformatter() -> VideoReformatter:
    """This thread's reformatter, made anew in a forked child.

    Reusing one keeps its swscale context, whose set-up costs more than converting a small frame.
    """
    cached = getattr(_local, "reformatter", None)
    if cached is None or cached[0] != os.getpid():
        cached = _local.reformatter = (os.getpid(), VideoReformatter())
    return cached[1]


class DecordVideo:
    """decord reader, configured as the reference (one thread, CPU); ``size`` reopens at that size."""

    def __init__(self, path: str) -> None:
        if decord is None:
            raise ImportError("decord is not installed")
        self.path = path
        self._readers = {None: self._open(None)}
        self.fps = float(self._readers[None].get_avg_fps()) or None

    def __len__(self) -> int:
        return len(self._readers[None])

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Frames ``indices`` as uint8 ``[T, H, W, 3]`` (``size`` = (H, W), resized by decord)."""
        order = _checked(indices, len(self), self.path)
        key = tuple(size) if size is not None else None
        if key not in self._readers:
            self._readers[key] = self._open(key)
        try:
            return torch.from_numpy(self._readers[key].get_batch(order).asnumpy())
        except _DECORD_ERRORS as err:
            raise VideoDecodeError(f"cannot decode {self.path} with decord: {err}") from err

    def close(self) -> None:
        self._readers.clear()

    def __enter__(self) -> DecordVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, size: tuple[int, int] | None):
        height, width = size if size is not None else (-1, -1)
        try:
            return decord.VideoReader(self.path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
        except _DECORD_ERRORS as err:
            raise VideoDecodeError(f"cannot open {self.path} with decord: {err}") from err


class _FallbackVideo:
    """PyAV first; on a PyAV failure (open or decode) the same request is served by decord.

    PyAV decodes only what a clip needs (decord decodes every frame up to the last one asked for)
    and is maintained; decord stays as the second chance for files PyAV cannot read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._reader: VideoReader = PyAVVideo(path)
        except VideoDecodeError as err:
            self._reader = self._switch(err)

    @property
    def fps(self) -> float | None:
        return self._reader.fps

    def __len__(self) -> int:
        return len(self._reader)

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        if isinstance(self._reader, PyAVVideo):
            try:
                return self._reader.get_frames(indices, size)
            except VideoDecodeError as err:
                self._reader.close()
                self._reader = self._switch(err)
        try:
            return self._reader.get_frames(indices, size)
        except IndexError as err:
            # The indices came from PyAV's frame count; decord may count fewer in a broken file.
            raise VideoDecodeError(f"{self.path}: {err}; PyAV had counted more") from err

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> _FallbackVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _switch(self, pyav_error: VideoDecodeError) -> DecordVideo:
        logger.debug("PyAV failed (%s); retrying %s with decord", pyav_error, self.path)
        try:
            return DecordVideo(self.path)
        except VideoDecodeError as err:
            raise VideoDecodeError(f"{err} (PyAV: {pyav_error})") from err
