"""transformers' VideoMAE as the independent oracle: its folders load into our models and ours into it."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import models
from models import read_state_dict
from models.convert import main as convert
from models.weights import CheckpointError

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    VideoMAEConfig,
    VideoMAEForPreTraining,
    VideoMAEForVideoClassification,
    VideoMAEModel,
)

FRAMES, SIZE = 4, 32
# the pico preset: width 32, depth 2, 2 heads, decoder 32 wide, patch 8 -> 2 x 4 x 4 = 32 tokens
PICO = dict(
    image_size=SIZE, patch_size=8, num_frames=FRAMES, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=128, decoder_hidden_size=32, decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2, decoder_intermediate_size=128, layer_norm_eps=1e-6,
)  # fmt: skip


def _perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (LayerNorms and biases too), so that no mapping error hides."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture
def clip_and_mask():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=g)
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[:, torch.randperm(32, generator=g)[:24]] = True  # the same 24 hidden tokens in both clips
    return x, mask


def _ours_pretrain(decoder_depth: int = 1):
    return timm.create_model(
        "pretrain_videomae_pico_patch8", img_size=SIZE, num_frames=FRAMES, decoder_depth=decoder_depth
    ).eval()


def _ours_classifier(num_classes: int = 5, mean_pooling: bool = True):
    return timm.create_model(
        "vit_pico_patch8",
        img_size=SIZE,
        all_frames=FRAMES,
        num_classes=num_classes,
        use_mean_pooling=mean_pooling,
    ).eval()


def test_pretraining_folder_loads_strictly_and_matches_transformers(tmp_path, clip_and_mask):
    x, mask = clip_and_mask
    theirs = _perturb(VideoMAEForPreTraining(VideoMAEConfig(**PICO, use_mean_pooling=False)))
    theirs.save_pretrained(tmp_path / "hf")
    ours = _ours_pretrain()
    ours.load_state_dict(read_state_dict(tmp_path / "hf", model=ours), strict=True)
    with torch.no_grad():
        want = theirs(x.transpose(1, 2), bool_masked_pos=mask)
        got = ours(x, mask)
        hidden = theirs.videomae(x.transpose(1, 2), bool_masked_pos=mask).last_hidden_state
        assert _rel(ours.encoder(x, mask), hidden) < 1e-5  # same eps in the encoder: float32 noise only
    # the decoder's norm is LayerNorm(eps=1e-5) in transformers, ours 1e-6 (module docstring)
    assert _rel(got, want.logits) < 1e-4


def test_classification_folder_loads_strictly_and_matches_transformers(tmp_path, clip_and_mask):
    x, _ = clip_and_mask
    theirs = _perturb(VideoMAEForVideoClassification(VideoMAEConfig(**PICO, num_labels=5)))
    theirs.save_pretrained(tmp_path / "hf")
    ours = _ours_classifier()
    ours.load_state_dict(read_state_dict(tmp_path / "hf", model=ours), strict=True)
    with torch.no_grad():
        assert _rel(ours(x), theirs(x.transpose(1, 2)).logits) < 1e-4


def test_base_model_folder_and_sharded_index(tmp_path, clip_and_mask):
    x, mask = clip_and_mask
    theirs = _perturb(VideoMAEModel(VideoMAEConfig(**PICO, use_mean_pooling=True)))
    theirs.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    ours = _ours_pretrain(decoder_depth=0)
    ours.load_state_dict(read_state_dict(tmp_path / "hf", model=ours), strict=True)
    with torch.no_grad():
        want = theirs(x.transpose(1, 2), bool_masked_pos=mask).last_hidden_state
        assert _rel(ours.encode(x, mask).features, want) < 1e-5


def test_transformers_4_attention_layout(tmp_path):
    """<= 4.x stored q_bias / v_bias beside bias-free query / value in pytorch_model.bin."""
    theirs = _perturb(VideoMAEForPreTraining(VideoMAEConfig(**PICO, use_mean_pooling=False)))
    theirs.save_pretrained(tmp_path / "new")
    old = {
        k.replace("attention.attention.query.bias", "attention.attention.q_bias").replace(
            "attention.attention.value.bias", "attention.attention.v_bias"
        ): v
        for k, v in theirs.state_dict().items()
    }
    assert any(k.endswith("q_bias") for k in old)
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / "pytorch_model.bin")
    (tmp_path / "old" / "config.json").write_text((tmp_path / "new" / "config.json").read_text())
    a, b = read_state_dict(tmp_path / "new"), read_state_dict(tmp_path / "old")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_safetensors_and_pth_files_in_either_layout(tmp_path):
    from safetensors.torch import save_file

    ours = _ours_pretrain()
    save_file(ours.state_dict(), tmp_path / "ours.safetensors")
    torch.save({"module": {f"module.{k}": v for k, v in ours.state_dict().items()}}, tmp_path / "ds.pth")
    for path in (tmp_path / "ours.safetensors", tmp_path / "ds.pth"):
        got = read_state_dict(path)
        assert got.keys() == ours.state_dict().keys()
    theirs = VideoMAEForPreTraining(VideoMAEConfig(**PICO, use_mean_pooling=False))
    save_file(theirs.state_dict(), tmp_path / "hf.safetensors")
    ours.load_state_dict(read_state_dict(tmp_path / "hf.safetensors"), strict=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("hidden_size", 64), ("num_attention_heads", 4), ("num_frames", 8), ("image_size", 64), ("decoder_num_hidden_layers", 2)],
)  # fmt: skip
def test_config_mismatch_names_the_field(tmp_path, field, value):
    cfg = VideoMAEConfig(**{**PICO, field: value, "intermediate_size": 4 * PICO["hidden_size"]})
    if field == "hidden_size":
        cfg.intermediate_size = 4 * value
    VideoMAEForPreTraining(cfg).save_pretrained(tmp_path / "hf")
    with pytest.raises(CheckpointError, match=rf"config.json has {field} {value} but the chosen model has"):
        read_state_dict(tmp_path / "hf", model=_ours_pretrain())


def test_pooling_mismatch_and_bad_folders(tmp_path):
    VideoMAEForVideoClassification(
        VideoMAEConfig(**PICO, num_labels=5, use_mean_pooling=False)
    ).save_pretrained(tmp_path / "cls")
    with pytest.raises(CheckpointError, match="use_mean_pooling False but the chosen model has True"):
        read_state_dict(tmp_path / "cls", model=_ours_classifier())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without config.json"):
        read_state_dict(tmp_path / "empty")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not a transformers VideoMAE"):
        read_state_dict(tmp_path / "bert")


def _saved(model, path):
    torch.save({"model": model.state_dict(), "model_args": model.model_args}, path)
    return str(path)


def test_to_hf_pretraining_and_back(tmp_path, clip_and_mask, capsys):
    x, mask = clip_and_mask
    ours = _perturb(_ours_pretrain())
    assert convert(["to-hf", _saved(ours, tmp_path / "ckpt.pth"), str(tmp_path / "hf")]) == 0
    theirs, info = VideoMAEForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["layer_norm_eps"] == 1e-6 and cfg["use_mean_pooling"] is False
    with torch.no_grad():
        assert _rel(ours(x, mask), theirs.eval()(x.transpose(1, 2), bool_masked_pos=mask).logits) < 1e-4
    for out in ("back.pth", "back.safetensors"):
        assert convert(["from-hf", str(tmp_path / "hf"), str(tmp_path / out)]) == 0
        state = read_state_dict(tmp_path / out)
        assert all(torch.equal(state[k], v) for k, v in ours.state_dict().items())
    back = models.registry.rebuild(torch.load(tmp_path / "back.pth", weights_only=True)["model_args"])
    back.load_state_dict(read_state_dict(tmp_path / "back.pth"), strict=True)


def test_to_hf_distilled_student_drops_the_heads(tmp_path, clip_and_mask):
    x, mask = clip_and_mask
    student = _perturb(_ours_pretrain(decoder_depth=0))
    state = {f"student.{k}": v for k, v in student.state_dict().items()}
    state["heads.hint.weight"] = torch.zeros(4, 4)
    torch.save({"model": state, "model_args": student.model_args}, tmp_path / "kd.pth")
    assert convert(["to-hf", str(tmp_path / "kd.pth"), str(tmp_path / "hf")]) == 0
    theirs, info = VideoMAEModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["use_mean_pooling"] is True
    with torch.no_grad():
        want = theirs.eval()(x.transpose(1, 2), bool_masked_pos=mask).last_hidden_state
        assert _rel(student.encode(x, mask).features, want) < 1e-5


def test_to_hf_classifier_with_class_names(tmp_path, clip_and_mask):
    x, _ = clip_and_mask
    ours = _perturb(_ours_classifier(num_classes=3))
    names = tmp_path / "classes.txt"
    names.write_text("left\nright\nup\n")
    argv = ["to-hf", _saved(ours, tmp_path / "ft.pth"), str(tmp_path / "hf"), "--class_names", str(names)]
    assert convert(argv) == 0
    theirs, info = VideoMAEForVideoClassification.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert theirs.config.id2label == {0: "left", 1: "right", 2: "up"} and theirs.config.num_labels == 3
    with torch.no_grad():
        # fc_norm is LayerNorm(eps=1e-5) in transformers, ours 1e-6
        assert _rel(ours(x), theirs.eval()(x.transpose(1, 2)).logits) < 1e-4


def test_to_hf_foreign_file_needs_model_and_sizes(tmp_path, capsys):
    ours = _ours_pretrain()
    torch.save({"model": ours.state_dict()}, tmp_path / "official.pth")
    assert convert(["to-hf", str(tmp_path / "official.pth"), str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --model" in err
    assert (
        convert(["to-hf", str(tmp_path / "official.pth"), str(tmp_path / "b"), "--model", "vit_pico_patch8"])
        == 1
    )
    assert "pretrain_videomae_* model name" in capsys.readouterr().err
    argv = ["to-hf", str(tmp_path / "official.pth"), str(tmp_path / "c"), "--model", "pretrain_videomae_pico_patch8",
            "--input_size", str(SIZE), "--num_frames", str(FRAMES)]  # fmt: skip
    assert convert(argv) == 0
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert (cfg["image_size"], cfg["num_frames"], cfg["decoder_num_hidden_layers"]) == (SIZE, FRAMES, 1)
    assert convert(argv) == 1 and "not empty" in capsys.readouterr().err  # never overwrites


def test_a_rename_is_declared_once_for_both_directions(monkeypatch):
    """One table (issue 22.4): a pair added to it maps our key to transformers' and back."""
    from models import hf

    monkeypatch.setattr(hf, "_TOP", (*hf._TOP, ("{t}extra.", "{t}extra_layer.")))
    ours = {**_ours_classifier().state_dict(), "extra.weight": torch.ones(2)}
    theirs, kind = hf.to_hf(ours)
    assert kind == "classification" and torch.equal(theirs["videomae.extra_layer.weight"], torch.ones(2))
    back = hf.from_hf(theirs)
    assert back.keys() == ours.keys() and all(torch.equal(back[k], v) for k, v in ours.items())
