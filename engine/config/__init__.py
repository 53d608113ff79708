"""Typed settings of the training tasks (sections in `sections`, tasks in `tasks`); the argparse
CLI is generated from them (`engine.args`), and `validate` checks them once."""

from engine.config.sections import (
    DATA_SETS,
    PRECISIONS,
    DataConfig,
    EMAConfig,
    FinetuneSection,
    MAEConfig,
    MaskingConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TeacherConfig,
)
from engine.config.tasks import TASKS, DistillConfig, FinetuneConfig, PretrainConfig, TaskConfig

__all__ = [
    "DATA_SETS",
    "PRECISIONS",
    "TASKS",
    "DataConfig",
    "DistillConfig",
    "EMAConfig",
    "FinetuneConfig",
    "FinetuneSection",
    "MAEConfig",
    "MaskingConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RunConfig",
    "TaskConfig",
    "TeacherConfig",
]
