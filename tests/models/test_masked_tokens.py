"""Visible-token selection: only the visible tubelets are embedded, in the order of ``x[~mask]``."""

from __future__ import annotations

import pytest
import timm
import torch

import models  # noqa: F401
from datasets import RandomMaskingGenerator, TubeMaskingGenerator, collate_batch
from models.tokens import count_visible, gather_tokens, split_tokens


def _masks(grid, kind: str, batch: int, ratio: float = 0.75) -> torch.Tensor:
    gen = TubeMaskingGenerator(grid, ratio) if kind == "tube" else RandomMaskingGenerator(grid, ratio)
    return torch.stack([torch.as_tensor(gen()) for _ in range(batch)])


def _encoder(dtype=torch.float32):
    torch.manual_seed(0)
    model = timm.create_model("pretrain_videomae_pico_patch8", img_size=32, num_frames=8, decoder_depth=1)
    return model.encoder.to(dtype).eval()


@pytest.mark.parametrize("kind", ["tube", "random"])
def test_split_tokens_is_boolean_indexing(kind):
    mask = _masks((4, 4, 4), kind, 3)
    x = torch.randn(3, 64, 5)
    visible, hidden = split_tokens(mask)
    assert torch.equal(gather_tokens(x, visible), x[~mask].reshape(3, -1, 5))
    assert torch.equal(gather_tokens(x, hidden), x[mask].reshape(3, -1, 5))
    assert visible.shape[1] == count_visible(mask) == 16


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("kind", ["tube", "random"])
def test_embedding_visible_tubelets_matches_embed_then_drop(kind, dtype, tol):
    encoder = _encoder(dtype)
    x = torch.randn(2, 3, 8, 32, 32, dtype=dtype)
    mask = _masks(encoder.grid_size, kind, 2)
    with torch.no_grad():
        full = encoder.patch_embed(x) + encoder.pos_embed.to(dtype)
        expected = full[~mask].reshape(2, -1, full.shape[-1])
        got = encoder.embed(x, mask)
        # the clips a uint8 batch becomes on the device may have any strides: same tokens
        strided = x.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
        got_strided = encoder.embed(strided, mask, num_visible=count_visible(mask))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    torch.testing.assert_close(got_strided, got, rtol=0, atol=0)


def test_visible_embedding_gradients_match():
    """The kernel's gradient through the gathered tubelets is the Conv3d's over the visible ones."""
    encoder = _encoder(torch.float64).train()
    x = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64)
    mask = _masks(encoder.grid_size, "tube", 2)
    proj = encoder.patch_embed.proj
    encoder.embed(x, mask).square().sum().backward()
    got = proj.weight.grad.clone()
    proj.weight.grad = None
    tokens = encoder.patch_embed(x) + encoder.pos_embed.to(x.dtype)
    tokens[~mask].square().sum().backward()
    torch.testing.assert_close(got, proj.weight.grad, rtol=1e-10, atol=1e-10)


def test_uneven_masks_are_refused():
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :4] = True
    with pytest.raises(ValueError, match="same number of visible tokens"):
        count_visible(mask)


def test_collate_ships_the_visible_count():
    mask = _masks((4, 4, 4), "tube", 1)[0]
    batch = collate_batch([{"video": torch.zeros(3, 2, 2, 2), "mask": mask} for _ in range(3)])
    assert batch["num_visible"] == 16 and isinstance(batch["num_visible"], int)


def test_decoder_predicts_exactly_the_hidden_positions_even_none():
    """``x[:, -0:]`` is the whole sequence: with nothing hidden the decoder returned every token."""
    model = timm.create_model("pretrain_videomae_pico_patch8", img_size=32, num_frames=8, decoder_depth=1)
    x = torch.randn(2, 5, model.decoder.head.in_features)
    assert model.decoder(x, 3).shape[1] == 3
    assert model.decoder(x, 0).shape == (2, 0, model.decoder.head.out_features)
