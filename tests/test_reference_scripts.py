"""The command lines of the public VideoMAE and MaskAgain shell scripts parse unchanged.

Data: the flags each script passes to its entry point, copied from MCG-NJU/VideoMAE (scripts/, at the
commits the search index stores) and xiaojieli0903/MaskAgain at 205696d29b12e76f2047d0f25876bf72dc5d2298
(scripts/), 30 scripts. ``$VAR`` are the scripts' own ``${VAR}`` placeholders (some left empty there), filled with
real files here; ``torch.distributed.launch`` also appends ``--local_rank=N`` / ``--local-rank=N``.
"""

from __future__ import annotations

import shlex

import pytest
import torch

from engine.args import parse

_V_PRE = (
    "--data_path $DATA_PATH --mask_type tube --mask_ratio 0.9 --model pretrain_videomae_{size}_patch16_224 "
)
_V_PRE_TAIL = "--opt adamw --opt_betas 0.9 0.95 --warmup_epochs 40 --save_ckpt_freq 20 --epochs {epochs} --log_dir $OUTPUT_DIR --output_dir $OUTPUT_DIR"
_V_FT = "--data_path $DATA_PATH --finetune $MODEL_PATH --log_dir $OUTPUT_DIR --output_dir $OUTPUT_DIR "
_M_FT = (
    "--model vit_{size}_patch16_224 "
    + _V_FT
    + "--data_set {data_set} --nb_classes {classes} --batch_size {batch} "
    "--input_size 224 --short_side_size 224 --save_ckpt_freq {freq} --num_frames 16 --sampling_rate {rate} "
    "--num_sample 2 --opt adamw --lr {lr} --warmup_lr {wlr} {mix}--min_lr 1e-5 --layer_decay {ld} "
    "--opt_betas 0.9 0.999 --weight_decay 0.05 --epochs {epochs} --test_num_segment {seg} --test_num_crop 3 "
    "--fc_drop_rate {fc} --drop_path {dp} --use_checkpoint --dist_eval --enable_deepspeed"
)
_MIX = "--smoothing 0.1 --mixup 0.8 --cutmix 1.0 "
_M_KD = (
    "--data_path $DATA_PATH --mask_type tube --mask_ratio 0.9 --model pretrain_videomae_{size}_patch16_224 "
    "--decoder_depth 0 --batch_size 64 --num_frames 16 --sampling_rate 4 --opt adamw --opt_betas 0.9 0.95 "
    "--warmup_epochs 40 --save_ckpt_freq 20 --drop_path 0.1 --weight_decay 0.05 --epochs 400 --log_dir $OUTPUT_DIR "
    "--output_dir $OUTPUT_DIR --lr 1.5e-4 --distill hybrid --kd_T 1 --num_k {k} --num_f {k} --beta 1 "
    "--beta_kd1 {kd1} --beta_kd2 {kd2} --gamma {gamma} --alpha 0.1 --num_workers 5 --path_t $TEACHER"
)
_M_KD_UCF = (
    "--mask_type tube --mask_ratio 0.75 --model_s pretrain_videomae_{size}_patch16_224 --decoder_depth 0 --lr 3e-4 "
    "--batch_size {batch} --num_frames 16 --sampling_rate 4 {dp}--opt adamw --opt_betas 0.9 0.95 --warmup_epochs 40 "
    "--epochs {epochs} --save_ckpt_freq {freq} --log_dir $OUTPUT_DIR --output_dir $OUTPUT_DIR "
    "--data_path $DATA_PATH --distill hybrid --kd_T 1 {weights}--temperature_s 0.1 --temperature_t 0.05 "
    "--num_workers 8 --num_k 10 --num_f 10 --path_t $TEACHER"
)
_V_FT_K400 = (
    "--model vit_{size}_patch16_224 --data_set Kinetics-400 {classes}" + _V_FT + "--batch_size {batch} "
    "--num_sample {ns} --input_size 224 --short_side_size 224 --save_ckpt_freq 10 --num_frames 16 "
    "--sampling_rate 4 --opt adamw --lr {lr} {extra}--opt_betas 0.9 0.999 --weight_decay 0.05 --epochs {epochs} "
    "--dist_eval --test_num_segment 5 --test_num_crop 3 {tail}--enable_deepspeed"
)
_V_FT_SSV2 = (
    "--model vit_{size}_patch16_224 --data_set SSV2 --nb_classes 174 " + _V_FT + "--batch_size {batch} "
    "--num_sample {ns} --input_size 224 --short_side_size 224 --save_ckpt_freq 10 --num_frames 16 --opt adamw "
    "--lr {lr} {ld}--opt_betas 0.9 0.999 --weight_decay 0.05 --epochs {epochs} --dist_eval --test_num_segment 2 "
    "--test_num_crop 3 --enable_deepspeed"
)
_UCF_FT = (
    "--model vit_base_patch16_224 " + _V_FT + "--data_set UCF101 --nb_classes 101 --batch_size {batch} "
    "--input_size 224 --short_side_size 224 --save_ckpt_freq 50 --num_frames 16 --sampling_rate 4 --num_sample 2 "
    "--opt adamw --lr 5e-4 --warmup_lr 1e-8 --min_lr 1e-5 --layer_decay 0.7 --opt_betas 0.9 0.999 "
    "--weight_decay 0.05 --epochs {epochs} --test_num_segment 5 --test_num_crop 3 --fc_drop_rate 0.5 "
    "--drop_path 0.2 --use_checkpoint --dist_eval --enable_deepspeed"
)
# the folders of VideoMAE's scripts (tests/test_scripts.py checks our recipes against them too)
KINETICS = "scripts/kinetics/videomae_vit_{}_patch16_224_tubemasking_ratio_0.9_epoch_{}/"
SSV2 = "scripts/ssv2/videomae_vit_{}_patch16_224_tubemasking_ratio_0.9_epoch_{}/"
UCF101 = "scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/"
_W_BASE_UCF = "--beta 1 --gamma 0.1 --alpha 0.1 --beta_kd1 3 --beta_kd2 1 "
_W_SMALL_UCF = "--beta 1 --gamma 0.1 --alpha 0.1 --beta_kd1 1 --beta_kd2 3 "
_ft = dict(mix="", wlr="1e-8", ld="0.7", fc="0.5", dp="0.2", rate=4, seg=5)
_ft_k = dict(mix=_MIX, wlr="1e-6", data_set="Kinetics-400", classes=400, freq=10, seg=5, rate=4, lr="1e-3")
_ft_h = dict(
    mix=_MIX, wlr="1e-6", data_set="HMDB51", classes=51, freq=10, lr="1e-3", ld="0.7", fc="0.5", dp="0.2"
)
_ft_u = dict(_ft, data_set="UCF101", classes=101, freq=50, lr="5e-4", epochs=100)
_pre = "--decoder_depth {dd} --batch_size {batch} --num_frames 16 --sampling_rate {rate} "

# source -> (our job, the flags it passes)
SCRIPTS = {
    "VideoMAE:" + KINETICS.format("base", 1600) + "pretrain.sh": ("pretrain", _V_PRE.format(size="base") + _pre.format(dd=4, batch=32, rate=4) + _V_PRE_TAIL.format(epochs=1601)),
    "VideoMAE:" + KINETICS.format("base", 800) + "pretrain.sh": ("pretrain", _V_PRE.format(size="base") + _pre.format(dd=4, batch=32, rate=4) + _V_PRE_TAIL.format(epochs=801)),
    "VideoMAE:" + KINETICS.format("huge", 1600) + "pretrain.sh": ("pretrain", _V_PRE.format(size="huge") + _pre.format(dd=12, batch=16, rate=4) + _V_PRE_TAIL.format(epochs=1601) + " --use_checkpoint"),
    "VideoMAE:" + KINETICS.format("large", 1600) + "pretrain.sh": ("pretrain", _V_PRE.format(size="large") + _pre.format(dd=12, batch=8, rate=4) + _V_PRE_TAIL.format(epochs=1601)),
    "VideoMAE:" + KINETICS.format("small", 1600) + "pretrain.sh": ("pretrain", _V_PRE.format(size="small") + _pre.format(dd=4, batch=32, rate=4) + _V_PRE_TAIL.format(epochs=1601)),
    "VideoMAE:" + SSV2.format("base", 2400) + "pretrain.sh": ("pretrain", _V_PRE.format(size="base") + _pre.format(dd=4, batch=32, rate=2) + _V_PRE_TAIL.format(epochs=2401)),
    "VideoMAE:" + SSV2.format("base", 800) + "pretrain.sh": ("pretrain", _V_PRE.format(size="base") + _pre.format(dd=4, batch=32, rate=2) + _V_PRE_TAIL.format(epochs=801)),
    "VideoMAE:" + SSV2.format("small", 2400) + "pretrain.sh": ("pretrain", _V_PRE.format(size="small") + _pre.format(dd=4, batch=32, rate=2) + _V_PRE_TAIL.format(epochs=2401)),
    "VideoMAE:" + UCF101 + "pretrain.sh": ("pretrain", "--data_path $DATA_PATH --mask_type tube --mask_ratio 0.75 --model pretrain_videomae_base_patch16_224 --decoder_depth 4 --lr 3e-4 --batch_size 24 --num_frames 16 --sampling_rate 4 --opt adamw --opt_betas 0.9 0.95 --warmup_epochs 40 --epochs 3201 --save_ckpt_freq 100 --log_dir $OUTPUT_DIR --output_dir $OUTPUT_DIR"),
    "VideoMAE:" + KINETICS.format("base", 1600) + "finetune.sh": ("finetune", _V_FT_K400.format(size="base", classes="", batch=6, ns=2, lr="5e-4", extra="", epochs=75, tail="")),
    "VideoMAE:" + KINETICS.format("base", 800) + "finetune.sh": ("finetune", _V_FT_K400.format(size="base", classes="", batch=8, ns=1, lr="1e-3", extra="", epochs=100, tail="")),
    "VideoMAE:" + KINETICS.format("huge", 1600) + "finetune.sh": ("finetune", _V_FT_K400.format(size="huge", classes="--nb_classes 400 ", batch=8, ns=2, lr="1e-3", extra="--warmup_lr 1e-8 --min_lr 1e-5 --layer_decay 0.75 ", epochs=50, tail="--drop_path 0.2 --fc_drop_rate 0.5 --use_checkpoint ")),
    "VideoMAE:" + KINETICS.format("large", 1600) + "finetune.sh": ("finetune", _V_FT_K400.format(size="large", classes="--nb_classes 400 ", batch=2, ns=2, lr="2e-3", extra="", epochs=35, tail="")),
    "VideoMAE:" + KINETICS.format("small", 1600) + "finetune.sh": ("finetune", _V_FT_K400.format(size="small", classes="--nb_classes 400 ", batch=12, ns=2, lr="5e-4", extra="", epochs=150, tail="")),
    "VideoMAE:" + SSV2.format("base", 2400) + "finetune.sh": ("finetune", _V_FT_SSV2.format(size="base", batch=6, ns=2, lr="5e-4", ld="", epochs=30)),
    "VideoMAE:" + SSV2.format("base", 800) + "finetune.sh": ("finetune", _V_FT_SSV2.format(size="base", batch=8, ns=1, lr="5e-4", ld="", epochs=50)),
    "VideoMAE:" + SSV2.format("small", 2400) + "finetune.sh": ("finetune", _V_FT_SSV2.format(size="small", batch=12, ns=2, lr="1e-3", ld="--layer_decay 0.7 ", epochs=40)),
    "VideoMAE:" + UCF101 + "finetune.sh": ("finetune", _UCF_FT.format(batch=16, epochs=100)),
    "MaskAgain:scripts/finetune.sh": ("finetune", _UCF_FT.format(batch=16, epochs=50)),
    "MaskAgain:scripts/finetune_base_hmdb_slurm.sh": ("finetune", _M_FT.format(size="base", batch=32, rate=4, seg=5, epochs=50, **_ft_h)),
    "MaskAgain:scripts/finetune_small_hmdb_slurm.sh": ("finetune", _M_FT.format(size="small", batch=32, rate=2, seg=10, epochs=50, **_ft_h)),
    "MaskAgain:scripts/finetune_base_k400_slurm.sh": ("finetune", _M_FT.format(size="base", batch=32, ld="0.75", epochs=75, fc="0.0", dp="0.1", **_ft_k)),
    "MaskAgain:scripts/finetune_small_k400_slurm.sh": ("finetune", _M_FT.format(size="small", batch=32, ld="0.75", epochs=150, fc="0.0", dp="0.1", **_ft_k)),
    "MaskAgain:scripts/finetune_base_ucf_slurm.sh": ("finetune", _M_FT.format(size="base", batch=32, **_ft_u)),
    "MaskAgain:scripts/finetune_small_ucf_slurm.sh": ("finetune", _M_FT.format(size="small", batch=32, **_ft_u)),
    "MaskAgain:scripts/kd.sh": ("distill", "--mask_type tube --mask_ratio 0.75 --model_s pretrain_videomae_base_patch16_224 --decoder_depth 0 --lr 3e-4 --batch_size 24 --num_frames 16 --sampling_rate 4 --opt adamw --opt_betas 0.9 0.95 --warmup_epochs 40 --epochs 100 --save_ckpt_freq 50 --log_dir $OUTPUT_DIR --output_dir $OUTPUT_DIR --data_path $DATA_PATH --distill hybrid --kd_T 1 --beta 1 --beta_kd1 0.1 --beta_kd2 3 --gamma 0.1 --alpha 0.1 --temperature_s 0.1 --temperature_t 0.05 --num_workers 8 --num_k 10 --num_f 10 --path_t $TEACHER"),
    "MaskAgain:scripts/kd_small_k400_slurm.sh": ("distill", _M_KD.format(size="small", k=15, kd1="0.1", kd2="3", gamma="0.1")),
    "MaskAgain:scripts/kd_base_k400_slurm.sh": ("distill", _M_KD.format(size="base", k=10, kd1="3", kd2="1", gamma="0.2")),
    "MaskAgain:scripts/kd_base_ucf_slurm.sh": ("distill", _M_KD_UCF.format(size="base", batch=64, dp="", epochs=400, freq=100, weights=_W_BASE_UCF)),
    "MaskAgain:scripts/kd_small_ucf_slurm.sh": ("distill", _M_KD_UCF.format(size="small", batch=64, dp="--drop_path 0.1 ", epochs=400, freq=100, weights=_W_SMALL_UCF)),
}  # fmt: skip


@pytest.fixture
def placeholders(tmp_path) -> dict[str, str]:
    for name in ("train.csv", "val.csv", "test.csv"):
        (tmp_path / name).write_text("a.mp4 0\n")
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": {}}, checkpoint)
    return {"OUTPUT_DIR": str(tmp_path / "out"), "MODEL_PATH": str(checkpoint), "TEACHER": str(checkpoint)}


def test_thirty_public_scripts():
    assert len(SCRIPTS) == 30


@pytest.mark.parametrize("source", sorted(SCRIPTS))
@pytest.mark.parametrize("launcher", ["--local_rank=0", "--local-rank=0"])
def test_public_script_command_line_parses(source, launcher, placeholders, tmp_path):
    job, flags = SCRIPTS[source]
    data = str(tmp_path) if job == "finetune" else str(tmp_path / "train.csv")
    line = flags.replace("$DATA_PATH", data)
    for name, value in placeholders.items():
        line = line.replace("$" + name, value)
    argv = [launcher, *shlex.split(line)]
    args = parse(job, argv)
    tokens = dict(zip(argv, argv[1:]))
    assert args.optim.epochs == int(tokens["--epochs"]) and args.optim.batch_size == int(
        tokens["--batch_size"]
    )
    assert args.run.local_rank == 0
