"""The shell recipes: syntax, the spec §5 hyper-parameters they pass, launchers and env checks.

Each recipe runs for real with stub `torchrun` / `srun` / `sbatch` executables first on PATH; a stub
writes the command line it got, one argument per line, to $STUB_LOG (and sbatch its stdin script to
$STUB_LOG.script), so the tests read exactly what a cluster would have been asked to run.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_reference_scripts import KINETICS, SSV2, UCF101
from tests.test_reference_scripts import SCRIPTS as REFERENCE_SCRIPTS

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

# Every flag the lead's entry points accept by their reference names; a recipe may use only these.
TRAIN_FLAGS = frozenset(
    """
    model model_s model_t path_t distill kd_T num_k num_f beta beta_kd1 beta_kd2 gamma alpha
    temperature_s temperature_t mask_type mask_ratio decoder_depth batch_size num_frames sampling_rate
    input_size short_side_size opt opt_betas opt_eps lr min_lr warmup_lr warmup_epochs warmup_steps
    epochs save_ckpt_freq drop_path weight_decay weight_decay_end clip_grad output_dir log_dir data_path
    data_set nb_classes num_workers finetune num_sample smoothing mixup cutmix layer_decay
    test_num_segment test_num_crop fc_drop_rate init_scale use_checkpoint dist_eval enable_deepspeed
    resume auto_resume seed device normlize_target precision teacher_precision local_value_layout
    """.split()
)
# The interface of the reference's visualisation script (run_vis.py).
VIS_FLAGS = frozenset(
    "video output_dir model_path teacher_path model idx idx_f num_k mask_type mask_ratio decoder_depth device "
    "input_size num_frames sampling_rate".split()
)

ENTRY_MODE = {
    "run_mae_pretraining.py": "pretrain",
    "run_mmkd_distill.py": "distill",
    "run_class_finetuning.py": "finetune",
}

_DISTILL = dict(
    mask_type="tube", num_frames=16, sampling_rate=4, batch_size=64, opt="adamw", opt_betas=(0.9, 0.95),
    weight_decay=0.05, warmup_epochs=40, epochs=400, drop_path=0.1, decoder_depth=0,
    model_t="pretrain_videomae_base_patch16_224", distill="hybrid", kd_T=1, num_k=10, num_f=10, beta=1,
    alpha=0.1, temperature_s=0.1, temperature_t=0.05,
)  # fmt: skip
_FINETUNE = dict(
    batch_size=32, num_sample=2, num_frames=16, opt="adamw", opt_betas=(0.9, 0.999), weight_decay=0.05,
    min_lr=1e-5, smoothing=0.1, mixup=0.8, cutmix=1.0, test_num_crop=3, init_scale=0.001,
)  # fmt: skip
_K400_FT = dict(
    _FINETUNE, data_set="Kinetics-400", nb_classes=400, lr=1e-3, warmup_lr=1e-6, layer_decay=0.75,
    drop_path=0.1, sampling_rate=4, test_num_segment=5,
)  # fmt: skip
_UCF_FT = dict(
    _FINETUNE, data_set="UCF101", nb_classes=101, lr=5e-4, warmup_lr=1e-8, epochs=100, layer_decay=0.7,
    fc_drop_rate=0.5, drop_path=0.2, test_num_segment=5,
)  # fmt: skip
_HMDB_FT = dict(
    _FINETUNE, data_set="HMDB51", nb_classes=51, lr=1e-3, warmup_lr=1e-6, epochs=50, layer_decay=0.7,
    fc_drop_rate=0.5, drop_path=0.2,
)  # fmt: skip
_S, _B = "pretrain_videomae_small_patch16_224", "pretrain_videomae_base_patch16_224"
_DISTILL_ENTRY, _FINETUNE_ENTRY = "run_mmkd_distill.py", "run_class_finetuning.py"

# recipe (relative to scripts/) -> (entry point, flags it must pass with these values)
RECIPES = {
    "distill/vit_small_k400.sh": (
        _DISTILL_ENTRY, dict(_DISTILL, model=_S, mask_ratio=0.9, lr=1.5e-4, beta_kd1=0.1, beta_kd2=3, gamma=0.1)
    ),
    "distill/vit_base_k400.sh": (
        _DISTILL_ENTRY, dict(_DISTILL, model=_B, mask_ratio=0.9, lr=1.5e-4, beta_kd1=3, beta_kd2=1, gamma=0.2)
    ),
    "distill/vit_small_ucf101.sh": (
        _DISTILL_ENTRY, dict(_DISTILL, model=_S, mask_ratio=0.75, lr=3e-4, beta_kd1=1, beta_kd2=3, gamma=0.1)
    ),
    "distill/vit_base_ucf101.sh": (
        _DISTILL_ENTRY, dict(_DISTILL, model=_B, mask_ratio=0.75, lr=3e-4, beta_kd1=3, beta_kd2=1, gamma=0.1)
    ),
    "finetune/vit_small_k400.sh": (_FINETUNE_ENTRY, dict(_K400_FT, model="vit_small_patch16_224", epochs=150)),
    "finetune/vit_base_k400.sh": (_FINETUNE_ENTRY, dict(_K400_FT, model="vit_base_patch16_224", epochs=75)),
    "finetune/vit_small_ucf101.sh": (_FINETUNE_ENTRY, dict(_UCF_FT, model="vit_small_patch16_224")),
    "finetune/vit_base_ucf101.sh": (_FINETUNE_ENTRY, dict(_UCF_FT, model="vit_base_patch16_224")),
    "finetune/vit_small_hmdb51.sh": (
        _FINETUNE_ENTRY, dict(_HMDB_FT, model="vit_small_patch16_224", sampling_rate=2, test_num_segment=10)
    ),
    "finetune/vit_base_hmdb51.sh": (
        _FINETUNE_ENTRY, dict(_HMDB_FT, model="vit_base_patch16_224", sampling_rate=4, test_num_segment=5)
    ),
}  # fmt: skip

# Defaults of VideoMAE's entry points (get_args() of run_mae_pretraining.py / run_class_finetuning.py,
# MCG-NJU/VideoMAE) that its scripts leave out; our defaults differ in places, so the recipes pass them.
_VIDEOMAE_DEFAULTS = {
    "pretrain": dict(lr=1.5e-4, warmup_lr=1e-6, min_lr=1e-5, weight_decay=0.05),
    "finetune": dict(
        warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-6, layer_decay=0.75, drop_path=0.1, fc_drop_rate=0.0,
        smoothing=0.1, mixup=0.8, cutmix=1.0, init_scale=0.001,
    ),
}  # fmt: skip
_PATH_FLAGS = frozenset({"data_path", "finetune", "log_dir", "output_dir"})


def _flags(argv: list[str]) -> dict[str, list[str]]:
    """`--name v1 v2 --flag` -> {"name": ["v1", "v2"], "flag": []}; a repeated flag keeps its last values."""
    out: dict[str, list[str]] = {}
    name = None
    for token in argv:
        if token.startswith("--"):
            name = token[2:]
            out[name] = []
        elif name is not None:
            out[name].append(token)
    return out


def _videomae_row(script: str) -> tuple[str, dict]:
    """The entry point and exactly the flags (bar paths) that a VideoMAE script of MCG-NJU/VideoMAE runs.

    Its scripts pass N + 1 pre-training epochs so that its loop also writes checkpoint-N; ours always
    writes the last epoch, so our recipes pass N. DeepSpeed's fp16 becomes `--precision fp16`.
    """
    job, line = REFERENCE_SCRIPTS["VideoMAE:" + script]
    flags = {
        k: v for k, v in _flags(shlex.split(line)).items() if k not in _PATH_FLAGS | {"enable_deepspeed"}
    }
    if job == "pretrain":
        flags["epochs"] = [str(int(flags["epochs"][0]) - 1)]
    entry = {"pretrain": "run_mae_pretraining.py", "finetune": _FINETUNE_ENTRY}[job]
    return entry, {**_VIDEOMAE_DEFAULTS[job], **flags, "precision": "fp16"}


# VideoMAE's own rows: recipe -> the reference script whose flags it passes, all of them and no other
VIDEOMAE_RECIPES = {
    "pretrain/videomae_vit_small_k400.sh": KINETICS.format("small", 1600) + "pretrain.sh",
    "pretrain/videomae_vit_base_k400.sh": KINETICS.format("base", 1600) + "pretrain.sh",
    "pretrain/videomae_vit_large_k400.sh": KINETICS.format("large", 1600) + "pretrain.sh",
    "pretrain/videomae_vit_huge_k400.sh": KINETICS.format("huge", 1600) + "pretrain.sh",
    "pretrain/videomae_vit_small_ssv2.sh": SSV2.format("small", 2400) + "pretrain.sh",
    "pretrain/videomae_vit_base_ssv2.sh": SSV2.format("base", 2400) + "pretrain.sh",
    "pretrain/videomae_vit_base_ucf101.sh": UCF101 + "pretrain.sh",
    "finetune/videomae_vit_large_k400.sh": KINETICS.format("large", 1600) + "finetune.sh",
    "finetune/videomae_vit_huge_k400.sh": KINETICS.format("huge", 1600) + "finetune.sh",
    "finetune/videomae_vit_small_ssv2.sh": SSV2.format("small", 2400) + "finetune.sh",
    "finetune/videomae_vit_base_ssv2.sh": SSV2.format("base", 2400) + "finetune.sh",
    "finetune/videomae_vit_base_ucf101.sh": UCF101 + "finetune.sh",
}
RECIPES.update({recipe: _videomae_row(script) for recipe, script in VIDEOMAE_RECIPES.items()})


def _required_env(recipe: str) -> list[str]:
    extra = {"distill": ["TEACHER"], "finetune": ["CHECKPOINT"], "pretrain": []}[recipe.split("/")[0]]
    return ["DATA_PATH", "OUTPUT_DIR", *extra]


def _slurm_wrapper(recipe: str) -> Path:
    return SCRIPTS / "slurm" / recipe.replace("/", "_")


# Variables the scripts read; cleared so that the caller's shell cannot change what the tests see.
_LAUNCH_ENV = frozenset(
    "GPUS MASTER_PORT LAUNCHER PARTITION JOB_NAME GPUS_PER_NODE CPUS_PER_TASK SUBMIT SRUN_ARGS SBATCH_ARGS "
    "PYTHON MODEL TEACHER NNODES NODE_RANK MASTER_ADDR RDZV_ENDPOINT RDZV_ID RDZV_BACKEND".split()
)


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH starts with recording stubs, plus the recipes' required variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    body = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@" > "$STUB_LOG"\n'
    for name in ("torchrun", "srun", "sbatch", "python"):
        stub = bin_dir / name
        stub.write_text(body + ('cat > "$STUB_LOG.script"\n' if name == "sbatch" else ""))
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        STUB_LOG=str(tmp_path / "argv.txt"),
        DATA_PATH=str(tmp_path / "data"),
        OUTPUT_DIR=str(tmp_path / "out"),
        TEACHER=str(tmp_path / "teacher.pth"),
        CHECKPOINT=str(tmp_path / "student.pth"),
        VIDEO=str(tmp_path / "clip.mp4"),
    )
    return env


def _run(script: Path, env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=20
    )


def _recorded(env: dict[str, str]) -> list[str]:
    return Path(env["STUB_LOG"]).read_text().splitlines()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _matches(got: list[str], want: object) -> bool:
    """`want`: a value, a tuple of values or a list of argument strings (`[]` for a switch)."""
    want = [str(w) for w in (want if isinstance(want, tuple | list) else [want])]
    if len(got) != len(want):
        return False
    return all(g == w or _number(g) is not None and _number(g) == _number(w) for g, w in zip(got, want))


def _check_row(recipe: str, argv: list[str]) -> dict[str, list[str]]:
    assert recipe in RECIPES, f"{recipe} is not in RECIPES: add the values it must pass"
    entry, expected = RECIPES[recipe]
    assert entry in argv, f"{recipe} did not run {entry}: {argv}"
    flags = _flags(argv[argv.index(entry) + 1 :])
    wrong = {k: (flags.get(k), v) for k, v in expected.items() if k not in flags or not _matches(flags[k], v)}
    assert not wrong, f"{recipe}: flag -> (passed, spec): {wrong}"
    if recipe in VIDEOMAE_RECIPES:  # e.g. no --sampling_rate on SSV2, whose clips are segment-sampled
        extra = set(flags) - set(expected) - _PATH_FLAGS
        assert not extra, f"{recipe} passes flags that {VIDEOMAE_RECIPES[recipe]} does not: {extra}"
    return flags


def _all_scripts() -> list[Path]:
    return sorted(SCRIPTS.rglob("*.sh"))


# every recipe on disk, so that a new one without an entry in RECIPES fails the tests below
RECIPE_FILES = sorted(
    str(p.relative_to(SCRIPTS))
    for d in ("distill", "finetune", "pretrain")
    for p in (SCRIPTS / d).glob("[!_]*.sh")
)


@pytest.mark.parametrize("script", _all_scripts(), ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_bash_syntax(script: Path):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_row_has_a_recipe_and_a_slurm_wrapper():
    assert set(RECIPE_FILES) == set(RECIPES)
    for recipe in RECIPES:
        assert os.access(SCRIPTS / recipe, os.X_OK) and os.access(_slurm_wrapper(recipe), os.X_OK), recipe


@pytest.mark.parametrize("recipe", RECIPE_FILES)
def test_torchrun_recipe_passes_spec_hyperparameters(recipe, stubs, tmp_path):
    result = _run(SCRIPTS / recipe, stubs)
    assert result.returncode == 0, result.stderr
    argv = _recorded(stubs)
    # one node: the command of the single-node releases, unchanged
    assert argv[:4] == ["torchrun", "--nproc_per_node=8", "--master_port=12320", RECIPES[recipe][0]]
    flags = _check_row(recipe, argv)
    assert flags["output_dir"] == [str(tmp_path / "out")]
    data = flags["data_path"][0]
    assert data == str(tmp_path / "data") + ("" if recipe.startswith("finetune") else "/train.csv")


@pytest.mark.parametrize("recipe", RECIPE_FILES)
def test_slurm_wrapper_passes_the_same_flags(recipe, stubs):
    assert _run(SCRIPTS / recipe, stubs).returncode == 0
    torchrun_argv = _recorded(stubs)
    result = _run(_slurm_wrapper(recipe), stubs | {"PARTITION": "gpu"})
    assert result.returncode == 0, result.stderr
    srun_argv = _recorded(stubs)
    assert srun_argv[0] == "srun" and "--partition=gpu" in srun_argv and "--ntasks=8" in srun_argv
    entry = RECIPES[recipe][0]
    start = srun_argv.index(entry)
    assert srun_argv[start - 2 : start] == ["python", "-u"]
    assert srun_argv[start:] == torchrun_argv[torchrun_argv.index(entry) :]
    _check_row(recipe, srun_argv)


def test_sbatch_submission_queues_the_srun_command(stubs):
    recipe = "distill/vit_small_k400.sh"
    env = stubs | {"LAUNCHER": "slurm", "SUBMIT": "sbatch", "GPUS": "16", "JOB_NAME": "mmkd-s"}
    result = _run(SCRIPTS / recipe, env)
    assert result.returncode == 0, result.stderr
    sbatch_argv = _recorded(stubs)
    assert sbatch_argv[0] == "sbatch"
    assert {"--job-name=mmkd-s", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8", "--gres=gpu:8"} <= set(
        sbatch_argv
    )
    script = Path(stubs["STUB_LOG"] + ".script").read_text().splitlines()
    assert script[0].startswith("#!") and script[1:4] == [
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --requeue",
        f"cd {ROOT}",
    ]
    srun_argv = shlex.split(script[4])
    assert srun_argv[0] == "srun" and "--ntasks=16" in srun_argv and srun_argv[-2:] == ["--requeue", "&"]
    _check_row(recipe, srun_argv[:-2])


def test_sbatch_script_forwards_the_warning_signal_to_srun(stubs, tmp_path):
    """The batch shell gets SLURM's SIGUSR1 (--signal=B:...) and hands it to srun; its exit code is srun's."""
    env = stubs | {"LAUNCHER": "slurm", "SUBMIT": "sbatch", "GPUS": "1", "REQUEUE": "0", "SIGNAL_LEAD": "300"}
    assert _run(SCRIPTS / "distill/vit_small_k400.sh", env).returncode == 0
    script = Path(stubs["STUB_LOG"] + ".script").read_text()
    assert "#SBATCH --signal=B:USR1@300" in script and "--requeue" not in script
    got = tmp_path / "srun_got_usr1"
    srun = Path(stubs["PATH"].split(os.pathsep)[0]) / "srun"
    srun.write_text(f"#!/bin/bash\ntrap 'touch {got}; exit 75' USR1\nwhile true; do sleep 0.1; done\n")
    batch = subprocess.Popen(["bash", "-c", script], env=env, cwd=tmp_path)
    for _ in range(100):  # until srun runs under the batch shell
        time.sleep(0.1)
        if subprocess.run(["pgrep", "-P", str(batch.pid)], capture_output=True).stdout:
            break
    time.sleep(0.3)
    os.kill(batch.pid, signal.SIGUSR1)
    assert batch.wait(timeout=30) == 75 and got.exists()


def test_gpus_port_and_extra_arguments(stubs, tmp_path):
    env = stubs | {"GPUS": "4", "MASTER_PORT": "23456", "DATA_PATH": "rel/data"}
    result = _run(SCRIPTS / "finetune/vit_base_k400.sh", env, "--epochs", "2", "--eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    argv = _recorded(stubs)
    assert argv[1:3] == ["--nproc_per_node=4", "--master_port=23456"]
    flags = _flags(argv[argv.index("run_class_finetuning.py") + 1 :])
    assert flags["epochs"] == ["2"] and flags["eval"] == []
    # relative paths are read from the caller's directory although the recipe runs from the repo root
    assert flags["data_path"] == [str(tmp_path / "rel/data")]


@pytest.mark.parametrize(
    "teacher, expected",
    [
        ("videomae-b-k400-pt1600", "videomae-b-k400-pt1600"),  # a model-zoo name (python -m models.zoo list)
        ("hf://MCG-NJU/videomae-base@main", "hf://MCG-NJU/videomae-base@main"),
        ("https://example.org/ckpt.pth", "https://example.org/ckpt.pth"),
        ("ckpt/teacher.pth", "{cwd}/ckpt/teacher.pth"),
        ("teacher.pth", "{cwd}/teacher.pth"),
    ],
)
def test_teacher_may_be_a_zoo_name_or_hub_id(teacher, expected, stubs, tmp_path):
    """Zoo names, hf:// ids and URLs reach --path_t as given; paths are still made absolute
    (before, TEACHER=videomae-b-k400-pt1600 became $PWD/videomae-b-k400-pt1600)."""
    result = _run(SCRIPTS / "distill/vit_small_k400.sh", stubs | {"TEACHER": teacher}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    argv = _recorded(stubs)
    flags = _flags(argv[argv.index("run_mmkd_distill.py") + 1 :])
    assert flags["path_t"] == [expected.format(cwd=tmp_path)]


@pytest.mark.parametrize("recipe", RECIPE_FILES)
def test_missing_variable_fails_with_one_line(recipe, stubs):
    for name in _required_env(recipe):
        env = {k: v for k, v in stubs.items() if k != name}
        result = _run(SCRIPTS / recipe, env)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"set {name} to" in lines[0], result.stderr
        assert not Path(stubs["STUB_LOG"]).exists(), "launched despite a missing variable"


@pytest.mark.parametrize(
    ("launch_env", "torchrun_args"),
    [
        (
            {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.1.2.3", "GPUS": "4", "MASTER_PORT": "29501"},
            ["--nnodes=2", "--node_rank=1", "--nproc_per_node=4", "--master_addr=10.1.2.3", "--master_port=29501"],
        ),
        (
            {"NNODES": "8", "MASTER_ADDR": "node01"},
            ["--nnodes=8", "--node_rank=0", "--nproc_per_node=8", "--master_addr=node01", "--master_port=12320"],
        ),
        (
            {"NNODES": "2:4", "RDZV_ENDPOINT": "node01:29400", "RDZV_ID": "job7", "NODE_RANK": "3"},
            ["--nnodes=2:4", "--nproc_per_node=8", "--rdzv_backend=c10d", "--rdzv_endpoint=node01:29400",
             "--rdzv_id=job7"],
        ),
        (
            {"NNODES": "4", "RDZV_ENDPOINT": "node01:29400", "RDZV_BACKEND": "etcd-v2"},
            ["--nnodes=4", "--nproc_per_node=8", "--rdzv_backend=etcd-v2", "--rdzv_endpoint=node01:29400",
             "--rdzv_id=finetune_vit_base_k400"],
        ),
    ],
)  # fmt: skip
def test_multi_node_torchrun(launch_env, torchrun_args, stubs):
    result = _run(SCRIPTS / "finetune/vit_base_k400.sh", stubs | launch_env)
    assert result.returncode == 0, result.stderr
    argv = _recorded(stubs)
    assert argv[0] == "torchrun" and argv[1 : argv.index("run_class_finetuning.py")] == torchrun_args
    _check_row("finetune/vit_base_k400.sh", argv)


@pytest.mark.parametrize(
    ("launch_env", "message"),
    [
        ({"NNODES": "2"}, "NNODES=2 needs MASTER_ADDR (the address of the NODE_RANK=0 node"),
        (
            {"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"},
            "NODE_RANK must be this node's number, 0 to 1",
        ),
        ({"NNODES": "2", "NODE_RANK": "-1", "MASTER_ADDR": "h"}, "NODE_RANK must be this node's number"),
        ({"NNODES": "two"}, "NNODES must be a whole number >= 1, got 'two'"),
        ({"GPUS": "0"}, "GPUS must be a whole number >= 1, got '0'"),
        ({"MASTER_PORT": "port"}, "MASTER_PORT must be a whole number"),
        ({"NNODES": "1:x", "RDZV_ENDPOINT": "h:1"}, "NNODES must be a node count or MIN:MAX"),
        ({"LAUNCHER": "slurm", "NNODES": "2"}, "NNODES / RDZV_ENDPOINT are for LAUNCHER=torchrun"),
        (
            {"LAUNCHER": "slurm", "RDZV_ENDPOINT": "h:1"},
            "under slurm set GPUS (tasks in all) and GPUS_PER_NODE",
        ),
    ],
)
def test_bad_launch_settings_fail_with_one_line(launch_env, message, stubs):
    result = _run(SCRIPTS / "distill/vit_small_k400.sh", stubs | launch_env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not Path(stubs["STUB_LOG"]).exists(), "launched despite a bad setting"


def _header(path: Path) -> str:
    """The comment block at the top of a script, as one line."""
    lines = path.read_text().splitlines()[1:]
    return " ".join(line[1:].strip() for line in itertools.takewhile(lambda x: x.startswith("#"), lines))


@pytest.mark.parametrize("recipe", RECIPE_FILES)
def test_header_lists_the_environment(recipe):
    header = _header(SCRIPTS / recipe)
    launch = "GPUS (8, per node) NNODES NODE_RANK MASTER_ADDR MASTER_PORT RDZV_ENDPOINT LAUNCHER".split(" ")
    missing = [name for name in [*_required_env(recipe), *launch] if name not in header]
    assert not missing, f"{recipe}: the Env line does not name {missing}"
    wrapper = _header(_slurm_wrapper(recipe))
    assert f"those of scripts/{recipe} but the torchrun-only NNODES, NODE_RANK, MASTER_ADDR" in wrapper


# the shorter published schedules that a recipe's header says how to run
@pytest.mark.parametrize(
    ("recipe", "extra", "script"),
    [
        ("pretrain/videomae_vit_base_k400.sh", "--epochs 800", KINETICS.format("base", 800) + "pretrain.sh"),
        ("pretrain/videomae_vit_base_ssv2.sh", "--epochs 800", SSV2.format("base", 800) + "pretrain.sh"),
        (
            "finetune/videomae_vit_base_ssv2.sh", "--batch_size 8 --num_sample 1 --epochs 50",
            SSV2.format("base", 800) + "finetune.sh",
        ),
    ],
)  # fmt: skip
def test_shorter_schedule_named_in_the_header(recipe, extra, script, stubs):
    assert f"pass {extra}" in _header(SCRIPTS / recipe)
    assert _run(SCRIPTS / recipe, stubs, *extra.split()).returncode == 0
    argv = _recorded(stubs)
    entry, expected = _videomae_row(script)
    flags = _flags(argv[argv.index(entry) + 1 :])
    wrong = {k: (flags.get(k), v) for k, v in expected.items() if k not in flags or not _matches(flags[k], v)}
    assert not wrong, f"{recipe} {extra}: flag -> (passed, {script}): {wrong}"


def test_unknown_launcher_is_refused(stubs):
    result = _run(SCRIPTS / "pretrain/videomae_vit_base_k400.sh", stubs | {"LAUNCHER": "mpirun"})
    assert result.returncode != 0 and "LAUNCHER must be torchrun or slurm" in result.stderr


def test_vis_kd_wrapper(stubs):
    no_teacher = {k: v for k, v in stubs.items() if k != "TEACHER"}
    result = _run(SCRIPTS / "vis_kd.sh", no_teacher, "--idx", "5")
    assert result.returncode == 0, result.stderr
    argv = _recorded(stubs)
    assert argv[0] == "python" and argv[1] == str(ROOT / "scripts/../run_vis.py")
    flags = _flags(argv[2:])
    assert flags["video"] == [stubs["VIDEO"]] and flags["model_path"] == [stubs["CHECKPOINT"]]
    assert flags["idx"] == ["5"] and flags["idx_f"] == ["3"] and flags["mask_ratio"] == ["0.9"]
    assert "teacher_path" not in flags
    assert _run(SCRIPTS / "vis_kd.sh", no_teacher | {"TEACHER": "t.pth"}).returncode == 0
    assert _flags(_recorded(stubs)[2:])["teacher_path"] == ["t.pth"]
    missing = _run(SCRIPTS / "vis_kd.sh", {k: v for k, v in no_teacher.items() if k != "VIDEO"})
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode != 0 and len(lines) == 1 and "set VIDEO to" in lines[0]


def _flags_in(path: Path) -> set[str]:
    return set(re.findall(r"(?<![\w-])--([A-Za-z][A-Za-z0-9_]*)", path.read_text()))


def test_recipes_use_only_accepted_flags():
    recipe_files = [p for d in ("distill", "finetune", "pretrain") for p in (SCRIPTS / d).glob("*.sh")]
    for path in recipe_files:
        assert _flags_in(path) <= TRAIN_FLAGS, f"{path.name}: {_flags_in(path) - TRAIN_FLAGS}"
    assert _flags_in(SCRIPTS / "vis_kd.sh") <= VIS_FLAGS


@pytest.mark.parametrize("recipe", RECIPE_FILES)
def test_entry_point_accepts_recipe(recipe, stubs):
    """The recipe's command line parses and passes the entry point's checks, with real files in place."""
    args_module = pytest.importorskip("engine.args")
    torch = pytest.importorskip("torch")
    data = Path(stubs["DATA_PATH"])
    data.mkdir()
    for name in ("train.csv", "val.csv", "test.csv"):
        (data / name).write_text("a.mp4 0\n")
    for name in ("TEACHER", "CHECKPOINT"):
        torch.save({"model": {}}, stubs[name])
    assert _run(SCRIPTS / recipe, stubs).returncode == 0
    argv = _recorded(stubs)
    entry = RECIPES[recipe][0]
    parsed = args_module.parse(ENTRY_MODE[entry], argv[argv.index(entry) + 1 :])
    assert parsed.optim.epochs == float(_flags(argv)["epochs"][-1])
