"""One precision switch: ``fp32 | bf16 | fp16`` -> an autocast context and a GradScaler.

bf16 needs no loss scaling; fp16 does, and is only offered on CUDA (CPU autocast has no
fp16 path worth training with). The scaler is therefore enabled for fp16 only, and a
disabled scaler makes ``scale`` / ``step`` / ``update`` plain pass-throughs, so the training
loop is the same for every precision.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from common import cpu_gemm

__all__ = ["PRECISIONS", "autocast_context", "dtype_of", "make_grad_scaler"]

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = tuple(_DTYPES)


def dtype_of(precision: str) -> torch.dtype:
    """The compute dtype of ``precision`` (``"fp32"``, ``"bf16"`` or ``"fp16"``)."""
    try:
        return _DTYPES[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}") from None


def _check(device: torch.device | str, precision: str) -> torch.device:
    device = torch.device(device)
    dtype_of(precision)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device (got {device.type}); use 'bf16' or 'fp32' instead"
        )
    return device


def autocast_context(device: torch.device | str, precision: str) -> AbstractContextManager[None]:
    """Context for the forward pass: autocast to bf16 / fp16, or autocast *disabled* for fp32.

    fp32 disables autocast rather than entering nothing, so that a caller inside another
    precision's autocast (an fp32 teacher inside a bf16 step) really runs in float32. On the
    CPU, fp32 also sends the linear layers to oneDNN (`common.cpu_gemm`, ``--cpu_gemm``).

    Raises:
        ValueError: unknown precision, or fp16 on a non-CUDA device.
    """
    device = _check(device, precision)
    if precision == "fp32":
        if device.type == "cpu" and cpu_gemm.enabled():
            return _fp32_cpu()
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype_of(precision))


@contextlib.contextmanager
def _fp32_cpu():
    with torch.autocast(device_type="cpu", enabled=False), cpu_gemm.cpu_linear():
        yield


def make_grad_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 on CUDA (disabled otherwise).

    Raises:
        ValueError: unknown precision, or fp16 on a non-CUDA device.
    """
    device = _check(device, precision)
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
