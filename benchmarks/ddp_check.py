"""The collective paths under torchrun, also with one process: a process group is created even at
world size 1 (the entry points only create one from two ranks up), so on a single GPU the nccl
backend still runs our collectives and a DDP-wrapped distillation step. Prints one JSON line.

    torchrun --standalone --nproc_per_node=1 benchmarks/ddp_check.py --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timm  # noqa: E402

import models  # noqa: E402,F401
from datasets.masking import TubeMaskingGenerator  # noqa: E402
from engine.distributed import all_gather_object, all_reduce_mean, barrier  # noqa: E402
from engine.optim import build_optimizer  # noqa: E402
from engine.precision import autocast_context, make_grad_scaler  # noqa: E402
from engine.runner import weights_digest  # noqa: E402
from engine.tasks import DistillTask  # noqa: E402
from models.distill import MMKDConfig, MMKDLoss  # noqa: E402
from models.tokens import count_visible  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    p.add_argument("--student", default="pretrain_videomae_pico_patch8")
    p.add_argument("--teacher", default="pretrain_videomae_nano_patch8")
    p.add_argument("--num_frames", type=int, default=8)
    p.add_argument("--input_size", type=int, default=32)
    args = p.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(args.device, local) if args.device == "cuda" else torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    torch.manual_seed(0)  # the same weights on every rank, as DDP's broadcast would make them
    kw = dict(decoder_depth=0, img_size=args.input_size, num_frames=args.num_frames)
    student, teacher = timm.create_model(args.student, **kw), timm.create_model(args.teacher, **kw)
    heads = MMKDLoss(student.encoder.embed_dim, teacher.encoder.embed_dim, MMKDConfig(num_k=3, num_f=4))
    task = DistillTask(student, teacher, heads).to(device)
    ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel(task, device_ids=ids)
    opt = build_optimizer(task, lr=1e-3, weight_decay=0.05)
    scaler = make_grad_scaler(device, args.precision)
    gen = TubeMaskingGenerator(student.encoder.grid_size, 0.75)
    torch.manual_seed(rank)  # different data per rank
    mask = torch.stack([torch.as_tensor(gen()) for _ in range(2)])
    batch = {
        "video": torch.randn(2, 3, args.num_frames, args.input_size, args.input_size, device=device),
        "mask": mask.to(device),
        "num_visible": count_visible(mask),
    }
    losses = []
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, args.precision):
            loss = ddp(batch)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(all_reduce_mean(loss.detach())))
    barrier()
    digests = all_gather_object(weights_digest(task.checkpoint_state()))
    ok = len(set(digests)) == 1 and all(torch.isfinite(torch.tensor(losses)))
    if rank == 0:
        print(
            json.dumps({"check": "ddp", "backend": backend, "world_size": world, "losses": losses, "ok": ok})
        )
    dist.destroy_process_group()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
