#!/usr/bin/env bash
# MMKD on Kinetics-400: ViT-B student (no alignment modules), VideoMAE ViT-B (1600 ep) teacher,
# 400 epochs, 8 GPUs x 64. Fine-tuned with scripts/finetune/vit_base_k400.sh: 81.0 top-1 (16x5x3).
# Env: DATA_PATH (folder with train.csv), OUTPUT_DIR, TEACHER, GPUS (8, per node), NNODES (1),
#      NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1), MASTER_PORT (12320) or RDZV_ENDPOINT (+
#      RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see scripts/slurm/launch.sh. Extra arguments
#      are appended and override these flags.
set -euo pipefail
DATASET="Kinetics-400"
TEACHER_NAME="the VideoMAE ViT-B Kinetics-400 pre-training checkpoint (1600 epochs)"
ROW_FLAGS=(--model pretrain_videomae_base_patch16_224 --mask_ratio 0.9 --lr 1.5e-4 --save_ckpt_freq 20
  --beta_kd1 3 --beta_kd2 1 --gamma 0.2)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
