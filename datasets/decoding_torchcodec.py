"""Optional decoder: torchcodec, the PyTorch project's own video decoder (CPU, or NVDEC on CUDA).

Not a requirement: it is imported only when ``decoder="torchcodec"`` is chosen, and
:func:`torchcodec_problem` says in one line why it cannot be used (not installed, or its FFmpeg
libraries missing: the wheels link FFmpeg 4-8 from the system, e.g. Debian's ``libavcodec59``
+ ``libavformat59`` + ``libavdevice59`` + ``libavfilter8`` + ``libswscale6`` + ``libswresample4``).
Frame ``i`` is the ``i``-th in presentation order (``seek_mode="exact"`` scans the file's index,
as PyAV's demux does), so on the CPU it returns the frames :class:`~datasets.decoding.PyAVVideo`
returns (tested on H.264 with B-frames, VP9, MPEG-4 part 2). Not on MPEG-4 part 2 files with
B-frames (UCF101's xvid avi can have them): torchcodec 0.17 returns other frames after a seek and
cannot decode their last frame, so :func:`~datasets.decoding.open_video` reads MPEG-4 part 2 files
with PyAV (:data:`PYAV_CODECS`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from .errors import VideoDecodeError

# codecs torchcodec does not decode as PyAV does (see the module docstring)
PYAV_CODECS = frozenset({"mpeg4"})


@functools.cache
def torchcodec_problem() -> str | None:
    """``None`` when torchcodec decodes here, else why not (one line, with what to do)."""
    try:
        import torchcodec
    except ImportError:
        return "decoder 'torchcodec' needs the torchcodec package (pip install torchcodec); or use --decoder auto"
    except (OSError, RuntimeError) as err:  # e.g. a backend extension that fails to load
        return f"decoder 'torchcodec' cannot be imported ({str(err).strip().splitlines()[0]}); use --decoder auto"
    if torchcodec.ffmpeg_major_version is None:  # set at import: None when no FFmpeg it links loads
        return (
            "decoder 'torchcodec' found no FFmpeg 4-8 shared libraries it can load; install them (e.g. apt-get "
            "install libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4) or use "
            "--decoder auto"
        )
    return None


class TorchCodecVideo:
    """torchcodec reader, one FFmpeg thread (DataLoader workers already use every core).

    ``device="cuda"`` decodes on the GPU (NVDEC) and returns frames there; the CPU default is
    what the datasets use.
    """

    def __init__(self, path: str, device: str = "cpu") -> None:
        problem = torchcodec_problem()
        if problem is not None:
            raise ImportError(problem)
        self.path, self.device = path, device
        self._decoders = {None: self._open(None)}
        self._length = int(self._decoders[None].metadata.num_frames or 0)
        if self._length < 1:
            raise VideoDecodeError(f"{path} has no video frames")
        rate = self._decoders[None].metadata.average_fps
        self.fps = float(rate) if rate else None

    @property
    def codec(self) -> str | None:
        """FFmpeg's name of the video codec (e.g. ``h264``)."""
        return self._decoders[None].metadata.codec

    def __len__(self) -> int:
        return self._length

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Frames ``indices`` as uint8 ``[T, H, W, 3]`` (``size`` = (H, W): resized by torchcodec,
        whose interpolation is not PyAV's; only the frames at the native size are PyAV's)."""
        key = tuple(size) if size is not None else None
        if key not in self._decoders:
            self._decoders[key] = self._open(key)
        order = [int(i) for i in indices]
        for index in order:
            if not 0 <= index < self._length:
                raise IndexError(f"frame {index} out of range for {self.path} ({self._length} frames)")
        try:
            return self._decoders[key].get_frames_at(order).data
        except (RuntimeError, ValueError, IndexError) as err:
            raise VideoDecodeError(f"cannot decode {self.path} with torchcodec: {err}") from err

    def close(self) -> None:
        self._decoders.clear()

    def __enter__(self) -> TorchCodecVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, size: tuple[int, int] | None) -> Any:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize

        try:
            return VideoDecoder(
                self.path, dimension_order="NHWC", num_ffmpeg_threads=1, device=self.device,
                seek_mode="exact", transforms=None if size is None else [Resize(size)],
            )  # fmt: skip
        except (RuntimeError, ValueError, OSError) as err:
            raise VideoDecodeError(f"cannot open {self.path} with torchcodec: {err}") from err
