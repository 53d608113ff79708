"""Checkpoint helpers: containers, teacher loading with a named report, pre-training -> fine-tuning."""

from __future__ import annotations

import pytest
import timm
import torch

import models  # noqa: F401
from models.checkpoint import load_finetune_weights, load_teacher_weights, to_finetune_state_dict
from models.weights import CheckpointError, extract_state_dict, read_checkpoint

KW = dict(img_size=32, num_frames=8)


def _pretrain(size="nano", depth=1):
    torch.manual_seed(0)
    return timm.create_model(f"pretrain_videomae_{size}_patch8", decoder_depth=depth, **KW)


def test_timm_factories_build_after_import():
    vit = timm.create_model("vit_base_patch16_224", num_classes=400)
    assert isinstance(vit, models.VisionTransformer) and vit.head.out_features == 400
    enc = timm.create_model("pretrain_videomae_small_patch16_224", decoder_depth=0)
    assert isinstance(enc, models.PretrainVisionTransformer) and not hasattr(enc, "decoder")
    assert enc.encoder.embed_dim == 384 and len(enc.encoder.blocks) == 12
    with pytest.raises(ValueError, match="nothing is downloaded"):
        timm.create_model("vit_small_patch16_224", pretrained=True)


@pytest.mark.parametrize("wrap", ["model", "module", None, "prefixed"])
def test_containers(tmp_path, wrap):
    sd = _pretrain().state_dict()
    obj = {"module." + k: v for k, v in sd.items()} if wrap == "prefixed" else ({wrap: sd} if wrap else sd)
    torch.save(obj, tmp_path / "c.pth")
    got = extract_state_dict(read_checkpoint(tmp_path / "c.pth"))
    assert set(got) == set(sd)


def test_teacher_from_official_pretraining_checkpoint_reports_unused():
    full = _pretrain().state_dict()  # encoder + norm + decoder + encoder_to_decoder + mask_token
    teacher = _pretrain(depth=0)
    report = load_teacher_weights(teacher, full)
    assert not report.missing and not report.unexpected
    assert any(k.startswith("encoder.norm.") for k in report.expected_unused)
    assert "mask_token" in report.expected_unused and any(
        k.startswith("decoder.") for k in report.expected_unused
    )
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, full[k])
    assert "expected-unused" in report.summary()


def test_teacher_of_another_architecture_is_a_clear_error():
    teacher = _pretrain(depth=0)
    with pytest.raises(CheckpointError, match="shape") as err:
        load_teacher_weights(teacher, _pretrain("pico").state_dict())
    assert "width 32" in str(err.value) and "\n" not in str(err.value)
    partial = {k: v for k, v in _pretrain(depth=0).state_dict().items() if "blocks.3." not in k}
    with pytest.raises(CheckpointError, match="missing"):
        load_teacher_weights(teacher, partial)
    extra = {**_pretrain(depth=0).state_dict(), "encoder.extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected"):
        load_teacher_weights(teacher, extra)


def test_pretraining_and_distillation_checkpoints_load_for_finetuning():
    pre = _pretrain().state_dict()
    vit = timm.create_model("vit_nano_patch8", num_classes=5, all_frames=8, img_size=32)
    report = load_finetune_weights(vit, pre)
    assert not report.missing or all(k.startswith(("head.", "fc_norm.")) for k in report.missing)
    assert torch.equal(vit.blocks[0].attn.qkv.weight, pre["encoder.blocks.0.attn.qkv.weight"])
    distilled = {f"student.{k}": v for k, v in _pretrain(depth=0).state_dict().items()}
    distilled["heads.align_feature.fc1.weight"] = torch.zeros(2, 2)
    state, dropped = to_finetune_state_dict(distilled)
    assert "heads.align_feature.fc1.weight" in dropped and "blocks.0.norm1.weight" in state
    report = load_finetune_weights(vit, distilled)
    assert "heads.align_feature.fc1.weight" in report.expected_unused
    with pytest.raises(CheckpointError, match="does not fit"):
        load_finetune_weights(vit, _pretrain("pico").state_dict())


def test_garbage_and_hostile_files_are_refused(tmp_path):
    (tmp_path / "g.pth").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(tmp_path / "g.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "none.pth")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing"):
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_one_module_reads_weights_files():
    """models/weights.py is the one reader (issue 22.4): no other model file opens a weights file,
    and the names engine/ imports from models.checkpoint are the reader's own."""
    from pathlib import Path

    import models.checkpoint
    import models.weights

    root = Path(models.weights.__file__).parent
    readers = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if any(call in p.read_text(encoding="utf-8") for call in ("torch.load(", "load_file(", "safe_open("))
    ]
    assert readers == ["weights.py"]
    for name in ("CheckpointError", "read_checkpoint", "extract_state_dict"):
        assert getattr(models.checkpoint, name) is getattr(models.weights, name)
