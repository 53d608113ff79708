#!/usr/bin/env bash
# Fine-tunes the VideoMAE ViT-B pre-trained on UCF101 alone (scripts/pretrain/videomae_vit_base_ucf101.sh,
# 3200 epochs, tube 0.75), 100 epochs, tested on 5 clips x 3 crops. VideoMAE used 8 GPUs x 16 clips.
# VideoMAE's model zoo: 91.3 top-1.
# Env: DATA_PATH (folder with train/val/test.csv), OUTPUT_DIR, CHECKPOINT (VideoMAE pre-training
#      checkpoint), GPUS (8, per node), NNODES (1), NODE_RANK (0), MASTER_ADDR (needed when NNODES > 1),
#      MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID, RDZV_BACKEND), LAUNCHER (torchrun | slurm): see
#      scripts/slurm/launch.sh. Extra arguments are appended and override these flags.
set -euo pipefail
DATASET="UCF101"
ROW_FLAGS=(--model vit_base_patch16_224 --nb_classes 101 --batch_size 16 --num_sample 2
  --sampling_rate 4 --epochs 100
  --lr 5e-4 --warmup_lr 1e-8 --min_lr 1e-5 --layer_decay 0.7 --drop_path 0.2 --fc_drop_rate 0.5
  --test_num_segment 5 --save_ckpt_freq 50 --use_checkpoint)
source "$(dirname "${BASH_SOURCE[0]}")/_videomae.sh"
