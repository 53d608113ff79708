#!/usr/bin/env bash
# MMKD on UCF101 only: ViT-S student, VideoMAE ViT-B UCF101 teacher, tube 0.75, 400 epochs.
# The paper's UCF101/HMDB51 numbers start from the Kinetics-400 students instead (see MODEL_ZOO.md).
# Env: DATA_PATH (folder with train.csv), OUTPUT_DIR, TEACHER, GPUS (8, per node), NNODES (1),
#      NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1), MASTER_PORT (12320) or RDZV_ENDPOINT (+
#      RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see scripts/slurm/launch.sh. Extra arguments
#      are appended and override these flags.
set -euo pipefail
DATASET="UCF101"
TEACHER_NAME="the VideoMAE ViT-B UCF101 pre-training checkpoint (3200 epochs, tube 0.75)"
ROW_FLAGS=(--model pretrain_videomae_small_patch16_224 --mask_ratio 0.75 --lr 3e-4 --save_ckpt_freq 100
  --beta_kd1 1 --beta_kd2 3 --gamma 0.1)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
