#!/usr/bin/env bash
# Fine-tunes the VideoMAE ViT-H pre-trained on Kinetics-400 (scripts/pretrain/videomae_vit_huge_k400.sh,
# 1600 epochs), 50 epochs with gradient checkpointing, tested on 5 clips x 3 crops. VideoMAE used 64 GPUs
# (NNODES=8 x GPUS=8) x 8 clips. VideoMAE's model zoo: 86.6 top-1.
# Env: DATA_PATH (folder with train/val/test.csv), OUTPUT_DIR, CHECKPOINT (VideoMAE pre-training
#      checkpoint), GPUS (8, per node), NNODES (1), NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1),
#      MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see
#      scripts/slurm/launch.sh. Extra arguments are appended and override these flags.
set -euo pipefail
DATASET="Kinetics-400"
ROW_FLAGS=(--model vit_huge_patch16_224 --nb_classes 400 --batch_size 8 --num_sample 2
  --sampling_rate 4 --epochs 50
  --lr 1e-3 --warmup_lr 1e-8 --min_lr 1e-5 --layer_decay 0.75 --drop_path 0.2 --fc_drop_rate 0.5
  --test_num_segment 5 --save_ckpt_freq 10 --use_checkpoint)
source "$(dirname "${BASH_SOURCE[0]}")/_videomae.sh"
