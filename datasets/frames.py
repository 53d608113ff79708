"""Frame folders (one image per frame, e.g. SSv2 / UCF101 "rawframes") read as a video."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as F
from torchvision.io import ImageReadMode, decode_image, read_file

from .errors import VideoDecodeError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> list[object]:
    # "img_10.jpg" sorts after "img_9.jpg" even without zero padding.
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


class FrameFolder:
    """A directory of images, frame i = i-th image in natural name order.

    Args:
        directory: the folder.
        num_frames: the frame count from the list file (the reference samples from this count);
            ``None`` counts the images.
    """

    fps: float | None = None

    def __init__(self, directory: str, num_frames: int | None = None) -> None:
        self.path = directory
        try:
            with os.scandir(directory) as entries:
                names = [e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS)]
        except OSError as err:
            raise VideoDecodeError(f"cannot list frame folder {directory}: {err}") from err
        if not names:
            raise VideoDecodeError(f"frame folder {directory} holds no images")
        self._files = sorted(names, key=_natural_key)
        self._length = len(self._files) if num_frames is None else num_frames

    def __len__(self) -> int:
        return self._length

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Read frames ``indices`` as uint8 ``[T, H, W, 3]`` (``size`` = (H, W) resizes each image)."""
        decoded: dict[int, torch.Tensor] = {}
        for index in dict.fromkeys(int(i) for i in indices):
            decoded[index] = self._read(index, size)
        try:
            video = torch.stack([decoded[int(i)] for i in indices])  # [T, 3, H, W]
        except RuntimeError as err:
            raise VideoDecodeError(f"frames of {self.path} differ in size: {err}") from err
        return video.permute(0, 2, 3, 1)

    def close(self) -> None:
        """Nothing to release (kept for the common reader interface)."""

    def __enter__(self) -> FrameFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, index: int, size: tuple[int, int] | None) -> torch.Tensor:
        if not 0 <= index < self._length:
            raise IndexError(f"frame {index} out of range for {self.path} ({self._length} frames)")
        if index >= len(self._files):
            raise VideoDecodeError(
                f"{self.path} is listed with {self._length} frames but holds {len(self._files)} images"
            )
        path = os.path.join(self.path, self._files[index])
        try:
            image = decode_image(read_file(path), mode=ImageReadMode.RGB)  # [3, H, W] uint8
        except (RuntimeError, OSError, ValueError) as err:
            raise VideoDecodeError(f"cannot read frame {path}: {err}") from err
        if size is not None and tuple(image.shape[-2:]) != tuple(size):
            image = F.resize(image, list(size), antialias=True)
        return image
