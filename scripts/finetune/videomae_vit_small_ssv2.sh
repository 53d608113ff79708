#!/usr/bin/env bash
# Fine-tunes a VideoMAE ViT-S pre-trained on Something-Something V2
# (scripts/pretrain/videomae_vit_small_ssv2.sh, 2400 epochs), 40 epochs, 16 segment-sampled frames, tested
# on 2 clips x 3 crops. VideoMAE used 32 GPUs (NNODES=4 x GPUS=8) x 12 clips. VideoMAE's model zoo: 66.8
# top-1.
# Env: DATA_PATH (folder with train/val/test.csv), OUTPUT_DIR, CHECKPOINT (VideoMAE pre-training
#      checkpoint), GPUS (8, per node), NNODES (1), NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1),
#      MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see
#      scripts/slurm/launch.sh. Extra arguments are appended and override these flags.
set -euo pipefail
DATASET="SSV2"
ROW_FLAGS=(--model vit_small_patch16_224 --nb_classes 174 --batch_size 12 --num_sample 2 --epochs 40
  --lr 1e-3 --warmup_lr 1e-6 --min_lr 1e-6 --layer_decay 0.7 --drop_path 0.1 --fc_drop_rate 0.0
  --test_num_segment 2 --save_ckpt_freq 10)
source "$(dirname "${BASH_SOURCE[0]}")/_videomae.sh"
