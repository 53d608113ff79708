"""--precision under --enable_deepspeed: the reference's fp16 on CUDA, fp32 on the CPU, an explicit value wins."""

from __future__ import annotations

import pytest
import torch

from engine.args import parse, resolve_precision
from engine.config import FinetuneConfig
from engine.deepspeed_utils import FP16_LOSS_SCALING, deepspeed_config
from engine.distributed import DistEnv

# MaskAgain utils.create_ds_config (commit 205696d): dynamic scaling from 2**7, window 128;
# hysteresis 2 and floor 1 are DeepSpeed's defaults, which the reference therefore ran with
REFERENCE_FP16 = {
    "loss_scale": 0,
    "initial_scale_power": 7,
    "loss_scale_window": 128,
    "hysteresis": 2,
    "min_loss_scale": 1,
}


def _args(**kw) -> FinetuneConfig:
    base = dict(
        precision=None,
        enable_deepspeed=True,
        device="cuda",
        batch_size=4,
        update_freq=1,
        clip_grad=None,
        zero_stage=0,
    )
    return FinetuneConfig.from_namespace({**FinetuneConfig().to_args(), **base, **kw})


@pytest.mark.parametrize(
    "kw, cuda, expected",
    [
        ({}, True, "fp16"),  # the reference's DeepSpeed fine-tuning
        ({}, False, "fp32"),  # no CUDA: DeepSpeed fp16 cannot run
        ({"device": "cpu"}, True, "fp32"),
        ({"enable_deepspeed": False}, True, "fp32"),
        ({"precision": "bf16"}, True, "bf16"),  # an explicit --precision always wins
        ({"precision": "fp32"}, True, "fp32"),
        ({"precision": "fp16", "enable_deepspeed": False}, True, "fp16"),
    ],
)
def test_precision_resolution(kw, cuda, expected, capsys):
    assert resolve_precision(_args(**kw).run, cuda_available=cuda) == expected
    noted = "DeepSpeed fp16 needs CUDA" in capsys.readouterr().out
    assert noted == (expected == "fp32" and kw.get("enable_deepspeed", True) and "precision" not in kw)


def test_parse_resolves_precision_on_this_machine(tmp_path):
    for name in ("train.csv", "val.csv"):
        (tmp_path / name).write_text("a.mp4 0\n")
    ds = parse("finetune", ["--data_path", str(tmp_path), "--enable_deepspeed"])
    assert ds.run.precision == ("fp16" if torch.cuda.is_available() else "fp32")
    assert parse("finetune", ["--data_path", str(tmp_path)]).run.precision == "fp32"
    explicit = parse("finetune", ["--data_path", str(tmp_path), "--enable_deepspeed", "--precision", "bf16"])
    assert explicit.run.precision == "bf16"


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_deepspeed_config_carries_the_reference_loss_scaling(precision):
    env = DistEnv(
        rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), distributed=True, backend="gloo"
    )
    cfg = deepspeed_config(_args(precision=precision), env)
    assert cfg["fp16"] == {"enabled": precision == "fp16", **REFERENCE_FP16}
    assert cfg["bf16"] == {"enabled": precision == "bf16"}
    assert cfg["train_batch_size"] == 8 and FP16_LOSS_SCALING == REFERENCE_FP16


def test_deepspeed_reads_the_fp16_fields_by_these_names():
    precision_config = pytest.importorskip("deepspeed.runtime.precision_config")
    env = DistEnv(
        rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), distributed=False, backend=None
    )
    fields = precision_config.DeepSpeedFP16Config(**deepspeed_config(_args(precision="fp16"), env)["fp16"])
    assert (fields.enabled, fields.initial_scale_power, fields.loss_scale_window) == (True, 7, 128)
    assert (fields.hysteresis, fields.min_loss_scale, fields.loss_scale) == (2, 1, 0)


def test_deepspeed_config_accumulates_update_freq_micro_batches() -> None:
    env = DistEnv(
        rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), distributed=True, backend="gloo"
    )
    cfg = deepspeed_config(_args(precision="fp32", batch_size=4, update_freq=3), env)
    assert cfg["gradient_accumulation_steps"] == 3 and cfg["train_batch_size"] == 4 * 3 * 2
