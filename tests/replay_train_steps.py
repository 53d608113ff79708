"""Replays a reference training-step fixture through the project's real code path.

    python tests/replay_train_steps.py ../shared/fixtures/reference_parity/train_finetune_case2.pt

A ``train_*.pt`` file (see the fixtures' README, section 7) holds a few steps of a reference
training loop in float64: its command line (``config["argv"]``), initial weights, batches and
everything it set or produced at every iteration. This tool parses that command line with the
entry point's own parser, builds the task with the entry point's own ``build_task`` and trains
one epoch with the real `engine.runner.Trainer` (optimiser groups, layer decay, schedules,
accumulation, clipping, EMA, the training loop). Only three things are substituted:

* the data: the fixture's batches instead of the video loader;
* the model sizes: ``engine.build.create`` builds the fixture's tiny architecture
  (``config["model_kwargs"]`` / ``["teacher_kwargs"]``, with the entry point's own keyword
  arguments on top, as the reference harness did with ``create_model``);
* the initial weights: the fixture's (the teacher through ``--path_t``, as users pass it).

Plumbing flags added to the reference's: ``--device cpu --num_workers 0``, a stand-in
``--data_path``, ``--path_t``, ``--reprob 0`` for fine-tuning (the batches arrive augmented: the
reference erases in its data set, we erase on the device in the task), ``--print_freq 1`` (so that the gradient norm is logged every step,
as the reference logs it), and ``--local_value_layout reference`` for distillation (the
reference's MM-local value pairing; our default is the time-major one, see MMKD_SPEC §4.4).

The last line printed is one JSON object; the exit code is 0 iff every compared quantity is
within ``--rtol`` (default 1e-9) relative to the fixture (max |ours - ref| / max |ref| per tensor)
and every discrete one (groups, step pattern, schedule indices) is equal.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import sys
import tempfile
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import args as cli_args  # noqa: E402
from engine import build  # noqa: E402
from engine.config import TaskConfig  # noqa: E402
from engine.runner import Trainer, setup  # noqa: E402
from models import PretrainVisionTransformer, VisionTransformer  # noqa: E402

ENTRY = {"finetune": "run_class_finetuning", "pretrain": "run_mae_pretraining", "distill": "run_mmkd_distill"}
CLASSES = {"VisionTransformer": VisionTransformer, "PretrainVisionTransformer": PretrainVisionTransformer}
# our loss-dict keys for the reference's per-iteration loss names
TERMS = {"loss_hint": "hint", "loss_relation": "relation", "loss_global": "global", "loss_local": "local"}


def rel_err(ours, ref) -> float:
    """max |ours - ref| / max |ref| over the tensor (0 for two all-zero tensors)."""
    ours, ref = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(ref, dtype=torch.float64)
    if ours.shape != ref.shape:
        return math.inf
    diff = (ours - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def _plumbing(fx: dict, tmp: Path) -> list[str]:
    cfg = fx["config"]
    argv = ["--device", "cpu", "--num_workers", "0", "--print_freq", "1"]
    if cfg["kind"] == "finetune":
        for split in ("train", "val", "test"):  # the lists only have to exist: the batches replace them
            (tmp / f"{split}.csv").write_text("unused.mp4 0\n")
        # --reprob 0: the fixture's clips are the reference's augmented ones (its erasing ran in its
        # data set; ours runs in the task, on the device)
        argv += ["--data_path", str(tmp), "--reprob", "0"]
    else:
        (tmp / "train.csv").write_text("unused.mp4 0\n")
        argv += ["--data_path", str(tmp / "train.csv")]
    if cfg["kind"] == "distill":
        torch.save({"model": fx["params"]["teacher"]}, tmp / "teacher.pth")
        argv += ["--path_t", str(tmp / "teacher.pth"), "--local_value_layout", "reference"]
    return argv


@contextlib.contextmanager
def fixture_models(cfg: dict):
    """``engine.build.create`` builds the fixture's architecture, the entry point's kwargs on top."""
    norm = partial(nn.LayerNorm, eps=cfg["norm_eps"])
    cls = CLASSES[cfg["model_class"].rsplit(".", 1)[-1]]

    def create(name: str, option: str, **kwargs) -> nn.Module:
        spec = dict(cfg["teacher_kwargs"] if option == "--model_t" else cfg["model_kwargs"])
        spec.update({k: v for k, v in kwargs.items() if v is not None})
        return cls(norm_layer=norm, **spec)

    with mock.patch.object(build, "create", create):
        yield


def build_trainer(fx: dict, tmp: Path) -> tuple[Trainer, TaskConfig]:
    cfg = fx["config"]
    kind = cfg["kind"]
    entry = importlib.import_module(ENTRY[kind])
    args = cli_args.parse(kind, [*cfg["argv"], *_plumbing(fx, tmp)])
    env = setup(args)
    with fixture_models(cfg):
        task = (
            entry.build_task(args, args.finetune.nb_classes, env.device)
            if kind == "finetune"
            else entry.build_task(args)
        )
    trained = task.student if kind == "distill" else task.model
    trained.load_state_dict(fx["params"]["model"], strict=True)
    if "heads" in fx["params"]:
        task.heads.load_state_dict(fx["params"]["heads"], strict=True)
    elif kind == "distill" and list(task.heads.state_dict()):
        raise SystemExit(f"the fixture has no alignment heads but ours has {list(task.heads.state_dict())}")
    task.to(torch.float64 if cfg.get("dtype", "float64") == "float64" else torch.float32)
    return Trainer(args, env, task, list(fx["inputs"]["batches"])), args


def _reference_names(fx: dict, group: dict) -> list[str]:
    return list(group.get("names_fixture", group["names"]))


def _our_names(kind: str, group: dict) -> list[str]:
    names = group["param_names"]
    if kind == "distill":  # the task's names: student.* and heads.*; the fixture's drop those prefixes
        names = [n.removeprefix("student.").removeprefix("heads.") for n in names]
    return names


def replay(path: str | Path, rtol: float = 1e-9) -> dict:
    """Runs the fixture; returns the comparison (``ok`` and the per-quantity errors)."""
    fx = torch.load(path, map_location="cpu", weights_only=True)
    cfg, exp = fx["config"], fx["expected"]
    kind = cfg["kind"]
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer, args = build_trainer(fx, Path(tmp))
        trainer.train_epoch(cfg["start_epoch"], observer=records.append)
    out: dict = {"fixture": Path(path).name, "kind": kind}
    problems: list[str] = []

    ours_groups = trainer.optimizer.param_groups
    groups_match = len(ours_groups) == len(exp["param_groups"]) and all(
        _our_names(kind, g) == _reference_names(fx, r)
        and math.isclose(g["lr_scale"], r["lr_scale"], rel_tol=1e-12)
        and math.isclose(g["base_weight_decay"], r["weight_decay"], rel_tol=1e-12, abs_tol=0.0)
        for g, r in zip(ours_groups, exp["param_groups"])
    )
    if not groups_match:
        problems.append("optimiser parameter groups (names / lr_scale / weight_decay) differ")
    out["groups_match"] = groups_match
    out["max_rel_err_schedules"] = max(
        rel_err(torch.from_numpy(trainer.lr_schedule), exp["lr_schedule"]),
        rel_err(torch.from_numpy(trainer.wd_schedule), exp["wd_schedule"]),
    )

    per = exp["per_iter"]
    k = len(per["loss"])
    if len(records) != k:
        problems.append(f"{len(records)} micro-batches run, the reference ran {k}")
        records = (records + [records[-1]] * k)[:k] if records else []
    stack = lambda key: torch.tensor([r[key] for r in records], dtype=torch.float64)  # noqa: E731
    lr_errs = [rel_err(stack("lr").max(dim=1).values, per["logged_max_lr"])]
    if groups_match:
        lr_errs += [rel_err(stack("lr"), per["lr"]), rel_err(stack("weight_decay"), per["weight_decay"])]
    out["max_rel_err_lr"] = max(lr_errs)

    losses = {"loss": torch.stack([r["losses"]["loss"] for r in records]).double()}
    ref_losses = {"loss": per["loss"]}
    for ref_key, ours_key in TERMS.items():
        if ref_key in per and ours_key in records[0]["losses"]:
            losses[ref_key] = torch.stack([r["losses"][ours_key] for r in records]).double()
            ref_losses[ref_key] = per[ref_key]
    if "loss_hidden" in per and {"loss_global", "loss_local"} <= set(losses):
        mmkd = args.mmkd
        losses["loss_hidden"] = mmkd.beta_kd1 * losses["loss_global"] + mmkd.beta_kd2 * losses["loss_local"]
        ref_losses["loss_hidden"] = per["loss_hidden"]
    if "class_acc" in per:
        losses["class_acc"] = torch.stack([r["losses"]["class_acc"] for r in records]).double()
        ref_losses["class_acc"] = per["class_acc"]
    out["max_rel_err_losses"] = max(rel_err(losses[key], ref_losses[key]) for key in losses)
    out["max_rel_err_loss_backward"] = rel_err(
        torch.stack([r["loss_backward"] for r in records]).double(), per["loss_backward"]
    )
    steps = torch.tensor([r["step_taken"] for r in records])
    if not torch.equal(steps, per["step_taken"].bool()):
        problems.append(
            f"optimiser steps after micro-batches {steps.tolist()}, reference {per['step_taken'].tolist()}"
        )
    sched = torch.tensor([r["schedule_index"] for r in records])
    if not torch.equal(sched, per["schedule_index"].long()):
        problems.append(f"schedule indices {sched.tolist()}, reference {per['schedule_index'].tolist()}")
    norms = torch.tensor(
        [math.nan if r["grad_norm"] is None else float(r["grad_norm"]) for r in records], dtype=torch.float64
    )
    ref_norms = per["grad_norm"].double()
    if not torch.equal(norms.isnan(), ref_norms.isnan()):
        problems.append("gradient norms are computed at other micro-batches than the reference's")
    taken = ~ref_norms.isnan()
    out["max_rel_err_grad_norm"] = rel_err(norms[taken], ref_norms[taken]) if taken.any() else 0.0
    out["num_optimizer_steps"] = int(steps.sum())
    if out["num_optimizer_steps"] != int(exp["num_optimizer_steps"]):
        problems.append(
            f"{out['num_optimizer_steps']} optimiser steps, reference {int(exp['num_optimizer_steps'])}"
        )

    task = trainer.task
    final = {"model": (task.student if kind == "distill" else task.model).state_dict()}
    if "heads" in exp["final_params"]:
        final["heads"] = task.heads.state_dict()
    out["max_rel_err_params"] = _state_err(final, exp["final_params"], problems)
    if "final_ema" in exp:
        if trainer.ema is None:
            problems.append("the fixture has EMA weights but the run kept no EMA (--model_ema not honoured)")
            out["max_rel_err_ema"] = math.inf
        else:
            out["max_rel_err_ema"] = _state_err(
                {"ema": trainer.ema.module.state_dict()}, {"ema": exp["final_ema"]}, problems
            )
    errors = {key: value for key, value in out.items() if key.startswith("max_rel_err")}
    problems += [f"{key} = {value:.3g} > {rtol:g}" for key, value in errors.items() if not value <= rtol]
    out["ok"] = not problems
    out["problems"] = problems
    return out


def _state_err(ours: dict[str, dict], ref: dict[str, dict], problems: list[str]) -> float:
    worst = 0.0
    for part, expected in ref.items():
        got = ours.get(part, {})
        missing = sorted(set(expected) - set(got))
        if missing:
            problems.append(f"final {part} weights missing: {missing[:5]}")
        for name, value in expected.items():
            if name in got:
                worst = max(worst, rel_err(got[name], value))
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fixture", help="a train_*.pt file of the reference-parity format")
    p.add_argument("--rtol", type=float, default=1e-9)
    ns = p.parse_args(argv)
    torch.set_num_threads(1)  # the fixtures were made single-threaded; fewer reduction-order effects
    result = replay(ns.fixture, ns.rtol)
    print(json.dumps(result, default=_jsonable))
    return 0 if result["ok"] else 1


def _jsonable(x):
    return float(x) if isinstance(x, Tensor) else str(x)


if __name__ == "__main__":
    sys.exit(main())
