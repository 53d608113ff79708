#!/usr/bin/env bash
# Fine-tunes the Kinetics-400 MMKD ViT-S student (scripts/distill/vit_small_k400.sh) on UCF101,
# 100 epochs. Paper: 92.7 top-1, 16 frames x 5 clips x 3 crops.
# Env: DATA_PATH (folder with train/val/test.csv), OUTPUT_DIR, CHECKPOINT (student to fine-tune), GPUS (8,
#      per node), NNODES (1), NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1), MASTER_PORT (12320) or
#      RDZV_ENDPOINT (+ RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see scripts/slurm/launch.sh.
#      Extra arguments are appended and override these flags.
set -euo pipefail
DATASET="UCF101"
ROW_FLAGS=(--model vit_small_patch16_224 --nb_classes 101 --epochs 100 --lr 5e-4 --warmup_lr 1e-8
  --layer_decay 0.7 --drop_path 0.2 --fc_drop_rate 0.5 --sampling_rate 4 --test_num_segment 5
  --save_ckpt_freq 50)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
