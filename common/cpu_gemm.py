"""float32 linear layers on the CPU through oneDNN instead of torch's BLAS (MKL): ``--cpu_gemm``.

An execution choice, not a model: any package may turn it on (engine/ does, for ``--cpu_gemm``) and
the models' activation checkpointing asks it for `checkpoint_contexts`.

Why this is hand-written: on AMD CPUs MKL's sgemm takes its AVX2 kernels even where the CPU has
AVX-512, while oneDNN (which torch ships for its bf16 CPU matmuls and for inductor) runs AVX-512.
On a 2-core AMD EPYC (Zen 5) VM the ViT's float32 GEMMs ran at about 180 GFLOP/s through MKL and
about 350 through oneDNN, numerically alike (both plain float32, errors of the same order), so
the float32 distillation step went 1.6x faster. torch routes float32 ``F.linear`` only to BLAS
(oneDNN only when a reduced-precision fp32 mode is requested), and its oneDNN linear op
(``torch.ops.mkldnn._linear_pointwise``, the one inductor emits) has no autograd formula, so the
three GEMMs of a linear layer (forward, input gradient, weight gradient) are written out below.

What it covers: every ``F.linear`` (all of the ViT's, the alignment modules', the heads') run
under `autocast_context(cpu, "fp32")` when `enabled()`: CPU float32 tensors, autocast off, not
inside ``torch.compile`` tracing (inductor picks its own kernels). Everything else (CUDA, bf16
and fp16, which torch already sends to oneDNN on the CPU) goes to ``F.linear`` unchanged.
``--cpu_gemm blas`` (`set_enabled(False)`) turns it off; ``--cpu_gemm auto`` (the default) takes
oneDNN only where it was measured faster than torch's BLAS (`preferred`). Should the oneDNN op fail
at call time (a torch build that changed it), the layer falls back to torch's own ``F.linear`` and
the process stays on BLAS, with one warning.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
import threading
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import flop_registry, register_flop_formula

__all__ = [
    "CPU_GEMMS",
    "available",
    "checkpoint_contexts",
    "cpu_linear",
    "enabled",
    "preferred",
    "resolve",
    "set_enabled",
]

CPU_GEMMS = ("auto", "onednn", "blas")
_STATE: dict[str, bool | None] = {"enabled": None}  # None: --cpu_gemm auto's choice (`preferred`)
_ACTIVE = threading.local()  # how many oneDNN contexts this thread is in


@functools.cache
def available() -> bool:
    """Whether this is an x86 CPU and this torch build has the oneDNN linear op (x86 builds do).

    Other CPUs (aarch64) keep torch's BLAS: the speed-up above was measured on x86 only.
    """
    return (
        platform.machine().lower() in ("x86_64", "amd64")
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _amd() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(line.startswith("vendor_id") and "AuthenticAMD" in line for line in fh)
    except OSError:
        return False


@functools.cache
def preferred() -> str:
    """``--cpu_gemm auto``: the back-end measured faster on this CPU class, else torch's own BLAS.

    Measured (benchmarks/bench_compare.py, the fp32 distillation step through the trainer, 2-core
    AMD EPYC Zen 5 VM): oneDNN 1.72x BLAS with AVX-512. With the kernels restricted to AVX2
    (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``) two
    measurements disagree within the machine's noise (0.96x and 1.07x, median of the pairs), and a
    real AVX2-only CPU is unmeasured: there torch's own BLAS stays, as it does on Intel CPUs (MKL
    takes AVX-512 there; unmeasured). Hence oneDNN only on AMD CPUs whose kernels may use AVX-512.
    """
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512" and (not isa or "AVX512" in isa or isa == "ALL")
    return "onednn" if available() and avx512 and _amd() else "blas"


def resolve(choice: str) -> str:
    """``auto`` -> `preferred`; ``onednn`` -> ``blas`` where the op is missing (non-x86 builds)."""
    if choice == "auto":
        return preferred()
    return "blas" if choice == "onednn" and not available() else choice


def set_enabled(on: bool) -> None:
    """Route float32 CPU linear layers to oneDNN (True) or to torch's BLAS (False)."""
    _STATE["enabled"] = bool(on)


def enabled() -> bool:
    """Whether float32 CPU linear layers go to oneDNN: `set_enabled`'s choice, else ``auto``'s (so the
    tools that build no training run, e.g. run_inference.py and run_vis.py, follow the same rule)."""
    on = _STATE["enabled"]
    return (preferred() == "onednn" if on is None else on) and available()


def _gemm(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x @ weight.T + bias on oneDNN (x [..., K], weight [N, K]; strided views are accepted)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    """``F.linear`` whose forward and both gradient GEMMs run on oneDNN."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _gemm(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _gemm(grad, weight.t(), None)  # grad @ weight
        rows = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = _gemm(rows.t(), x.reshape(-1, x.shape[-1]).t(), None)  # grad^T @ x
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        return grad_x, grad_w, grad_b


def _linear_args(input, weight, bias=None):  # F.linear's signature
    return input, weight, bias


def _routable(x, weight, bias) -> bool:
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        all(type(t) in (Tensor, torch.nn.Parameter) for t in tensors)  # no subclasses (fake, DTensor)
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and x.dim() >= 2
        and weight.dim() == 2
        and x.numel() > 0
        and weight.numel() > 0
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


class _OneDNNLinearMode(TorchFunctionMode):
    def __enter__(self):
        _ACTIVE.depth = getattr(_ACTIVE, "depth", 0) + 1
        return super().__enter__()

    def __exit__(self, *exc):
        _ACTIVE.depth -= 1
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, bias = _linear_args(*args, **kwargs)
            if _routable(x, weight, bias):
                needs_grad = torch.is_grad_enabled() and any(
                    t is not None and t.requires_grad for t in (x, weight, bias)
                )
                try:
                    return _Linear.apply(x, weight, bias) if needs_grad else _gemm(x, weight, bias)
                except (RuntimeError, AttributeError) as err:  # the private op changed or is gone
                    _fall_back(err)
        return func(*args, **kwargs)


def _fall_back(err: BaseException) -> None:
    """From now on torch's BLAS: ``F.linear`` computes what the oneDNN op did not."""
    set_enabled(False)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    warnings.warn(
        f"oneDNN float32 linear failed ({first}); using torch's BLAS from here on (--cpu_gemm blas)",
        RuntimeWarning,
        stacklevel=3,
    )


def cpu_linear() -> contextlib.AbstractContextManager:
    """A context in which float32 CPU linear layers run on oneDNN (a no-op when not `enabled()`)."""
    return _OneDNNLinearMode() if enabled() else contextlib.nullcontext()


def checkpoint_contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """``context_fn`` for ``torch.utils.checkpoint``: the recomputation (run by ``backward``, outside
    the forward's contexts) takes the forward's GEMM path, so that it saves the same tensors."""
    active = getattr(_ACTIVE, "depth", 0) > 0
    return contextlib.nullcontext(), (_OneDNNLinearMode() if active else contextlib.nullcontext())


if available() and torch.ops.mkldnn._linear_pointwise not in flop_registry:

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _linear_flops(x_shape, w_shape, *args, **kwargs) -> int:  # so that FlopCounterMode counts it
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]
