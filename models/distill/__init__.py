"""MMKD objectives: one file per term, composed by `MMKDLoss`.

A new objective is one file with a loss function, one entry in `mmkd.MODES` and one test.
"""

from .common import select_tokens, topk_attention, topk_keep_mask
from .global_attn import aggregate_global, mm_global_loss
from .hint import mm_hint_loss
from .local_attn import VALUE_LAYOUTS, aggregate_local, mm_local_loss
from .mmkd import MODES, MMKDConfig, MMKDLoss
from .relation import mm_relation_loss

__all__ = [
    "MODES",
    "VALUE_LAYOUTS",
    "MMKDConfig",
    "MMKDLoss",
    "aggregate_global",
    "aggregate_local",
    "mm_global_loss",
    "mm_hint_loss",
    "mm_local_loss",
    "mm_relation_loss",
    "select_tokens",
    "topk_attention",
    "topk_keep_mask",
]
