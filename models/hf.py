"""Hugging Face transformers' VideoMAE layout <-> ours (VideoMAE's own), and its config.json.

transformers names the same weights differently and splits ``qkv``:

=============================================  ==========================================
ours (VideoMAE)                                transformers
=============================================  ==========================================
``[encoder.]patch_embed.proj``                 ``[videomae.]embeddings.patch_embeddings.projection``
``[encoder.]blocks.i.norm1`` / ``norm2``       ``[videomae.]encoder.layer.i.layernorm_before`` / ``_after``
``...attn.qkv.weight`` [3C, C]                 ``...attention.attention.{query,key,value}.weight``
``...attn.q_bias`` / ``v_bias``                ``...query.bias`` / ``value.bias`` (>= 5) or ``q_bias`` / ``v_bias`` (<= 4)
``...attn.proj`` / ``mlp.fc1`` / ``mlp.fc2``   ``...attention.output.dense`` / ``intermediate.dense`` / ``output.dense``
``encoder.norm`` (pre-training), ``norm``      ``[videomae.]layernorm`` (``use_mean_pooling=False``)
``decoder.blocks.i``                           ``decoder.decoder_layers.i``
``head`` (classifier)                          ``classifier``
=============================================  ==========================================

Three model kinds: ``"pretraining"`` (VideoMAEForPreTraining: encoder + decoder), ``"encoder"``
(VideoMAEModel: encoder only, e.g. a distilled student) and ``"classification"``
(VideoMAEForVideoClassification). Known differences of the transformers implementation: its
``decoder.norm`` and ``fc_norm`` are LayerNorms with the default eps 1e-5 (ours 1e-6, not settable
from config.json), so outputs differ by about 1e-5 relative; layer scale (``init_values``),
learnt position embeddings and ``qk_scale`` have no transformers equivalent.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .weights import CheckpointError

KINDS = ("pretraining", "encoder", "classification")
ARCHITECTURES = {
    "pretraining": "VideoMAEForPreTraining",
    "encoder": "VideoMAEModel",
    "classification": "VideoMAEForVideoClassification",
}
# One rename table, (ours, transformers), read left to right by `to_hf` and right to left by
# `from_hf`. "{t}" stands for the trunk's prefix: ours ``encoder.`` (pre-training / encoder-only
# weights; none for a classifier), transformers' ``videomae.`` (pre-training / classifier; none for
# VideoMAEModel). The two block stacks come first; inside a block `_BLOCK` renames, and qkv is split
# (or concatenated) separately.
_STACKS = (("{t}blocks.", "{t}encoder.layer."), ("decoder.blocks.", "decoder.decoder_layers."))
_TOP = (
    ("{t}patch_embed.proj.", "{t}embeddings.patch_embeddings.projection."),
    ("{t}norm.", "{t}layernorm."),
    ("head.", "classifier."),
    # keys named alike in both layouts
    *(
        (name, name)
        for name in ("fc_norm.", "encoder_to_decoder.", "mask_token", "decoder.norm.", "decoder.head.")
    ),
)
_BLOCK = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_QKV = "attention.attention."
# q / v biases: ours, transformers >= 5, transformers <= 4 (read only)
_QV_BIAS = (("attn.q_bias", "query.bias", "q_bias"), ("attn.v_bias", "value.bias", "v_bias"))


def _table(pairs, ours_trunk: str, theirs_trunk: str, to_ours: bool) -> list[tuple[str, str]]:
    """``pairs`` with the trunk prefixes filled in, as (from, to) in the direction asked."""
    filled = [(ours.format(t=ours_trunk), theirs.format(t=theirs_trunk)) for ours, theirs in pairs]
    return [(theirs, ours) for ours, theirs in filled] if to_ours else filled


def _rename(key: str, table: list[tuple[str, str]]) -> str | None:
    """``key`` with the first prefix of ``table`` that it starts with renamed, else None."""
    return next((new + key.removeprefix(old) for old, new in table if key.startswith(old)), None)


def _in_stack(key: str, stacks: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(the renamed ``<stack>.<i>.`` prefix, the key inside the block) for a block weight, else None."""
    for old, new in stacks:
        if key.startswith(old):
            index, _, rest = key.removeprefix(old).partition(".")
            return (f"{new}{index}.", rest) if index.isdigit() else None
    return None


def is_hf_layout(state: Mapping[str, Tensor]) -> bool:
    """True for transformers' key names (``embeddings.patch_embeddings`` / ``encoder.layer.``)."""
    return any("embeddings.patch_embeddings." in k or ".layer." in f".{k}" for k in state)


def hf_kind(state: Mapping[str, Tensor]) -> str:
    """Which transformers class a state dict in its layout belongs to."""
    if any(k.startswith(("decoder.", "encoder_to_decoder.")) for k in state):
        return "pretraining"
    if any(k.startswith("classifier.") for k in state):
        return "classification"
    return "encoder"


def from_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """transformers' VideoMAE weights (either attention layout) -> VideoMAE's key layout."""
    trunk = "" if hf_kind(state) == "classification" else "encoder."
    stacks, top, block_table = (_table(pairs, trunk, "", to_ours=True) for pairs in (_STACKS, _TOP, _BLOCK))
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        k = key.removeprefix("videomae.")
        if k.startswith("position_embeddings") or k.endswith("position_embeddings"):
            continue  # a fixed sinusoid table some exports include; ours is computed
        if (block := _in_stack(k, stacks)) is not None:
            prefix, rest = block
            if rest.startswith(_QKV):
                qkv.setdefault(prefix, {})[rest.removeprefix(_QKV)] = value
                continue
            inner = _rename(rest, block_table)
            name = None if inner is None else prefix + inner
        else:
            name = _rename(k, top)
        if name is None:
            raise CheckpointError(f"unknown transformers VideoMAE weight {key!r}")
        out[name] = value
    for prefix, parts in qkv.items():
        try:
            out[prefix + "attn.qkv.weight"] = torch.cat(
                [parts["query.weight"], parts["key.weight"], parts["value.weight"]]
            )
        except KeyError as err:
            raise CheckpointError(f"transformers weights lack {prefix}{_QKV}{err.args[0]}") from None
        for ours, *names in _QV_BIAS:
            found = [parts[n] for n in names if n in parts]
            if found:
                out[prefix + ours] = found[0]
    return out


def _our_kind(state: Mapping[str, Tensor]) -> str:
    if any(k.startswith("decoder.") for k in state):
        return "pretraining"
    if any(k.startswith("encoder.") for k in state):
        return "encoder"
    return "classification"


def to_hf(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Our layout (pre-training, encoder-only or classifier) -> (transformers >= 5 layout, kind)."""
    kind = _our_kind(state)
    trunk = "" if kind == "classification" else "encoder."
    outer = "" if kind == "encoder" else "videomae."
    stacks, top = (_table(pairs, trunk, outer, to_ours=False) for pairs in (_STACKS, _TOP))
    block_table = _table(_BLOCK, "", "", to_ours=False)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == trunk + "pos_embed":
            raise CheckpointError("learnt position embeddings have no transformers VideoMAE equivalent")
        if (block := _in_stack(key, stacks)) is not None:
            prefix, rest = block
            if rest == "attn.qkv.weight":
                names = ("query.weight", "key.weight", "value.weight")
                out.update({prefix + _QKV + n: t for n, t in zip(names, value.chunk(3), strict=True)})
                continue
            if rest.startswith("gamma_"):
                raise CheckpointError("layer scale (init_values > 0) has no transformers VideoMAE equivalent")
            bias = next((_QKV + theirs for ours, theirs, _ in _QV_BIAS if rest == ours), None)
            inner = bias or _rename(rest, block_table)
            name = None if inner is None else prefix + inner
        else:
            name = _rename(key, top)
        if name is None:
            raise CheckpointError(f"cannot map weight {key!r} to transformers' VideoMAE")
        out[name] = value
    return {k: v.contiguous() for k, v in out.items()}, kind


def _encoder_of(model: nn.Module) -> nn.Module:
    return getattr(model, "encoder", model)


def architecture(model: nn.Module) -> dict:
    """transformers config fields that describe ``model`` (a `PretrainVisionTransformer` or `VisionTransformer`)."""
    enc = _encoder_of(model)
    pe, blk = enc.patch_embed, enc.blocks[0]
    arch = {
        "hidden_size": enc.embed_dim,
        "num_hidden_layers": len(enc.blocks),
        "num_attention_heads": enc.num_heads,
        "intermediate_size": blk.mlp.fc1.out_features,
        "patch_size": pe.patch_size,
        "tubelet_size": pe.tubelet_size,
        "num_frames": pe.num_frames,
        "image_size": pe.img_size,
        "qv_bias": blk.attn.q_bias is not None,
    }
    if getattr(model, "decoder_depth", 0):
        dec = model.decoder
        arch.update(
            decoder_hidden_size=dec.head.in_features,
            decoder_num_hidden_layers=len(dec.blocks),
            decoder_num_attention_heads=dec.blocks[0].attn.num_heads,
            decoder_intermediate_size=dec.blocks[0].mlp.fc1.out_features,
        )
    if hasattr(model, "use_mean_pooling"):
        arch["use_mean_pooling"] = model.use_mean_pooling
    elif getattr(model, "decoder_depth", 0):
        arch["use_mean_pooling"] = False  # our pre-training encoder ends with a LayerNorm
    return arch


def check_config(config: Mapping, model: nn.Module, source: str) -> None:
    """Raises `CheckpointError` naming the first field where config.json and ``model`` disagree."""
    if config.get("model_type") != "videomae":
        raise CheckpointError(
            f"{source}: config.json has model_type {config.get('model_type')!r}, expected 'videomae'"
        )
    ours = architecture(model)
    kind = config_kind(config)
    for name, value in ours.items():
        if name.startswith("decoder_") and kind != "pretraining":
            continue
        if name == "use_mean_pooling" and (kind == "pretraining") != (getattr(model, "decoder_depth", 0) > 0):
            continue  # fine-tuning from a pre-training folder (or the reverse) changes the pooling on purpose
        theirs = config.get(name, _HF_DEFAULTS.get(name))
        if isinstance(theirs, list | tuple):
            theirs = theirs[0] if len(set(theirs)) == 1 else tuple(theirs)
        if theirs != value:
            raise CheckpointError(
                f"{source}: config.json has {name} {theirs} but the chosen model has {value}; "
                "pick the --model / --model_t (and --num_frames / --input_size) that match it"
            )


# transformers' VideoMAEConfig defaults, for fields a config.json leaves out
_HF_DEFAULTS = {
    "image_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2, "hidden_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "qv_bias": True,
    "use_mean_pooling": True, "decoder_num_attention_heads": 6, "decoder_hidden_size": 384,
    "decoder_num_hidden_layers": 4, "decoder_intermediate_size": 1536,
}  # fmt: skip


def config_kind(config: Mapping) -> str:
    """The model kind a config.json's ``architectures`` names (default: encoder)."""
    archs = config.get("architectures") or []
    for kind, name in ARCHITECTURES.items():
        if name in archs:
            return kind
    return "encoder"


def make_config(
    model: nn.Module, kind: str, *, norm_pix_loss: bool = True, class_names: list[str] | None = None
) -> dict:
    """config.json for ``model`` exported as ``kind`` (see `ARCHITECTURES`)."""
    arch = architecture(model)
    if kind == "encoder":  # VideoMAEModel ends in a LayerNorm exactly when it does not mean-pool
        arch["use_mean_pooling"] = not isinstance(_encoder_of(model).norm, nn.LayerNorm)
    cfg = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": "videomae",
        "num_channels": _encoder_of(model).patch_embed.proj.in_channels,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": _encoder_of(model).blocks[0].norm1.eps,
        "norm_pix_loss": norm_pix_loss,
        **arch,
    }
    if kind == "pretraining":
        expected = 3 * arch["tubelet_size"] * arch["patch_size"] ** 2
        if model.decoder_num_classes != expected:
            raise CheckpointError(
                f"transformers' decoder predicts {expected} values per token, this one {model.decoder_num_classes}"
            )
    if kind == "classification":
        n = model.num_classes
        names = class_names if class_names and len(class_names) == n else [f"LABEL_{i}" for i in range(n)]
        cfg["id2label"] = {str(i): name for i, name in enumerate(names)}
        cfg["label2id"] = {name: i for i, name in enumerate(names)}
    return cfg


def model_kwargs(config: Mapping) -> tuple[str, dict]:
    """(registry model name, its keyword arguments) of our model for a transformers config.json."""
    get = lambda name: config.get(name, _HF_DEFAULTS.get(name))  # noqa: E731
    image, patch = get("image_size"), get("patch_size")
    image = image[0] if isinstance(image, list | tuple) else image
    patch = patch[0] if isinstance(patch, list | tuple) else patch
    width = get("hidden_size")
    common = dict(img_size=image, patch_size=patch, tubelet_size=get("tubelet_size"), qkv_bias=get("qv_bias"),
                  mlp_ratio=get("intermediate_size") / width)  # fmt: skip
    kind = config_kind(config)
    if kind == "classification":
        kwargs = dict(common, embed_dim=width, depth=get("num_hidden_layers"), num_heads=get("num_attention_heads"),
                      all_frames=get("num_frames"), num_classes=len(config.get("id2label") or {}) or int(config.get("num_labels", 2)),
                      use_mean_pooling=get("use_mean_pooling"))  # fmt: skip
        return "vit_base_patch16_224", kwargs
    kwargs = dict(common, encoder_embed_dim=width, encoder_depth=get("num_hidden_layers"),
                  encoder_num_heads=get("num_attention_heads"), num_frames=get("num_frames"), decoder_depth=0)  # fmt: skip
    if kind == "pretraining":
        if get("decoder_intermediate_size") * width != get("intermediate_size") * get("decoder_hidden_size"):
            raise CheckpointError(
                "config.json: the decoder's MLP ratio differs from the encoder's; ours shares one"
            )
        kwargs.update(decoder_embed_dim=get("decoder_hidden_size"), decoder_depth=get("decoder_num_hidden_layers"),
                      decoder_num_heads=get("decoder_num_attention_heads"))  # fmt: skip
    return "pretrain_videomae_base_patch16_224", kwargs
