"""One precision switch: autocast context and gradient scaler per device."""

from __future__ import annotations

import pytest
import torch

from engine.precision import autocast_context, dtype_of, make_grad_scaler


def test_dtypes():
    assert [dtype_of(p) for p in ("fp32", "bf16", "fp16")] == [torch.float32, torch.bfloat16, torch.float16]
    with pytest.raises(ValueError, match="unknown precision"):
        dtype_of("int8")


def test_cpu_bf16_autocast_and_fp32_noop():
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast_context("cpu", "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        assert lin(x).dtype == torch.float32


def test_scaler_only_for_fp16_and_fp16_needs_cuda():
    for p in ("fp32", "bf16"):
        assert not make_grad_scaler("cpu", p).is_enabled()
    with pytest.raises(ValueError, match="fp16"):
        autocast_context("cpu", "fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_scaler_enabled():
    assert make_grad_scaler("cuda", "fp16").is_enabled()
    lin = torch.nn.Linear(4, 4).cuda()
    with autocast_context("cuda", "fp16"):
        assert lin(torch.randn(2, 4, device="cuda")).dtype == torch.float16
