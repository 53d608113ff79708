"""The objective registry: what a registration is checked for, and what reaches a term."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import models  # noqa: F401
from engine.args import build_parser
from engine.tasks import DistillTask
from models.distill import Flag, MMKDConfig, MMKDLoss, Objective, config_flags, objectives, register, registry


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "OBJECTIVES", dict(registry.OBJECTIVES))


def _term(name="extra", needs=(), flags=()):
    return type("Term", (Objective,), {"name": name, "needs": frozenset(needs), "flags": tuple(flags)})


def test_the_four_reference_terms_in_the_spec_order():
    assert [o.name for o in objectives()] == ["hint", "relation", "global", "local"]
    assert MMKDConfig().terms == ("hint", "relation", "global", "local")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="hint"), "new name"),
        (dict(name="loss"), "new name"),
        (dict(needs=["hidden_states"]), "hidden_states"),
        (dict(flags=[Flag("my_k", ("--num_k",), 1)]), "--num_k"),
        (dict(flags=[Flag("gamma", ("--my_gamma",), 1.0)]), "gamma"),
    ],
)
def test_a_registration_that_would_clash_is_refused(scratch_registry, kwargs, match):
    with pytest.raises(ValueError, match=match):
        register(_term(**kwargs))
    assert [o.name for o in objectives()] == ["hint", "relation", "global", "local"]


def test_every_config_field_is_an_option_of_the_distillation_parser():
    options = build_parser("distill")._option_string_actions
    for flag in config_flags():
        assert all(options[name].dest == flag.attr for name in flag.names), flag
    with pytest.raises(TypeError, match="unknown MMKD settings"):
        MMKDConfig(num_q=3)


class _WithExtra(nn.Module):
    """An encoder that also returns a named extra output, in bfloat16."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder = model.encoder

    def forward(self, video, mask, **kwargs):
        out = self.model(video, mask, **kwargs)
        out.extras["pooled"] = out.features.mean(dim=1).bfloat16()  # [B, C]
        return out


def test_a_named_extra_output_reaches_the_term_upcast(scratch_registry):
    seen = []

    @register
    class Pooled(Objective):
        name = "pooled"

        def weight(self, cfg, terms):
            return 1.0

        def loss(self, out_s, out_t, cfg, heads, ctx):
            seen.append((out_s.extras["pooled"].dtype, out_t.extras["pooled"].dtype))
            return out_s.extras["pooled"].square().mean()

    kw = dict(img_size=32, num_frames=4, decoder_depth=0)
    student = _WithExtra(timm.create_model("pretrain_videomae_pico_patch8", **kw))
    teacher = _WithExtra(timm.create_model("pretrain_videomae_nano_patch8", **kw))
    task = DistillTask(student, teacher, MMKDLoss(32, 64, MMKDConfig(num_k=2, num_f=4)))
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[:, ::2] = True
    out = task({"video": torch.randn(2, 3, 4, 32, 32), "mask": mask})
    assert seen == [(torch.float32, torch.float32)] and out["pooled"].dtype == torch.float32
    assert set(out) == {"loss", "hint", "relation", "global", "local", "pooled"}
