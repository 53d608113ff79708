#!/usr/bin/env bash
# VideoMAE pre-training of a ViT-S on Kinetics-400: tube mask 0.9, 1600 epochs (pass --epochs 800 for the
# shorter schedule), 32 clips per GPU. VideoMAE used 32 GPUs (NNODES=4 x GPUS=8); the lr scales with the
# total batch.
# Env: DATA_PATH (folder with train.csv), OUTPUT_DIR, GPUS (8, per node), NNODES (1), NODE_RANK (0),
#      MASTER_ADDR (needed when NNODES > 1), MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID,
#      RDZV_BACKEND), LAUNCHER (torchrun | slurm): see scripts/slurm/launch.sh. Extra arguments are
#      appended and override these flags.
set -euo pipefail
DATASET="Kinetics-400"
ROW_FLAGS=(--model pretrain_videomae_small_patch16_224
  --mask_ratio 0.9 --decoder_depth 4 --batch_size 32 --sampling_rate 4 --lr 1.5e-4
  --epochs 1600 --save_ckpt_freq 20)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
