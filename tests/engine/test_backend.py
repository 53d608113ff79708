"""engine.backend: plain torch and DeepSpeed behind one interface, chosen in one place."""

from __future__ import annotations

import inspect
import re

import torch
from torch import nn

from engine.backend import DeepSpeedBackend, TorchBackend, build_backend
from engine.config import PretrainConfig
from engine.distributed import DistEnv
from tests.engine.conftest import ROOT

CPU = DistEnv(0, 1, 0, torch.device("cpu"), distributed=False, backend=None)


def _interface(cls) -> dict[str, list[str]]:
    """Public methods / properties and their parameter names."""
    out = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            out[name] = ["property"]
        elif inspect.isfunction(member):
            out[name] = list(inspect.signature(member).parameters)
    return out


def test_both_backends_expose_the_same_interface() -> None:
    torch_side = _interface(TorchBackend)
    torch_side["optimizer"] = ["property"]  # an attribute there, a property of the engine's here
    assert torch_side == _interface(DeepSpeedBackend)
    assert {"forward", "backward", "zero_grad", "state_dict", "save", "load", "prune"} <= set(torch_side)


def test_runner_and_loop_leave_deepspeed_to_the_backend() -> None:
    """No ``if deepspeed`` through the trainer or the loop: the choice is `build_backend`'s alone."""
    branch = re.compile(r"\b(if|elif|else)\b.*(deepspeed|ds_engine|engine is (not )?None)", re.IGNORECASE)
    for name in ("runner.py", "loop.py", "checkpointer.py"):
        lines = (ROOT / "engine" / name).read_text().splitlines()
        assert [x for x in lines if branch.search(x)] == [], name
    choices = [
        x for x in (ROOT / "engine" / "backend.py").read_text().splitlines() if "enable_deepspeed" in x
    ]
    assert [x.strip() for x in choices if x.strip().startswith("if")] == ["if cfg.run.enable_deepspeed:"]


class _Task(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 2)

    def forward(self, batch: dict) -> dict:
        return {"loss": self.lin(batch["video"]).pow(2).mean()}


def test_torch_backend_accumulates_and_steps_on_the_window_boundary() -> None:
    """Two micro-batches of loss / 2 then one step equal one step on the whole batch (SGD)."""
    args = PretrainConfig.from_namespace({**PretrainConfig().to_args(), "precision": "fp32"})
    video = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    whole, split = _Task(), _Task()
    for task, parts in ((whole, [video]), (split, [video[:2], video[2:]])):
        backend = build_backend(task, torch.optim.SGD(task.parameters(), lr=0.1), args, CPU)
        assert isinstance(backend, TorchBackend) and backend.module is task  # one process: no DDP wrap
        for j, part in enumerate(parts):
            loss = backend.loss_for_backward(backend.forward({"video": part})["loss"], len(parts))
            norm, skipped = backend.backward(loss, boundary=j == len(parts) - 1, need_norm=True)
        assert norm is not None and skipped is None and all(p.grad is None for p in task.parameters())
    torch.testing.assert_close(whole.lin.weight, split.lin.weight)
    assert set(backend.state_dict()) == {"optimizer", "scaler"}
