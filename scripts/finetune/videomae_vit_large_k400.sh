#!/usr/bin/env bash
# Fine-tunes the VideoMAE ViT-L pre-trained on Kinetics-400 (scripts/pretrain/videomae_vit_large_k400.sh,
# 1600 epochs), 35 epochs, tested on 5 clips x 3 crops. VideoMAE used 64 GPUs (NNODES=8 x GPUS=8) x 2 clips.
# VideoMAE's model zoo: 85.2 top-1.
# Env: DATA_PATH (folder with train/val/test.csv), OUTPUT_DIR, CHECKPOINT (VideoMAE pre-training
#      checkpoint), GPUS (8, per node), NNODES (1), NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1),
#      MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see
#      scripts/slurm/launch.sh. Extra arguments are appended and override these flags.
set -euo pipefail
DATASET="Kinetics-400"
ROW_FLAGS=(--model vit_large_patch16_224 --nb_classes 400 --batch_size 2 --num_sample 2
  --sampling_rate 4 --epochs 35
  --lr 2e-3 --warmup_lr 1e-6 --min_lr 1e-6 --layer_decay 0.75 --drop_path 0.1 --fc_drop_rate 0.0
  --test_num_segment 5 --save_ckpt_freq 10)
source "$(dirname "${BASH_SOURCE[0]}")/_videomae.sh"
