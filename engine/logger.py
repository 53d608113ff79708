"""Training logs: console progress lines, TensorBoard scalars, ``log.txt`` and ``args.json``."""

from __future__ import annotations

import builtins
import datetime
import json
import math
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from engine.distributed import all_reduce_mean, get_rank, get_world_size

__all__ = ["MetricLogger", "SmoothedValue", "TensorboardLogger", "append_json_line", "save_args"]

T = TypeVar("T")


def _to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().item())
    return float(value)


class SmoothedValue:
    """A series of values with a sliding-window median / average and a global average.

    Args:
        window_size: number of recent values for ``median`` / ``avg``.
        fmt: ``str.format`` template over ``median, avg, global_avg, max, value``.
    """

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4g} ({global_avg:.4g})") -> None:
        self.window: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        """Add ``value`` (an average over ``n`` samples)."""
        self.window.append(value)
        self.count += n
        self.total += value * n

    def synchronize_between_processes(self) -> None:
        """Sum count and total over ranks so ``global_avg`` covers the whole job (window stays local)."""
        if get_world_size() == 1:
            return
        stats = torch.tensor([self.count, self.total], dtype=torch.float64)
        stats = all_reduce_mean(stats) * get_world_size()
        self.count, self.total = int(round(stats[0].item())), float(stats[1].item())

    @property
    def median(self) -> float:
        return float(np.median(self.window)) if self.window else math.nan

    @property
    def avg(self) -> float:
        return float(np.mean(self.window)) if self.window else math.nan

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def max(self) -> float:
        return max(self.window) if self.window else math.nan

    @property
    def value(self) -> float:
        return self.window[-1] if self.window else math.nan

    def __str__(self) -> str:
        return self.fmt.format(
            median=self.median, avg=self.avg, global_avg=self.global_avg, max=self.max, value=self.value
        )


class MetricLogger:
    """Named :class:`SmoothedValue` meters plus a progress-printing iterator.

    Args:
        delimiter: separator between meters in the printed line.
        print_fn: where lines go (``print`` by default, which is silent on non-main ranks
            after :func:`engine.distributed.setup_for_distributed`).
    """

    def __init__(self, delimiter: str = "  ", print_fn: Callable[[str], None] | None = None) -> None:
        self.meters: defaultdict[str, SmoothedValue] = defaultdict(SmoothedValue)
        self.delimiter = delimiter
        # looked up when called: a default bound at import time would be the built-in print that
        # setup_for_distributed replaces, and every rank would print its progress lines
        self.print_fn = print_fn or (lambda line: builtins.print(line))

    def update(self, n: int = 1, **values: float | torch.Tensor | None) -> None:
        """Record one value per meter (tensors are converted; ``None`` is skipped)."""
        for name, value in values.items():
            if value is not None:
                self.meters[name].update(_to_float(value), n=n)

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        """Register a meter with its own window / format (e.g. ``lr`` shown as ``{value:.6f}``)."""
        self.meters[name] = meter

    def __getattr__(self, name: str) -> SmoothedValue:
        meters = self.__dict__.get("meters", {})
        if name in meters:
            return meters[name]
        raise AttributeError(f"{type(self).__name__} has no meter or attribute {name!r}")

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def synchronize_between_processes(self) -> None:
        """Make every meter's global average job-wide."""
        for meter in self.meters.values():
            meter.synchronize_between_processes()

    def global_averages(self) -> dict[str, float]:
        """``{name: global_avg}`` for ``log.txt``."""
        return {name: meter.global_avg for name, meter in self.meters.items()}

    def log_every(
        self, iterable: Iterable[T], print_freq: int, header: str = "", total: int | None = None
    ) -> Iterator[T]:
        """Yield from ``iterable``, printing a progress line every ``print_freq`` iterations and at the end.

        The line holds ``[it/total]``, the ETA, all meters, the iteration time and the time
        spent waiting for data (and the peak CUDA memory on GPU).
        """
        if total is None:
            total = len(iterable)  # type: ignore[arg-type]
        iter_time = SmoothedValue(fmt="{avg:.4f}")
        data_time = SmoothedValue(fmt="{avg:.4f}")
        width = len(str(total))
        start = end = time.time()
        i = -1
        for i, item in enumerate(iterable):
            data_time.update(time.time() - end)
            yield item
            iter_time.update(time.time() - end)
            if i % print_freq == 0 or i == total - 1:
                eta = datetime.timedelta(seconds=int(iter_time.global_avg * max(total - i - 1, 0)))
                parts = [header, f"[{i:>{width}}/{total}]", f"eta: {eta}", str(self)]
                parts += [f"time: {iter_time}", f"data: {data_time}"]
                if torch.cuda.is_available():
                    parts.append(f"max mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}MB")
                self.print_fn(self.delimiter.join(p for p in parts if p))
            end = time.time()
        elapsed = datetime.timedelta(seconds=int(time.time() - start))
        self.print_fn(f"{header} Total time: {elapsed} ({(time.time() - start) / max(i + 1, 1):.4f} s / it)")


class TensorboardLogger:
    """TensorBoard scalars from rank 0; a no-op on other ranks or when ``log_dir`` is None."""

    def __init__(self, log_dir: str | os.PathLike[str] | None) -> None:
        self.writer = None
        if log_dir is not None and get_rank() == 0:
            # Imported lazily: tensorboard is only needed when logging is on.
            from torch.utils.tensorboard import SummaryWriter

            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(log_dir))

    @property
    def enabled(self) -> bool:
        """True when scalars are written."""
        return self.writer is not None

    def update(self, step: int, **scalars: float | torch.Tensor | None) -> None:
        """Write each scalar at ``step`` (use ``**{"train/loss": v}`` for grouped names)."""
        if self.writer is None:
            return
        for name, value in scalars.items():
            if value is not None:
                self.writer.add_scalar(name, _to_float(value), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _json_default(obj: Any) -> Any:
    # Metrics and args often hold tensors, numpy scalars or paths.
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return obj.tolist()
    return str(obj)


def append_json_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` (the run's ``log.txt``); call it on rank 0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(record), default=_json_default) + "\n")
        f.flush()


def save_args(args: Mapping[str, Any], output_dir: str | os.PathLike[str]) -> Path:
    """Write the resolved arguments (``TaskConfig.to_args()``) to ``<output_dir>/args.json`` (rank 0's job)."""
    values = dict(args)
    path = Path(output_dir) / "args.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path
