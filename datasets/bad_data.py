"""What happens when a sample cannot be read.

Training replaces the sample by another one (drawn from the item's own generator, so the choice
is fixed by seed, epoch and index), counts it and logs its path once per process; when more than
``max_bad_fraction`` of the loads in this process failed (judged after ``min_attempts`` loads) it
raises :class:`BadDataError`. Evaluation never substitutes: the caller marks the item invalid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .errors import BadDataError, VideoDecodeError

logger = logging.getLogger("datasets")

T = TypeVar("T")
MIN_ATTEMPTS = 20
# An item gives up after this many consecutive failures even when max_bad_fraction allows more.
MAX_SUBSTITUTES = 100


class BadDataTracker:
    """Per-process load counters and the ``max_bad_fraction`` rule.

    Each DataLoader worker holds its own copy (datasets are copied into workers), so the fraction
    is judged per process, as documented.
    """

    def __init__(self, max_bad_fraction: float = 0.5, min_attempts: int = MIN_ATTEMPTS) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.max_bad_fraction = max_bad_fraction
        self.min_attempts = min_attempts
        self.attempts = 0
        self.failures = 0
        self._logged: set[str] = set()

    def success(self) -> None:
        self.attempts += 1

    def failure(self, path: str, error: Exception, *, enforce: bool = True) -> None:
        """Count and log (once per path) a failed load; raise if too many failed and ``enforce``."""
        self.attempts += 1
        self.failures += 1
        if path not in self._logged:
            self._logged.add(path)
            logger.warning("unreadable sample %s: %s", path, error)
        if (
            enforce
            and self.attempts >= self.min_attempts
            and self.failures > self.max_bad_fraction * self.attempts
        ):
            raise BadDataError(
                f"{self.failures} of {self.attempts} samples loaded in this process could not be read, "
                f"more than max_bad_fraction={self.max_bad_fraction} allows (latest: {path}: {error})."
            )


def load_with_substitutes(
    load: Callable[[int], T],
    index: int,
    num_items: int,
    rng: np.random.Generator,
    tracker: BadDataTracker,
    path_of: Callable[[int], str],
) -> tuple[T, int, int]:
    """Call ``load(index)``; on :class:`VideoDecodeError` retry with other random indices.

    Returns:
        (result, index actually loaded, number of failed loads skipped).
    """
    candidate = index
    for skipped in range(MAX_SUBSTITUTES + 1):
        try:
            result = load(candidate)
        except VideoDecodeError as err:
            tracker.failure(path_of(candidate), err)
            candidate = _other_index(candidate, num_items, rng)
            continue
        tracker.success()
        return result, candidate, skipped
    raise BadDataError(f"no readable sample found for item {index} after {MAX_SUBSTITUTES} substitutes.")


def _other_index(current: int, num_items: int, rng: np.random.Generator) -> int:
    if num_items == 1:
        return current
    other = int(rng.integers(num_items - 1))
    return other + 1 if other >= current else other
