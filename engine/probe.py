"""Linear probing on frozen features, as MAE does it: BatchNorm1d without affine + Linear, LARS,
lr = blr x batch / 256 with a linear warm-up and a half-cycle cosine per step, no weight decay."""

from __future__ import annotations

import math

import torch
from timm.layers import trunc_normal_
from timm.optim import Lars
from torch import Tensor, nn

from engine.optim import cosine_scheduler


class LinearProbe(nn.Module):
    """[B, C] features -> [B, K] logits; the BatchNorm only standardises each feature channel."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(x))


def _optimizer(probe: LinearProbe, opt: str, lr: float) -> torch.optim.Optimizer:
    if opt == "sgd":
        return torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    # MAE's LARS adapts the weight matrix's step to its norm, never the bias's
    groups = [
        {"params": [probe.head.weight], "always_adapt": True},
        {"params": [probe.head.bias], "trust_clip": False},
    ]
    return Lars(groups, lr=lr, momentum=0.9, weight_decay=0.0)


@torch.no_grad()
def accuracy(probe: LinearProbe, x: Tensor, y: Tensor, batch: int = 4096) -> tuple[float, float]:
    """(top-1, top-5) in percent; top-5 is top-K when there are fewer classes."""
    probe.eval()
    logits = torch.cat([probe(x[i : i + batch]) for i in range(0, len(x), batch)])
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == y[:, None]
    return 100.0 * hit[:, 0].float().mean().item(), 100.0 * hit.any(1).float().mean().item()


def train_probe(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    num_classes: int,
    *,
    epochs: int = 90,
    batch_size: int = 256,
    blr: float = 0.1,
    warmup_epochs: int = 10,
    opt: str = "lars",
    seed: int = 0,
    log=None,
) -> dict:
    """Trains the probe on ``train`` = (features [N, C], labels [N]); scores ``val`` every epoch.

    Returns ``{"top1", "top5"}`` of the last epoch, ``"best_top1"`` and the probe's state dict.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = train
    probe = LinearProbe(x.shape[1], num_classes)
    batch_size = min(batch_size, len(x))
    lr = blr * batch_size / 256
    steps = math.ceil(len(x) / batch_size)
    schedule = cosine_scheduler(
        lr, 0.0, epochs, steps, warmup_epochs=min(warmup_epochs, epochs - 1), start_warmup_value=0.0
    )
    optimizer = _optimizer(probe, opt, lr)
    loss_fn = nn.CrossEntropyLoss()
    best = 0.0
    it = 0
    for epoch in range(epochs):
        probe.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(steps):
            idx = order[i * batch_size : (i + 1) * batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            for group in optimizer.param_groups:
                group["lr"] = float(schedule[it])
            it += 1
            loss = loss_fn(probe(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        top1, top5 = accuracy(probe, *val)
        best = max(best, top1)
        if log is not None:
            log({"epoch": epoch, "train_loss": total / steps, "val_top1": top1, "val_top5": top5})
    return {"top1": top1, "top5": top5, "best_top1": best, "state_dict": probe.state_dict()}
