"""MMKD objectives: one file per term, registered in `registry`, composed by `MMKDLoss`.

A new objective is one file: an `Objective` subclass decorated with `register` that declares its
flags, the encoder outputs it needs, its heads and its loss, imported below (or by your script
before the parser is built), and one test.
"""

# the spec's order (§4.1-4.4) is the registration order: the loss sum's and the heads' in the state dict
from . import hint, relation, global_attn, local_attn  # noqa: F401, I001
from .common import select_tokens, topk_attention, topk_keep_mask
from .global_attn import aggregate_global, mm_global_loss
from .hint import mm_hint_loss
from .local_attn import VALUE_LAYOUTS, aggregate_local, mm_local_loss
from .mmkd import MMKDConfig, MMKDLoss, fit_problem
from .registry import (
    MODES,
    Context,
    Flag,
    Objective,
    VisibleTokens,
    Widths,
    config_flags,
    objectives,
    register,
)
from .relation import mm_relation_loss

__all__ = [
    "MODES",
    "VALUE_LAYOUTS",
    "Context",
    "Flag",
    "MMKDConfig",
    "MMKDLoss",
    "Objective",
    "VisibleTokens",
    "Widths",
    "aggregate_global",
    "aggregate_local",
    "config_flags",
    "fit_problem",
    "mm_global_loss",
    "mm_hint_loss",
    "mm_local_loss",
    "mm_relation_loss",
    "objectives",
    "register",
    "select_tokens",
    "topk_attention",
    "topk_keep_mask",
]
