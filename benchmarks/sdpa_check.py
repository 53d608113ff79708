"""Checks that the attention layers whose attention is not distilled run a fused SDPA kernel.

The MMKD encoder returns the last block's attention logits, so that block computes its softmax
explicitly; every other block must call SDPA, and SDPA must find a fused kernel (flash or
memory-efficient). The forward and backward run with SDPA restricted to those two kernels, where
a fall-back to the math kernel raises; SDPA calls are counted so an encoder that never calls it
cannot pass. Prints one JSON line; exits 1 when a check fails.

    python benchmarks/sdpa_check.py --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timm  # noqa: E402

import models  # noqa: E402,F401
from datasets.masking import TubeMaskingGenerator  # noqa: E402
from engine.precision import autocast_context  # noqa: E402
from models.tokens import count_visible  # noqa: E402

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}


class CountSDPA(TorchFunctionMode):
    """Counts calls of ``F.scaled_dot_product_attention``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def run(model, video, mask, num_visible, device, precision, backends) -> int:
    """Forward (MMKD view, last block's attention returned) + backward; returns the SDPA calls."""
    model.zero_grad(set_to_none=True)
    with sdpa_kernel(backends), CountSDPA() as counter, autocast_context(device, precision):
        out = model(video, mask, return_attention=True, num_visible=num_visible)
        loss = out.features.float().square().mean() + out.attn_logits.float().square().mean()
    loss.backward()
    return counter.calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    p.add_argument("--model", default="pretrain_videomae_small_patch16_224")
    p.add_argument("--num_frames", type=int, default=16)
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=2)
    args = p.parse_args()
    device = torch.device(args.device)
    model = timm.create_model(
        args.model, decoder_depth=0, img_size=args.input_size, num_frames=args.num_frames
    ).to(device)
    gen = TubeMaskingGenerator(model.encoder.grid_size, 0.9)
    mask = torch.stack([torch.as_tensor(gen()) for _ in range(args.batch_size)])
    num_visible = count_visible(mask)
    video = torch.randn(args.batch_size, 3, args.num_frames, args.input_size, args.input_size, device=device)
    mask = mask.to(device)
    expected = len(model.encoder.blocks) - 1  # all but the distilled last block
    result = {"check": "sdpa_fused", "device": str(device), "precision": args.precision, "model": args.model}
    result["expected_sdpa_calls"] = expected
    kernels = {}
    for name, backend in [("fused", list(BACKENDS.values())), *[(k, [v]) for k, v in BACKENDS.items()]]:
        try:
            calls = run(model, video, mask, num_visible, device, args.precision, backend)
            kernels[name] = "ok" if calls == expected else f"{calls} SDPA calls"
        except RuntimeError as err:
            kernels[name] = f"unavailable: {str(err).splitlines()[0][:160]}"
    result["kernels"] = kernels
    result["ok"] = kernels["fused"] == "ok"
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
