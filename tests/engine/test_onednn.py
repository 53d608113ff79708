"""float32 linear layers on the CPU through oneDNN (`common.cpu_gemm`, ``--cpu_gemm``).

The GEMMs of the fp32 CPU step go to oneDNN's kernels instead of torch's BLAS (MKL runs AVX2 on
AMD CPUs); the hand-written backward must give what autograd gives through ``F.linear``.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import run_mmkd_distill
from common import cpu_gemm as onednn
from engine import args as cli_args
from engine.precision import autocast_context
from engine.runner import setup
from tests.engine.conftest import distill_argv

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this torch build has no oneDNN linear op")

ONEDNN, ADDMM, MM = "mkldnn::_linear_pointwise", "aten::addmm", "aten::mm"


class _Ops(TorchDispatchMode):
    """Counts the operators that reach the kernels (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen[func.name()] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def _default_switch():
    onednn.set_enabled(True)
    yield
    onednn.set_enabled(True)


def _grads(x, w, b, route: bool):
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    ctx = autocast_context("cpu", "fp32") if route else torch.autocast("cpu", enabled=False)
    with ctx:
        out = F.linear(x, w, b)
    torch.manual_seed(3)
    grads = torch.autograd.grad((out * torch.randn_like(out)).sum(), leaves)
    return out, grads


@pytest.mark.parametrize(
    "x_shape, bias, x_grad, transposed",
    [
        ((7, 12), True, True, False),
        ((2, 5, 12), True, True, False),
        ((2, 3, 4, 12), False, True, False),
        ((2, 5, 12), True, False, False),  # the patch embedding: the pixels need no gradient
        ((2, 5, 12), True, True, True),  # a strided (transposed) input
    ],
)
def test_forward_and_both_gradients_match_autograd_through_blas(x_shape, bias, x_grad, transposed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=g)
    if transposed:
        x = torch.randn(x_shape[0], x_shape[2], x_shape[1], generator=g).transpose(1, 2)
    x.requires_grad_(x_grad)
    w = torch.randn(9, 2, 6, generator=g).requires_grad_()  # used as a view, as the patch embedding does
    b = torch.randn(9, generator=g, requires_grad=True) if bias else None
    onednn.set_enabled(False)
    ref_out, ref_grads = _grads(x, w.flatten(1), b, route=False)
    onednn.set_enabled(True)
    with _Ops() as ops:
        out, grads = _grads(x, w.flatten(1), b, route=True)
    assert ops.seen[ONEDNN] == 1 + 1 + x_grad and ops.seen[ADDMM] + ops.seen[MM] == 0
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(ref_grads) == 1 + bias + x_grad
    for got, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_only_cpu_float32_outside_autocast_is_routed():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with _Ops() as ops, autocast_context("cpu", "bf16"):
        assert lin(x).dtype == torch.bfloat16  # bf16 stays with autocast (torch sends it to oneDNN itself)
    assert ops.seen[ONEDNN] == 0
    with _Ops() as ops, autocast_context("cpu", "fp32"), torch.no_grad():
        assert lin(x).dtype == torch.float32 and lin(x.double().float()).requires_grad is False
    assert ops.seen[ONEDNN] == 2
    with _Ops() as ops, autocast_context("cpu", "fp32"):
        lin.double()(x.double())  # float64 goes to BLAS
        F.linear(x, torch.empty(0, 8))  # an empty output too
    assert ops.seen[ONEDNN] == 0
    onednn.set_enabled(False)
    with _Ops() as ops, autocast_context("cpu", "fp32"):
        torch.nn.Linear(8, 4)(x)
    assert ops.seen[ONEDNN] == 0 and ops.seen[ADDMM] == 1


def test_the_flop_counter_counts_the_onednn_gemms():
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8))
    x = torch.randn(4, 5, 16, requires_grad=True)
    counted = []
    for on in (False, True):
        onednn.set_enabled(on)
        with FlopCounterMode(display=False) as counter, autocast_context("cpu", "fp32"):
            model(x).sum().backward()
        counted.append(counter.get_total_flops())
    assert counted[0] == counted[1] == 3 * 2 * 20 * (16 * 32 + 32 * 8)


def _distill_step(argv: list[str]):
    """One forward + backward of the task the entry point builds from ``argv``, as the loop runs it."""
    args = cli_args.parse("distill", argv)
    setup(args)
    torch.manual_seed(0)
    task = run_mmkd_distill.build_task(args)
    ops, teacher_ops = _Ops(), _Ops()
    # count what the teacher runs, inside the task's forward
    task.teacher.register_forward_pre_hook(lambda *_: [teacher_ops.__enter__(), None][1])
    task.teacher.register_forward_hook(lambda *_: [teacher_ops.__exit__(None, None, None), None][1])
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, ::2] = True
    video = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with ops:
        with autocast_context("cpu", args.run.precision):  # what the loop enters
            loss = task({"video": video, "mask": mask})["loss"]
        loss.backward()
    grads = {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}
    return loss.detach(), grads, ops.seen, teacher_ops.seen, len(task.teacher.encoder.blocks)


@pytest.mark.parametrize("precision, extra", [("fp32", ()), ("fp32", ("--use_checkpoint",)), ("bf16", ())])
def test_the_distillation_entry_point_runs_its_fp32_gemms_on_onednn_unless_told_blas(
    videos, teacher_ckpt, tmp_path, precision, extra
):
    """Through the entry point's flag and the task it builds: which kernels run, and the same step
    (with activation checkpointing, the blocks' recomputation in backward takes the same path)."""
    results = {}
    for gemm in ("blas", "onednn"):
        argv = distill_argv(videos, teacher_ckpt, tmp_path, "--cpu_gemm", gemm, "--precision", precision,
                            "--teacher_precision", "fp32", *extra)  # fmt: skip
        results[gemm] = _distill_step(argv)
    (loss_b, grads_b, ops_b, t_b, depth), (loss_o, grads_o, ops_o, t_o, _) = (
        results["blas"],
        results["onednn"],
    )
    assert ops_b[ONEDNN] == 0 and t_b[ONEDNN] == 0 and t_b[ADDMM] > 0
    # the fp32 teacher always; the student only in an fp32 step (bf16 autocast keeps its own path)
    assert t_o[ONEDNN] >= 4 * depth and t_o[ADDMM] == 0
    if precision == "fp32":
        # one oneDNN GEMM for each BLAS GEMM of a linear layer; what BLAS still runs (aten::mm) is
        # the relation loss's cosine matrices and their gradients
        assert ops_o[ADDMM] == 0 and ops_o[MM] <= 4
        replaced = ops_b[ADDMM] + ops_b[MM] - ops_o[MM]
        # (checkpointing stops a recomputation once what backward needs is back, which can come a
        # GEMM later on one path than on the other)
        assert ops_o[ONEDNN] == replaced if not extra else replaced <= ops_o[ONEDNN] <= replaced + depth
    else:
        assert ops_o[ONEDNN] == t_o[ONEDNN]
    tol = dict(rtol=1e-4, atol=1e-5) if precision == "fp32" else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(loss_o, loss_b, **tol)
    assert grads_o.keys() == grads_b.keys() and len(grads_o) > 10
    for name in grads_b:
        torch.testing.assert_close(grads_o[name], grads_b[name], **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_the_flag_rejects_other_values(videos, teacher_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_args.parse("distill", distill_argv(videos, teacher_ckpt, tmp_path, "--cpu_gemm", "mkl"))
    assert "--cpu_gemm: invalid choice: 'mkl'" in capsys.readouterr().err


@pytest.fixture
def cpu_class(monkeypatch):
    """Pretend to be another CPU class: (AVX capability, AMD or not)."""

    def pretend(capability: str, amd: bool) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(onednn, "_amd", lambda: amd)
        onednn.preferred.cache_clear()

    yield pretend
    onednn.preferred.cache_clear()


@pytest.mark.parametrize(
    "capability, amd, isa, expected",
    [
        ("AVX512", True, "", "onednn"),  # measured 1.7x BLAS (AMD Zen 5)
        ("AVX2", True, "", "blas"),  # measured 0.96x: oneDNN would be slower
        ("AVX512", True, "AVX2", "blas"),  # oneDNN's own kernels restricted to AVX2
        ("AVX512", False, "", "blas"),  # Intel: MKL runs AVX-512 itself; unmeasured, torch's path
    ],
)
def test_auto_takes_onednn_only_where_it_was_measured_faster(
    cpu_class, monkeypatch, videos, teacher_ckpt, tmp_path, capability, amd, isa, expected
):
    cpu_class(capability, amd)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    args = cli_args.parse("distill", distill_argv(videos, teacher_ckpt, tmp_path))  # the default: auto
    assert (
        args.model.cpu_gemm == expected == args.to_args()["cpu_gemm"]
    )  # what the run used, as args.json records it
    setup(args)
    assert onednn.enabled() == (expected == "onednn")
    explicit = cli_args.parse("distill", distill_argv(videos, teacher_ckpt, tmp_path, "--cpu_gemm", "onednn"))
    assert explicit.model.cpu_gemm == "onednn"


def test_auto_under_the_avx2_emulation_is_blas():
    """The same rule in a fresh process restricted to AVX2 kernels as the issue's emulation does."""
    import subprocess
    import sys

    from tests.engine.conftest import ROOT

    code = "import common.cpu_gemm as o; print(o.resolve('auto'))"
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, **env})  # fmt: skip
    assert out.stdout.strip() == "blas", out.stderr[-2000:]


def test_a_failing_onednn_op_falls_back_to_blas_with_one_warning(monkeypatch):
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(3, 16, requires_grad=True)
    want = F.linear(x, layer.weight, layer.bias)

    def broken(*_):
        raise RuntimeError("mkldnn::_linear_pointwise: no such schema\nsecond line")

    monkeypatch.setattr(onednn, "_gemm", broken)
    failed = r"oneDNN float32 linear failed \(mkldnn::_linear_pointwise: no such schema\)"
    with pytest.warns(RuntimeWarning, match=failed), autocast_context("cpu", "fp32"):
        got = layer(x)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    assert x.grad is not None and not onednn.enabled()  # the rest of the run stays on BLAS


def test_without_a_training_run_the_auto_rule_holds(cpu_class):
    """run_inference.py / run_vis.py call no setup(): they used oneDNN wherever it was available."""
    onednn._STATE["enabled"] = None  # a fresh process: nobody chose
    cpu_class("AVX2", True)
    assert not onednn.enabled()
    cpu_class("AVX512", True)
    assert onednn.enabled()


def test_the_gemm_back_end_lives_outside_the_models():
    """An execution choice, not a model (issue 22.5): no file under models/ calls the oneDNN op."""
    from tests.engine.conftest import ROOT

    callers = [p.name for p in (ROOT / "models").rglob("*.py") if "mkldnn" in p.read_text(encoding="utf-8")]
    assert callers == []
