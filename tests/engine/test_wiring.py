"""What the entry points build, checked on the exact objects they build (issue: parity of the run).

Each test here failed on the code before the whole-run fidelity work: the optimiser groups the
real fine-tuning / pre-training entry points build, the teacher's precision inside a half-precision
step, errors on ranks > 0, device choice under slurm GPU binding, rank-0 decisions, counters on resume.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

import run_class_finetuning
import run_mae_pretraining
import run_mmkd_distill
from engine import args as cli_args
from engine.checkpointer import Checkpointer
from engine.distributed import DistEnv
from engine.runner import Trainer
from tests.engine.conftest import ROOT, distill_argv, finetune_argv

CPU = DistEnv(0, 1, 0, torch.device("cpu"), distributed=False, backend=None)


def _groups_by_name(trainer: Trainer) -> dict[str, dict]:
    return {name: g for g in trainer.optimizer.param_groups for name in g["param_names"]}


def test_finetuning_entry_point_applies_layer_decay_to_every_parameter(videos, tmp_path) -> None:
    args = cli_args.parse("finetune", finetune_argv(videos, tmp_path, "--layer_decay", "0.75"))
    task = run_class_finetuning.build_task(args, 3)
    trainer = Trainer(args, CPU, task, [None] * 8)
    depth = task.model.get_num_layers()
    groups = _groups_by_name(trainer)
    names = [n for n, p in task.model.named_parameters()]
    assert sorted(groups) == sorted(names)  # the classifier's own names, every trainable tensor once
    for name in names:
        layer = 0 if name.startswith("patch_embed") else (
            int(name.split(".")[1]) + 1 if name.startswith("blocks.") else depth + 1
        )  # fmt: skip
        assert groups[name]["lr_scale"] == pytest.approx(0.75 ** (depth + 1 - layer)), name
    assert groups["head.weight"]["lr_scale"] == 1.0 and groups["patch_embed.proj.weight"]["lr_scale"] < 0.5


def test_pretraining_entry_point_exempts_mask_token_from_weight_decay(videos, tmp_path) -> None:
    argv = ["--data_path", str(videos / "pretrain.csv"), "--model", "pretrain_videomae_pico_patch8",
            "--num_frames", "8", "--input_size", "32", "--device", "cpu", "--decoder_depth", "1"]  # fmt: skip
    args = cli_args.parse("pretrain", argv)
    trainer = Trainer(args, CPU, run_mae_pretraining.build_task(args), [None] * 4)
    groups = _groups_by_name(trainer)
    assert groups["mask_token"]["weight_decay"] == 0.0
    assert groups["encoder.blocks.0.attn.qkv.weight"]["weight_decay"] == args.optim.weight_decay


def _half_masked_clip(b: int = 2) -> dict:
    mask = torch.zeros(b, 64, dtype=torch.bool)
    mask[:, ::2] = True
    return {"video": torch.randn(b, 3, 8, 32, 32), "mask": mask}


@pytest.mark.parametrize("teacher_precision, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_teacher_precision_holds_inside_a_bf16_step(
    videos, teacher_ckpt, tmp_path, teacher_precision, expected
):
    argv = distill_argv(
        videos, teacher_ckpt, tmp_path, "--precision", "bf16", "--teacher_precision", teacher_precision
    )
    task = run_mmkd_distill.build_task(cli_args.parse("distill", argv))
    seen = []
    task.teacher.encoder.blocks[-1].register_forward_hook(lambda m, i, out: seen.append(out[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what the loop enters for --precision bf16
        losses = task(_half_masked_clip())
    assert seen == [expected] and torch.isfinite(losses["loss"])


def test_fp32_teacher_stays_float32_when_the_task_is_cast_to_half(videos, teacher_ckpt, tmp_path) -> None:
    """DeepSpeed bf16 casts the task; an fp32 teacher must not follow, the heads must still work."""
    argv = distill_argv(videos, teacher_ckpt, tmp_path, "--precision", "bf16", "--teacher_precision", "fp32")
    task = run_mmkd_distill.build_task(cli_args.parse("distill", argv)).bfloat16()
    assert task.teacher.encoder.patch_embed.proj.weight.dtype == torch.float32
    assert task.heads.align_feature.fc1.weight.dtype == torch.bfloat16  # pico 32 <- nano 64: heads exist
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = task(_half_masked_clip())
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert task.heads.global_s.fc.weight.grad is not None


def test_error_on_a_non_zero_rank_reaches_stderr_under_torchrun(tmp_path) -> None:
    script = tmp_path / "fail_on_rank1.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from datasets import BadDataError
        from engine.cli import run
        from engine.distributed import init_distributed

        def main(argv):
            env = init_distributed("cpu")
            if env.rank == 1:
                raise BadDataError("video v_17.avi is unreadable on this rank")

        sys.exit(run(main))
    """)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert "fail_on_rank1.py [rank 1]: error: video v_17.avi is unreadable on this rank" in proc.stderr


@pytest.mark.parametrize("local_rank, visible, expected", [(3, 8, 3), (3, 1, 0), (0, 1, 0)])
def test_cuda_device_under_slurm_gpu_binding(monkeypatch, local_rank, visible, expected) -> None:
    from engine import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    assert distributed._pick_device("cuda", local_rank) == torch.device("cuda", expected)


def test_cuda_device_with_too_few_visible_gpus_is_a_usage_error(monkeypatch) -> None:
    from engine import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(cli_args.UsageError, match="LOCAL_RANK 3 but only 2 GPUs"):
        distributed._pick_device("cuda", 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _decisions_worker(rank: int, port: int, out) -> None:
    from engine.distributed import cleanup, init_distributed
    from engine.logger import TensorboardLogger

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    env = init_distributed("cpu")
    try:
        # each rank validates on its own (no --dist_eval) and sees another accuracy / other files
        checkpointer = SimpleNamespace(
            env=env, best=50.0, run=SimpleNamespace(resume="", auto_resume=True),
            files=SimpleNamespace(cleanup_temp=lambda: None, latest=lambda: f"checkpoint-{rank}.pth"),
        )  # fmt: skip
        fake = SimpleNamespace(
            env=env, ema=None, tb=TensorboardLogger(None), checkpointer=checkpointer,
            task=SimpleNamespace(model=None),
            evaluate=lambda model: {"acc1": 60.0 if rank == 0 else 40.0},
        )  # fmt: skip
        is_best = Trainer._validate(fake, 3, {})
        path = Checkpointer._resume_path(checkpointer)
        out.put((rank, is_best, checkpointer.best, str(path)))
    finally:
        cleanup()


def test_best_checkpoint_and_resume_file_are_decided_on_rank_0() -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    mp.spawn(_decisions_worker, args=(_free_port(), out), nprocs=2, join=True)
    results = sorted(out.get(timeout=30) for _ in range(2))
    assert results == [(0, True, 60.0, "checkpoint-0.pth"), (1, True, 60.0, "checkpoint-0.pth")]
