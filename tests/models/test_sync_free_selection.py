"""The data-dependent selections of a training step, written without a host sync: the relation's
selected tokens (their count read as soon as the teacher's features exist) and the pre-training
target's masked tubes (gathered by index). Both give the rows boolean indexing gives, ties included."""

from __future__ import annotations

import pytest
import torch

from datasets import RandomMaskingGenerator, TubeMaskingGenerator
from models.distill import MMKDConfig, MMKDLoss, mm_relation_loss, select_tokens
from models.distill.relation import start_token_selection
from models.targets import pixel_target
from models.tokens import split_tokens
from models.vit import EncoderOutput


def _teacher_features(ties: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    f_t = torch.randn(3, 20, 6, generator=g)
    if ties:  # tokens 0-5 of clip 1 share the top score: 6 kept where num_f is 4
        f_t[1, :6] = f_t[1, 0].abs() + 10
    return f_t


@pytest.mark.parametrize("ties", [False, True])
def test_the_relation_selection_is_boolean_indexing_ties_included(ties):
    f_t = _teacher_features(ties)
    keep = select_tokens(f_t, 4)
    indices = start_token_selection(f_t, 4)()
    assert torch.equal(f_t.flatten(0, 1)[indices], f_t[keep])
    assert len(indices) == int(keep.sum()) == (14 if ties else 12)


@pytest.mark.parametrize("ties", [False, True])
def test_the_relation_loss_and_its_gradient_are_those_of_the_masked_rows(ties):
    f_t = _teacher_features(ties)
    f_s = torch.randn(3, 20, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)

    def boolean_indexing_loss():  # the spec's formula, written with f[keep]
        keep = select_tokens(f_t, 4)
        rows_s = torch.nn.functional.normalize(f_s[keep], dim=-1)
        rows_t = torch.nn.functional.normalize(f_t[keep], dim=-1)
        eye = torch.eye(len(rows_s), dtype=torch.bool)
        log_p_s = ((rows_s @ rows_s.t()).masked_fill(eye, -1000.0) / 0.1).log_softmax(-1)
        p_t = ((rows_t @ rows_t.t()).masked_fill(eye, -1000.0) / 0.05).softmax(-1)
        return torch.nn.functional.kl_div(log_p_s, p_t, reduction="sum") / (3 * 4)

    results = []
    for loss_fn in (
        boolean_indexing_loss,
        lambda: mm_relation_loss(f_s, f_t, 4, 0.1, 0.05),
        lambda: mm_relation_loss(f_s, f_t, 4, 0.1, 0.05, selected=start_token_selection(f_t, 4)()),
    ):
        f_s.grad = None
        loss = loss_fn()
        loss.backward()
        results.append((loss.detach(), f_s.grad.clone()))
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(grad, results[0][1])
    assert results[0][1].abs().sum() > 0


def test_mmkd_loss_takes_the_selection_started_from_the_teachers_output():
    torch.manual_seed(0)
    heads = MMKDLoss(8, 12, MMKDConfig(mode="onlymse", num_f=4))
    out_s = EncoderOutput(torch.randn(2, 16, 8), None, None)
    out_t = EncoderOutput(_teacher_features(False)[:2, :16].repeat(1, 1, 2), None, None)
    started = heads.select(out_t)
    assert started is not None
    with_selection, without = heads(out_s, out_t, 2, selected=started), heads(out_s, out_t, 2)
    assert with_selection.keys() == without.keys() and "relation" in without
    for k in without:
        torch.testing.assert_close(with_selection[k], without[k])
    assert MMKDLoss(8, 12, MMKDConfig(mode="onlykd", num_k=3)).select(out_t) is None  # no relation term


@pytest.mark.parametrize("kind", ["tube", "random"])
def test_the_pixel_target_gathered_by_index_is_the_masked_one(kind):
    gen = TubeMaskingGenerator((4, 4, 4), 0.75) if kind == "tube" else RandomMaskingGenerator((4, 4, 4), 0.75)
    mask = torch.stack([torch.as_tensor(gen()) for _ in range(3)])
    video = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    _, hidden = split_tokens(mask, int((~mask[0]).sum()))
    for normalize in (True, False):
        by_mask = pixel_target(video, mask, 8, 2, normalize)
        assert torch.equal(pixel_target(video, mask, 8, 2, normalize, hidden=hidden), by_mask)
        assert by_mask.shape == (3, 48, 2 * 8 * 8 * 3)
