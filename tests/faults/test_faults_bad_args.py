"""Bad command lines: exit code != 0, exactly one stderr line naming the option, no traceback, and
nothing written to --output_dir (not even created)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.conftest import distill_argv, finetune_argv
from tests.faults.harness import (
    DISTILL,
    FINETUNE,
    PRETRAIN,
    assert_one_line_error,
    assert_untouched,
    pretrain_argv,
    python_cmd,
    run_parallel,
)


@dataclass
class Ctx:
    videos: Path
    teacher: Path
    pico: Path
    garbage: Path
    tmp: Path
    out: Path

    def base(self, script: str) -> list[str]:
        if script == PRETRAIN:
            return pretrain_argv(self.videos, self.out)
        if script == DISTILL:
            return distill_argv(self.videos, self.teacher, self.out)
        return finetune_argv(self.videos, self.out)

    def regular_file(self) -> Path:
        path = self.tmp / "a_regular_file"
        path.write_text("not a folder\n")
        return path

    def empty_dir(self) -> Path:
        path = self.tmp / "no_lists_here"
        path.mkdir(exist_ok=True)
        return path


def _drop(argv: list[str], option: str) -> list[str]:
    i = argv.index(option)
    return argv[:i] + argv[i + 2 :]


P, D, F = PRETRAIN, DISTILL, FINETUNE
# id: (script, extra arguments (or a function of the context returning the full argv), option named, exit code)
CASES = {
    "mask_ratio_is_1": (P, ["--mask_ratio", "1.0"], "--mask_ratio", 2),
    "mask_ratio_negative": (D, ["--mask_ratio", "-0.1"], "--mask_ratio", 2),
    "frames_not_divisible_by_tubelet": (P, ["--num_frames", "7"], "--num_frames", 2),
    "input_not_divisible_by_patch": (F, ["--input_size", "30"], "--input_size", 2),
    "num_k_above_visible_per_slice": (D, ["--num_k", "9"], "--num_k", 2),  # 16 - 8 masked = 8 per slice
    "num_f_above_visible": (D, ["--num_f", "33"], "--num_f", 2),  # 4 slices x 8
    "unknown_model": (P, ["--model", "pretrain_videomae_giga_patch8"], "--model", 2),
    "unknown_teacher_model": (D, ["--model_t", "pretrain_videomae_nope"], "--model_t", 2),
    "unknown_distill_mode": (D, ["--distill", "everything"], "--distill", 2),
    "unknown_data_set": (F, ["--data_set", "ImageNet"], "--data_set", 2),
    "teacher_of_other_architecture": (D, lambda c: c.base(D) + ["--path_t", str(c.pico)], "--path_t", 2),
    "teacher_missing": (D, lambda c: c.base(D) + ["--path_t", str(c.tmp / "nope.pth")], "--path_t", 2),
    "widths_not_alignable": (D, ["--alignment", "none"], "--alignment", 2),  # pico 32 vs nano 64
    "data_list_missing": (
        D,
        lambda c: c.base(D) + ["--data_path", str(c.tmp / "nope.csv")],
        "--data_path",
        2,
    ),
    "data_folder_without_csv": (
        F,
        lambda c: c.base(F) + ["--data_path", str(c.empty_dir())],
        "--data_path",
        2,
    ),
    "data_path_not_given": (P, lambda c: _drop(c.base(P), "--data_path"), "--data_path", 2),
    "output_dir_under_regular_file": (
        D,
        lambda c: c.base(D) + ["--output_dir", str(c.regular_file() / "run")],
        "--output_dir",
        2,
    ),
    "log_dir_under_regular_file": (
        P,
        lambda c: c.base(P) + ["--log_dir", str(c.regular_file() / "tb")],
        "--log_dir",
        2,
    ),
    "batch_larger_than_data_set": (F, ["--batch_size", "64"], "--batch_size", 2),
    "resume_missing": (F, lambda c: c.base(F) + ["--resume", str(c.tmp / "none.pth")], "--resume", 2),
    "finetune_of_other_width": (F, lambda c: c.base(F) + ["--finetune", str(c.teacher)], "--finetune", 2),
    "epochs_zero": (P, ["--epochs", "0"], "--epochs", 2),
    "epochs_not_a_number": (P, ["--epochs", "two"], "--epochs", 2),
    "lr_negative": (P, ["--lr", "-1"], "--lr", 2),
    "fp16_on_cpu": (D, ["--precision", "fp16"], "--precision", 2),
    "nb_classes_zero": (F, ["--nb_classes", "0"], "--nb_classes", 2),
    "kd_T_zero": (D, ["--kd_T", "0"], "--kd_T", 2),
    "alignment_not_a_choice": (D, ["--alignment", "sometimes"], "--alignment", 2),
    "smoothing_above_1": (F, ["--smoothing", "1.5"], "--smoothing", 2),
    "decoder_depth_zero": (P, ["--decoder_depth", "0"], "--decoder_depth", 2),
    "classifier_as_student": (D, ["--model", "vit_pico_patch8"], "--model", 2),
    "pretraining_model_as_classifier": (F, ["--model", "pretrain_videomae_pico_patch8"], "--model", 2),
    "random_mask_with_local_term": (D, ["--mask_type", "random"], "--mask_type", 2),
    "mixup_with_odd_batch": (F, ["--mixup", "0.8", "--batch_size", "3"], "--mixup", 2),
    "max_bad_fraction_above_1": (P, ["--max_bad_fraction", "2"], "--max_bad_fraction", 2),
    "misspelt_option": (D, ["--epoch", "3"], "--epoch", 2),
}
# a checkpoint path that exists but is garbage: refused before anything is written (see report)
GARBAGE_CASES = {
    "resume_garbage_pretrain": (P, "--resume"),
    "resume_garbage_distill": (D, "--resume"),
    "resume_garbage_finetune": (F, "--resume"),
    "finetune_garbage": (F, "--finetune"),
    "teacher_garbage": (D, "--path_t"),
}


@pytest.fixture
def ctx(videos, teacher_ckpt, pico_ckpt, garbage_file, tmp_path) -> Ctx:
    return Ctx(videos, teacher_ckpt, pico_ckpt, garbage_file, tmp_path, tmp_path / "out")


def _argv(case, c: Ctx) -> list[str]:
    script, extra = case[0], case[1]
    return extra(c) if callable(extra) else c.base(script) + extra


@pytest.mark.parametrize("name", list(CASES))
def test_bad_argument_is_one_line_naming_the_option(name, ctx, forkserver):
    script, _, option, code = CASES[name]
    proc = forkserver.run(script, _argv(CASES[name], ctx))
    assert_one_line_error(proc, option, exit_code=code)
    assert_untouched(ctx.out)
    if name.endswith("under_regular_file"):
        assert ctx.regular_file().read_text() == "not a folder\n"


@pytest.mark.parametrize("name", list(GARBAGE_CASES))
def test_garbage_checkpoint_argument_is_refused_before_writing(name, ctx, forkserver):
    script, option = GARBAGE_CASES[name]
    proc = forkserver.run(script, ctx.base(script) + [option, str(ctx.garbage)])
    assert_one_line_error(proc, option, str(ctx.garbage), exit_code=2)
    assert_untouched(ctx.out)


def test_garbage_checkpoint_argument_is_a_one_line_error(ctx, forkserver):
    """What holds today for every garbage checkpoint option: one line naming the file, no traceback."""
    for script, option in GARBAGE_CASES.values():
        proc = forkserver.run(script, ctx.base(script) + [option, str(ctx.garbage)])
        assert_one_line_error(proc, str(ctx.garbage))
        assert not list(ctx.out.glob("*.pth"))


@pytest.mark.slow
def test_bad_arguments_in_true_processes(ctx):
    """The process-level contract with plain `python <script>` processes (run side by side)."""
    picked = [
        "mask_ratio_is_1",
        "num_k_above_visible_per_slice",
        "batch_larger_than_data_set",
        "alignment_not_a_choice",
    ]
    cmds = [python_cmd(CASES[n][0], _argv(CASES[n], ctx)) for n in picked]
    for name, proc in zip(picked, run_parallel(cmds)):
        line = assert_one_line_error(proc, CASES[name][2], exit_code=CASES[name][3])
        assert line.startswith(f"{CASES[name][0]}: error: "), line
    assert_untouched(ctx.out)
