"""DeepSpeed set-up: our optimiser (with its lr-scale / weight-decay groups) handed to the engine."""

from __future__ import annotations

from torch import nn

from engine.config import TaskConfig
from engine.distributed import DistEnv

# The reference's DeepSpeed fp16 loss scaling (MaskAgain utils.create_ds_config): dynamic scaling
# from 2**7, doubled after 128 overflow-free steps; hysteresis and the floor are DeepSpeed's defaults,
# written out so that a DeepSpeed upgrade cannot change them.
FP16_LOSS_SCALING = {
    "loss_scale": 0,
    "initial_scale_power": 7,
    "loss_scale_window": 128,
    "hysteresis": 2,
    "min_loss_scale": 1,
}


def deepspeed_config(cfg: TaskConfig, env: DistEnv) -> dict:
    """The engine's JSON config from our flags (precision, ZeRO stage, clipping, batch)."""
    optim, run = cfg.optim, cfg.run
    return {
        "train_micro_batch_size_per_gpu": optim.batch_size,
        "train_batch_size": optim.batch_size * optim.update_freq * env.world_size,
        "gradient_accumulation_steps": optim.update_freq,
        "gradient_clipping": optim.clip_grad or 0.0,
        "steps_per_print": 10**9,
        "zero_optimization": {"stage": run.zero_stage},
        "fp16": {"enabled": run.precision == "fp16", **FP16_LOSS_SCALING},
        "bf16": {"enabled": run.precision == "bf16"},
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }


def initialize(task: nn.Module, optimizer, cfg: TaskConfig, env: DistEnv):
    """Returns the DeepSpeed engine wrapping ``task`` (its forward returns the loss dict)."""
    try:
        import deepspeed
    except ImportError as err:
        raise RuntimeError("--enable_deepspeed needs the deepspeed package: pip install deepspeed") from err
    engine, _, _, _ = deepspeed.initialize(model=task, optimizer=optimizer, config=deepspeed_config(cfg, env))
    return engine
