"""Rendering of the generated action videos (see :mod:`datasets.synthetic`).

Two scenes share the motions: ``object`` (:class:`SceneRenderer`, below) and ``camera``
(:class:`CameraRenderer`: the whole view pans, rolls or zooms over a still scene).

A textured shape moves over a static textured background among drifting distractor blobs. The
class is the shape's *motion*; its appearance, position, angle and size at any single frame are
drawn from the same distribution for every class: positions live on a torus (the shape wraps
around the frame edges), angles start uniform, and sizes move on a wrapped log-scale range with a
uniform phase. So one frame carries no class information; two or more do.

A wrapped size jumps from one end of the range to the other, a sudden step against the class's
motion; so "grow" and "shrink" cover only 40 % of the range per video (times ``speed``): at speed 1
fewer than half of the videos contain a jump, and a clip of part of a video fewer still.

Every motion is symmetric under a horizontal flip (e.g. "sideways" is left or right at random), so
the usual flip augmentation never changes a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOTIONS: tuple[str, ...] = (
    "up", "down", "sideways", "grow", "shrink", "spin", "bounce", "rise_diagonal", "fall_diagonal", "pulse",
)  # fmt: skip
SHAPES: tuple[str, ...] = ("square", "disc", "cross", "diamond")
_RADIUS_RANGE = (0.13, 0.30)  # shape radius as a fraction of the short side


def class_names(num_classes: int) -> list[str]:
    """``MOTIONS`` first; beyond them the same motions again at 2×, 3×, ... speed."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    return [
        MOTIONS[k % len(MOTIONS)] + ("" if k < len(MOTIONS) else f"_x{k // len(MOTIONS) + 1}")
        for k in range(num_classes)
    ]


@dataclass(frozen=True)
class Track:
    """Per-frame state of a shape, each ``[F]``: centre (pixels, wrapped later), angle, radius."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    radius: np.ndarray


def _triangle(t: np.ndarray, period: float) -> np.ndarray:
    """Triangle wave in [-1, 1] starting at 0 and rising."""
    phase = (t / period) % 1.0
    return np.where(phase < 0.25, 4 * phase, np.where(phase < 0.75, 2 - 4 * phase, 4 * phase - 4))


def motion_track(
    class_id: int,
    num_frames: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    speed: float = 1.0,
) -> Track:
    """The shape's state over ``num_frames`` frames for class ``class_id``.

    Speeds are tied to the video length (0.6 short sides of travel, half a turn, 40 % of the size
    range, or one up-down / grow-shrink cycle per video, each times ``speed``), so any length shows
    the motion, while a frame-to-frame step stays small enough (~1 px per frame at 96 px, 64
    frames, speed 1) for small convolutions and patches to follow. A clip that sees only part of
    the video sees that part of the motion: raise ``speed`` for short clips of long videos.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    motion = MOTIONS[class_id % len(MOTIONS)]
    speed = speed * (1 + class_id // len(MOTIONS)) * rng.uniform(0.85, 1.15)
    short = min(width, height)
    t = np.arange(num_frames, dtype=np.float64)
    log_lo, log_hi = np.log(_RADIUS_RANGE[0] * short), np.log(_RADIUS_RANGE[1] * short)
    # Class-independent starting state: uniform on the torus / circle / log-size range.
    x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
    angle0, log_r0 = rng.uniform(0, 2 * np.pi), rng.uniform(log_lo, log_hi)
    step = 0.6 * short / num_frames * speed  # pixels per frame
    side = rng.choice((-1.0, 1.0))  # left / right (or spin direction) at random: flip-symmetric classes
    dx = dy = dlog = dangle = np.zeros(num_frames)
    if motion in ("up", "down"):
        dy = (1 if motion == "down" else -1) * step * t
    elif motion == "sideways":
        dx = side * step * t
    elif motion in ("rise_diagonal", "fall_diagonal"):
        dx = side * step * t / np.sqrt(2)
        dy = (1 if motion == "fall_diagonal" else -1) * step * t / np.sqrt(2)
    elif motion == "bounce":
        dy = 0.15 * short * _triangle(t * speed, num_frames)
    elif motion in ("grow", "shrink"):
        dlog = (1 if motion == "grow" else -1) * 0.4 * (log_hi - log_lo) / num_frames * speed * t
    elif motion == "pulse":
        dlog = 0.3 * (log_hi - log_lo) * _triangle(t * speed, num_frames)
    elif motion == "spin":
        dangle = side * np.pi / num_frames * speed * t
    log_r = log_lo + (log_r0 - log_lo + dlog) % (log_hi - log_lo)  # wrapped: sawtooth sizes
    return Track(x0 + dx, y0 + dy, angle0 + dangle, np.exp(log_r))


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Dull two-colour gradient plus soft blobs: float32 ``[H, W, 3]`` in [0, 255]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * xx / width + np.sin(direction) * yy / height + 1) / 2
    low, high = rng.uniform(50, 150, size=(2, 3)).astype(np.float32)
    image = low + (high - low) * ramp[..., None]
    for _ in range(4):
        cx, cy, sigma = (
            rng.uniform(0, width),
            rng.uniform(0, height),
            rng.uniform(0.1, 0.3) * min(width, height),
        )
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        image += rng.uniform(-40, 40, size=3).astype(np.float32) * blob[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _wrapped(delta: np.ndarray, period: float) -> np.ndarray:
    return (delta + period / 2) % period - period / 2


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) < 0.8
    if shape == "disc":
        return u * u + v * v < 1.0
    if shape == "cross":
        return ((np.abs(u) < 0.35) & (np.abs(v) < 1.0)) | ((np.abs(u) < 1.0) & (np.abs(v) < 0.35))
    return np.abs(u) + np.abs(v) < 1.0  # diamond


class SceneRenderer:
    """Draws one video's frames; all appearance is drawn from ``rng`` independently of the class."""

    def __init__(
        self,
        class_id: int,
        num_frames: int,
        width: int,
        height: int,
        rng: np.random.Generator,
        speed: float = 1.0,
    ) -> None:
        self.width, self.height = width, height
        self.track = motion_track(class_id, num_frames, width, height, rng, speed)
        self.background = _background(width, height, rng)
        self.shape = SHAPES[int(rng.integers(len(SHAPES)))]
        bright, dark = np.zeros(3, np.float32), rng.uniform(0, 60, size=3).astype(np.float32)
        bright[:] = rng.uniform(120, 200, size=3)
        bright[int(rng.integers(3))] = 255.0  # one saturated channel stands out from the dull background
        self.colours = (bright, dark)
        # Stripe count across the shape, orientation: coarse, so a step moves less than half a stripe.
        self.stripes = (rng.uniform(1.0, 2.0), rng.uniform(0, np.pi))
        self.distractors = [
            (
                rng.uniform(0, width),
                rng.uniform(0, height),
                rng.normal(0, 0.6, size=2),
                rng.uniform(0.04, 0.08) * min(width, height),
                rng.uniform(0, 255, size=3).astype(np.float32),
            )
            for _ in range(3)
        ]
        self._xx = np.arange(width, dtype=np.float32) + 0.5
        self._yy = np.arange(height, dtype=np.float32) + 0.5
        # Colour table: distractor colours, the shape's two colours, then every background pixel.
        palette = [d[-1] for d in self.distractors] + list(self.colours)
        self._table = np.concatenate([np.stack(palette).astype(np.uint8), self.background.reshape(-1, 3)])
        self._background_rows = (len(palette) + np.arange(height * width, dtype=np.int32)).reshape(
            height, width
        )

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as uint8 ``[F, H, W, 3]`` (rendered together, vectorised).

        Wrapped offsets are separable (x-part ``[F, 1, W]`` + y-part ``[F, H, 1]``), so the full-size
        work is a few broadcast adds and comparisons, and one table look-up builds the colours.
        """
        t = np.arange(start, stop)
        xs, ys = self._xx[None, None, :], self._yy[None, :, None]
        # Colour-table row per pixel: the pixel's own background row, a distractor, or a shape colour.
        rows = np.broadcast_to(self._background_rows, (len(t), self.height, self.width)).copy()
        for k, (x0, y0, velocity, radius, _) in enumerate(self.distractors):
            dx = _wrapped(xs - (x0 + velocity[0] * t)[:, None, None], self.width)
            dy = _wrapped(ys - (y0 + velocity[1] * t)[:, None, None], self.height)
            rows[dx * dx + dy * dy < radius * radius] = k
        track = self.track
        radius = track.radius[t, None, None]
        dx = _wrapped(xs - track.x[t, None, None], self.width) / radius
        dy = _wrapped(ys - track.y[t, None, None], self.height) / radius
        angle = track.angle[t, None, None]
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = np.cos(angle) * dy - np.sin(angle) * dx
        cycles, orientation = self.stripes
        along = np.cos(angle + orientation) * dx * cycles + np.sin(angle + orientation) * dy * cycles
        stripe = np.floor(along).astype(np.int32) & 1
        shape_row = len(self.distractors) + stripe
        rows = np.where(_shape_mask(self.shape, u, v), shape_row, rows)
        return np.take(self._table, rows, axis=0)


class CameraRenderer:
    """Draws one video in which the *camera* moves over a still scene; the class is that motion.

    The scene is a torus the size of the frame, drawn once from ``rng`` whatever the class: a base
    colour, plane waves with whole numbers of cycles across the frame (so they wrap seamlessly) and
    shapes pasted with wrapped distances. The view follows :func:`motion_track`'s motion for the
    class, applied to the whole picture: the track's travel pans it (the content moves "up" in an
    "up" video), its angle rolls it and its size ratio zooms it ("grow" zooms in). Where the object
    scene's motion covers a few patches, here every patch moves, which a small masked-video model
    learns to follow within minutes on a CPU: pre-trained on 3000 such videos (the quickstart), its
    frozen features tell the classes apart better than a random network's; in the object scene no
    VideoMAE teacher tried did.
    """

    def __init__(
        self,
        class_id: int,
        num_frames: int,
        width: int,
        height: int,
        rng: np.random.Generator,
        speed: float = 1.0,
    ) -> None:
        self.width, self.height = width, height
        track = motion_track(class_id, num_frames, width, height, rng, speed)
        self.shift = (track.x - track.x[0], track.y - track.y[0])
        self.roll = track.angle - track.angle[0]
        self.zoom = track.radius / track.radius[0]
        self.world = _periodic_scene(width, height, rng)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as uint8 ``[F, H, W, 3]``: each pixel looks up the scene point the
        moved camera shows there (nearest neighbour, wrapped)."""
        t = np.arange(start, stop)[:, None, None]
        cx, cy = self.width / 2, self.height / 2
        # the content is zoomed and rolled about the centre, then shifted; undo that per pixel
        u = (
            np.arange(self.width, dtype=np.float64)[None, None, :] + 0.5 - cx - self.shift[0][t]
        ) / self.zoom[t]
        v = (
            np.arange(self.height, dtype=np.float64)[None, :, None] + 0.5 - cy - self.shift[1][t]
        ) / self.zoom[t]
        cos, sin = np.cos(self.roll[t]), np.sin(self.roll[t])
        x, y = cx + cos * u + sin * v, cy - sin * u + cos * v
        cols = np.floor(x).astype(np.int64) % self.width
        rows = np.floor(y).astype(np.int64) % self.height
        return self.world[rows, cols]


def _periodic_scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[H, W, 3]`` that wraps seamlessly at its edges: waves plus pasted shapes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    image = np.zeros((height, width, 3), np.float32) + rng.uniform(60, 160, size=3).astype(np.float32)
    for _ in range(6):
        fx, fy = rng.integers(-4, 5, size=2)
        fx = fx if fx or fy else 1  # cycles across the frame, never both zero
        phase = 2 * np.pi * (fx * xx / width + fy * yy / height) + rng.uniform(0, 2 * np.pi)
        image += rng.uniform(-35, 35, size=3).astype(np.float32) * np.cos(phase)[..., None]
    short = min(width, height)
    for _ in range(8):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius, angle = rng.uniform(0.06, 0.16) * short, rng.uniform(0, np.pi)
        dx, dy = _wrapped(xx - cx, width), _wrapped(yy - cy, height)
        u = (np.cos(angle) * dx + np.sin(angle) * dy) / radius
        v = (np.cos(angle) * dy - np.sin(angle) * dx) / radius
        image[_shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], u, v)] = rng.uniform(0, 255, size=3)
    return np.clip(image, 0, 255).astype(np.uint8)


SCENES = {"object": SceneRenderer, "camera": CameraRenderer}
