"""``--compile``: the models trace without graph breaks and the compiled model gives the eager output."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch

import models  # noqa: F401
from datasets import TubeMaskingGenerator
from engine.build import maybe_compile
from models.tokens import count_visible


def _pretrain(decoder_depth: int):
    torch.manual_seed(0)
    return timm.create_model(
        "pretrain_videomae_pico_patch8", img_size=32, num_frames=8, decoder_depth=decoder_depth
    ).eval()


def _inputs(model):
    x = torch.randn(2, 3, 8, 32, 32)
    gen = TubeMaskingGenerator(model.encoder.grid_size, 0.75)
    mask = torch.stack([torch.as_tensor(gen()) for _ in range(2)])
    return x, mask, count_visible(mask)


def _graph_breaks(fn, *args, **kwargs) -> tuple[int, list]:
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*args, **kwargs)
    return explained.graph_break_count, explained.break_reasons


@pytest.mark.parametrize("decoder_depth", [0, 1])
def test_masked_forward_has_no_graph_break(decoder_depth):
    model = _pretrain(decoder_depth)
    x, mask, num_visible = _inputs(model)
    kwargs = dict(num_visible=num_visible, return_attention=decoder_depth == 0)
    count, reasons = _graph_breaks(model, x, mask, **kwargs)
    assert count == 0, reasons


def test_classifier_has_no_graph_break():
    torch.manual_seed(0)
    model = timm.create_model("vit_pico_patch8", img_size=32, all_frames=8, num_classes=3).eval()
    count, reasons = _graph_breaks(model, torch.randn(2, 3, 8, 32, 32))
    assert count == 0, reasons


def test_maybe_compile_keeps_the_plain_state_dict():
    model = _pretrain(0)
    keys = list(model.state_dict())
    args = argparse.Namespace(compile=True, compile_mode="default")
    assert maybe_compile(model, args) is model
    assert list(model.state_dict()) == keys  # checkpoints stay loadable without --compile
    assert model._compiled_call_impl is not None
    plain = _pretrain(0)
    assert (
        maybe_compile(plain, argparse.Namespace(compile=False, compile_mode="default"))._compiled_call_impl
        is None
    )


def _has_c_compiler() -> str | None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except (RuntimeError, OSError, ImportError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


@pytest.mark.slow
def test_compiled_matches_eager_with_inductor():
    reason = _has_c_compiler()
    if reason:
        pytest.skip(f"inductor needs a C++ compiler on CPU: {reason}")
    torch._dynamo.reset()
    model = _pretrain(0)
    x, mask, num_visible = _inputs(model)
    with torch.no_grad():
        eager = model(x, mask, return_attention=True)
        model.compile(fullgraph=True)
        compiled = model(x, mask, return_attention=True, num_visible=num_visible)
    for got, want in zip(
        (compiled.features, compiled.attn_logits, compiled.values),
        (eager.features, eager.attn_logits, eager.values),
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
