"""Video ViT models (VideoMAE-compatible), their registry, the weights reader and the MMKD objectives."""

from . import distill, registry
from .checkpoint import LoadReport, load_finetune_weights, load_teacher_weights, to_finetune_state_dict
from .layers import set_attn_impl, sinusoid_table
from .vit import EncoderOutput, PretrainVisionTransformer, VideoEncoder, VisionTransformer
from .weights import CheckpointError, extract_state_dict, read_checkpoint, read_state_dict

__all__ = [
    "CheckpointError",
    "EncoderOutput",
    "LoadReport",
    "PretrainVisionTransformer",
    "VideoEncoder",
    "VisionTransformer",
    "distill",
    "extract_state_dict",
    "load_finetune_weights",
    "load_teacher_weights",
    "read_checkpoint",
    "read_state_dict",
    "registry",
    "set_attn_impl",
    "sinusoid_table",
    "to_finetune_state_dict",
]
