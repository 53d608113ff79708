#!/usr/bin/env bash
# VideoMAE pre-training of a ViT-B on UCF101 alone: tube mask 0.75, 3200 epochs, 24 clips per GPU, lr 3e-4.
# VideoMAE used 8 GPUs (one node); the lr scales with the total batch. Fine-tuned with
# scripts/finetune/videomae_vit_base_ucf101.sh: 91.3 top-1 (16x5x3) in VideoMAE's model zoo; also the
# teacher of scripts/distill/vit_{small,base}_ucf101.sh.
# Env: DATA_PATH (folder with train.csv), OUTPUT_DIR, GPUS (8, per node), NNODES (1), NODE_RANK (0),
#      MASTER_ADDR (needed when NNODES > 1), MASTER_PORT (12320) or RDZV_ENDPOINT (+ RDZV_ID,
#      RDZV_BACKEND), LAUNCHER (torchrun | slurm): see scripts/slurm/launch.sh. Extra arguments are
#      appended and override these flags.
set -euo pipefail
DATASET="UCF101"
ROW_FLAGS=(--model pretrain_videomae_base_patch16_224
  --mask_ratio 0.75 --decoder_depth 4 --batch_size 24 --sampling_rate 4 --lr 3e-4
  --epochs 3200 --save_ckpt_freq 100)
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
