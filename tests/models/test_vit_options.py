"""The trunk's keyword arguments (`VideoEncoder`'s) reach every part built from them, once listed."""

from __future__ import annotations

import inspect

import pytest
import timm

import models  # noqa: F401
from models.vit import VideoEncoder

KW = dict(img_size=32, qkv_bias=False, qk_scale=0.5, init_values=0.1, drop_path_rate=0.2)


def test_the_options_shape_the_encoder_and_the_decoder_blocks():
    model = timm.create_model("pretrain_videomae_pico_patch8", decoder_depth=2, num_frames=8, **KW)
    for blocks in (model.encoder.blocks, model.decoder.blocks):
        attn = [b.attn for b in blocks]
        assert all(a.scale == 0.5 and a.q_bias is None for a in attn)
        assert all(b.gamma_1 is not None for b in blocks)
        assert blocks[-1].drop_path.drop_prob == pytest.approx(0.2)
    assert model.decoder.norm.eps == model.encoder.blocks[0].norm1.eps == 1e-6


def test_the_classifier_takes_the_encoders_options_and_its_own():
    model = timm.create_model("vit_pico_patch8", all_frames=8, num_classes=3, fc_drop_rate=0.1, **KW)
    assert model.patch_embed.num_frames == 8 and model.head.out_features == 3
    assert model.blocks[0].attn.scale == 0.5 and model.fc_norm.eps == 1e-6
    with pytest.raises(TypeError):
        timm.create_model("vit_pico_patch8", no_such_option=1)


def test_every_encoder_option_is_accepted_by_both_models():
    names = set(inspect.signature(VideoEncoder).parameters) - {"final_norm", "in_chans", "embed_dim", "depth"}
    names -= {"num_heads", "num_frames"}  # named encoder_* / all_frames in the two VideoMAE signatures
    defaults = {n: p.default for n, p in inspect.signature(VideoEncoder).parameters.items() if n in names}
    timm.create_model("pretrain_videomae_pico_patch8", **{**defaults, "img_size": 32, "patch_size": 8})
    timm.create_model("vit_pico_patch8", **{**defaults, "img_size": 32, "patch_size": 8})
