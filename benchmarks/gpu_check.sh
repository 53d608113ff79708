#!/usr/bin/env bash
# GPU readiness check: every CUDA path of the three entry points in one run (<= 8 minutes on one
# H200), ending with one summary table. Generated data (datasets.synthetic), no downloads.
#
#   bash benchmarks/gpu_check.sh                 # on a GPU machine
#   CPU=1 bash benchmarks/gpu_check.sh           # the same steps on the CPU with tiny presets
#   bash benchmarks/gpu_check.sh --cpu           # same as CPU=1 (also --dry-run)
#
# Environment: WORK (scratch folder, default a new temp dir), BUDGET (seconds for the whole run,
# default 450 on a GPU: a check is cut at the budget, those left are reported SKIP), ONLY (a regex:
# run only the checks whose names match, e.g. ONLY='compile|bench'), WHEELS (a folder of wheels to
# install the requirements from, offline), NO_INSTALL=1 (skip pip).
# Exit status: 0 when no check FAILed, 1 otherwise.
#
# Checks: each entry point a few steps in bf16 and fp16 (distillation with the teacher in fp32
# and in bf16), the nccl process group and a DDP step under torchrun, an entry point under torchrun,
# DeepSpeed ZeRO-1 / ZeRO-2 in bf16 and fp16, --compile, fused SDPA kernels for the layers whose
# attention is not distilled, no host sync between log lines (each task through the trainer), and
# bench_model.py at the paper configuration (batch 32, 64) with MFU, and torchcodec's CUDA (NVDEC) decode
# against PyAV's (clips/s, frame differences; SKIP where torchcodec does not load).
# On the CPU: fp16 and nccl have no CPU path and are SKIPped; torchrun and DeepSpeed use gloo
# with 2 processes; the benchmark runs tiny presets.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CPU=${CPU:-0}
for arg in "$@"; do
  case "$arg" in
    --cpu | --dry-run) CPU=1 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $arg (use --cpu, or see --help)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d -t gpu_check.XXXXXX)}
BUDGET=${BUDGET:-$([[ $CPU == 1 ]] && echo 3600 || echo 450)}
mkdir -p "$WORK/logs" "$WORK/runs"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
START=$(date +%s)
export PYTHONUNBUFFERED=1 TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

if [[ $CPU == 1 ]]; then
  DEVICE=cpu
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  STUDENT=pretrain_videomae_pico_patch8 TEACHER=pretrain_videomae_nano_patch8 CLASSIFIER=vit_pico_patch8
  CLIP=(--num_frames 8 --sampling_rate 2 --input_size 32)
  BATCH=2 WORKERS=0 NPROC=2 STEP_TIMEOUT=300 COMPILE_TIMEOUT=600
  BENCH_SIZES=(2)
  BENCH=(--student "$STUDENT" --teacher "$TEACHER" --num_frames 8 --input_size 32 --mask_ratio 0.75
    --num_k 3 --num_f 4 --steps 2 --warmup 1)
  SYNC_BENCH=("${BENCH[@]}" --batch_size 2 --steps 7 --print_freq 3)
  BENCH_PRECISION=bf16
else
  DEVICE=cuda
  STUDENT=pretrain_videomae_small_patch16_224 TEACHER=pretrain_videomae_base_patch16_224
  CLASSIFIER=vit_small_patch16_224
  CLIP=(--num_frames 16 --sampling_rate 2 --input_size 64)
  BATCH=4 WORKERS=4 NPROC=1 STEP_TIMEOUT=150 COMPILE_TIMEOUT=240
  BENCH_SIZES=(32 64)
  BENCH=(--steps 10 --warmup 3)  # the paper configuration: ViT-S <- ViT-B, 16x224x224, tube 0.9
  SYNC_BENCH=(--batch_size 8 --steps 12 --warmup 2 --print_freq 5)
  BENCH_PRECISION=bf16
fi

# ---- bookkeeping ---------------------------------------------------------------------------
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }
elapsed() { echo $(($(date +%s) - START)); }

# check NAME NOTE CMD... : runs CMD (log in $WORK/logs/NAME.log) within what is left of the budget
check() {
  local name=$1 note=$2
  shift 2
  if [[ -n ${ONLY:-} && ! $name =~ ^(data|teacher_checkpoint)$ && ! $name =~ $ONLY ]]; then
    record "$name" SKIP 0 "not selected by ONLY=$ONLY"
    return
  fi
  local left=$((BUDGET - $(elapsed))) limit=${TIMEOUT:-$STEP_TIMEOUT}
  if ((left < 20)); then
    record "$name" SKIP 0 "time budget of ${BUDGET}s spent (rerun with ONLY=$name)"
    return
  fi
  ((limit > left)) && limit=$left # never past the budget: the whole run stays within it
  local t0=$(date +%s) status=PASS
  timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1 || status=FAIL
  [[ $status == FAIL ]] && note="$note; see $WORK/logs/$name.log: $(grep -v '^\s*$' "$WORK/logs/$name.log" | tail -1 | cut -c1-120)"
  record "$name" "$status" $(($(date +%s) - t0)) "$note"
}
skip() { record "$1" SKIP 0 "$2"; }
retag() { # the last record again with another status and note, its seconds kept
  local secs
  secs=$(tail -1 "$RESULTS" | cut -f3)
  sed -i '$d' "$RESULTS"
  record "$1" "$2" "$secs" "$3"
}

summary() {
  echo
  echo "gpu_check summary ($DEVICE, $(elapsed)s; logs in $WORK/logs)"
  printf '%-34s %-5s %6s  %s\n' CHECK STATUS SEC NOTE
  while IFS=$'\t' read -r name status secs note; do
    printf '%-34s %-5s %6s  %s\n' "$name" "$status" "$secs" "$note"
  done <"$RESULTS"
  local fails
  fails=$(cut -f2 "$RESULTS" | grep -c '^FAIL$')
  echo "passed $(cut -f2 "$RESULTS" | grep -c '^PASS$'), failed $fails, skipped $(cut -f2 "$RESULTS" | grep -c '^SKIP$')"
  [[ $fails == 0 ]]
}

# ---- environment ---------------------------------------------------------------------------
if [[ ${NO_INSTALL:-0} != 1 ]]; then
  # torch / torchvision come with the machine: never reinstalled (no internet there)
  pip_args=(-q --disable-pip-version-check --retries 0 --timeout 10)
  [[ -n ${WHEELS:-} ]] && pip_args+=(--no-index --find-links "$WHEELS")
  grep -vE '^\s*(#|$|torch==|torchvision==)' requirements.txt | while read -r req; do
    timeout 120 "$PY" -m pip install "${pip_args[@]}" "$req" >>"$WORK/logs/pip.log" 2>&1 ||
      echo "pip: could not install '$req' (see $WORK/logs/pip.log)"
  done
  # optional (not in requirements.txt): only the torchcodec_cuda check uses it, and SKIPs without it
  timeout 120 "$PY" -m pip install "${pip_args[@]}" torchcodec >>"$WORK/logs/pip.log" 2>&1 ||
    echo "pip: could not install the optional torchcodec (torchcodec_cuda will SKIP; see $WORK/logs/pip.log)"
fi
missing=$("$PY" - <<'EOF'
import importlib.util
names = ["torch", "torchvision", "timm", "av", "decord", "einops", "numpy", "PIL", "tensorboard", "tqdm", "deepspeed"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
EOF
)
record environment PASS 0 "$("$PY" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"))' 2>&1 | tail -1); missing: ${missing:-none}"
has() { [[ " $missing " != *" $1 "* ]]; }
if ! has torch || ! has timm || ! has numpy || { ! has av && ! has decord; }; then
  record environment FAIL 0 "cannot run: missing $missing (torch, timm, numpy and av or decord are needed)"
  summary
  exit 1
fi
if [[ $CPU == 0 ]] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  record environment FAIL 0 "no CUDA device: run CPU=1 bash benchmarks/gpu_check.sh for the CPU steps"
  summary
  exit 1
fi

# ---- data and a teacher checkpoint ---------------------------------------------------------
DATA="$WORK/data"
check data "synthetic set: 3 classes x 8 videos" "$PY" -m datasets.synthetic --out "$DATA" \
  --num_classes 3 --videos_per_class 8 --frames 40 --size 80x64 --val_fraction 0.125 \
  --test_fraction 0.125 --workers 2
check teacher_checkpoint "$TEACHER, seeded" "$PY" -c "
import sys, timm, torch, models
torch.manual_seed(0)
m = timm.create_model('$TEACHER', img_size=int(sys.argv[2]), num_frames=int(sys.argv[1]), decoder_depth=1)
torch.save({'model': m.state_dict()}, '$WORK/teacher.pth')" "${CLIP[1]}" "${CLIP[5]}"

COMMON=("${CLIP[@]}" --device "$DEVICE" --num_workers "$WORKERS" --batch_size "$BATCH" --epochs 1
  --warmup_epochs 0 --lr 1e-3 --no_lr_scale --max_steps_per_epoch 3 --print_freq 1 --save_ckpt_freq 1)
out() { echo --output_dir "$WORK/runs/$1"; }  # (no spaces in $WORK: mktemp's)
# full command lines as arrays (check runs them under `timeout`, which cannot call shell functions)
PRETRAIN=("$PY" run_mae_pretraining.py "${COMMON[@]}" --data_path "$DATA/pretrain.csv" --model "$STUDENT"
  --decoder_depth 2 --mask_ratio 0.9)
DISTILL_ARGS=(run_mmkd_distill.py "${COMMON[@]}" --data_path "$DATA/pretrain.csv" --model "$STUDENT"
  --model_t "$TEACHER" --path_t "$WORK/teacher.pth" --mask_ratio 0.75 --num_k 3 --num_f 4)
DISTILL=("$PY" "${DISTILL_ARGS[@]}")
FINETUNE=("$PY" run_class_finetuning.py "${COMMON[@]}" --data_path "$DATA" --data_set UCF101 --nb_classes 3
  --model "$CLASSIFIER" --num_sample 2 --reprob 0.25 --mixup 0.8 --cutmix 1.0
  --test_num_segment 2 --test_num_crop 3 --dist_eval)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC")

# ---- fused attention -----------------------------------------------------------------------
SDPA_MODEL=(--model "$STUDENT" --num_frames "${CLIP[1]}" --input_size "${CLIP[5]}")
[[ $CPU == 0 ]] && SDPA_MODEL=(--model "$STUDENT" --num_frames 16 --input_size 224)
for prec in bf16 fp16 fp32; do
  if [[ $CPU == 1 && $prec == fp16 ]]; then skip "sdpa_fused_$prec" "fp16 needs CUDA"; continue; fi
  check "sdpa_fused_$prec" "flash / efficient kernel in all non-distilled blocks, fwd+bwd" \
    "$PY" benchmarks/sdpa_check.py --device "$DEVICE" --precision "$prec" "${SDPA_MODEL[@]}"
done

# ---- entry points, bf16 and fp16 -----------------------------------------------------------
for prec in bf16 fp16; do
  if [[ $CPU == 1 && $prec == fp16 ]]; then
    for name in pretrain_fp16 distill_fp16_teacher_fp32 distill_fp16_teacher_bf16 finetune_fp16; do
      skip "$name" "fp16 needs CUDA"
    done
    continue
  fi
  check "pretrain_$prec" "VideoMAE, 3 steps" "${PRETRAIN[@]}" --precision "$prec" $(out "pretrain_$prec")
  for tprec in fp32 bf16; do
    check "distill_${prec}_teacher_$tprec" "MMKD hybrid, 3 steps" "${DISTILL[@]}" --precision "$prec" \
      --teacher_precision "$tprec" $(out "distill_${prec}_t$tprec")
  done
  check "finetune_$prec" "train (erasing, mixup) + val + multi-view test" "${FINETUNE[@]}" --precision "$prec" \
    $(out "finetune_$prec")
done

# ---- process groups ------------------------------------------------------------------------
if [[ $CPU == 1 ]]; then
  skip ddp_nccl "nccl needs CUDA"
  check ddp_gloo_2proc "process group + DDP distillation step, 2 ranks" \
    "${TORCHRUN[@]}" benchmarks/ddp_check.py --device cpu --precision bf16
else
  check ddp_nccl "nccl process group + DDP distillation step (1 rank: one GPU)" \
    "${TORCHRUN[@]}" benchmarks/ddp_check.py --device cuda --precision bf16
fi
check torchrun_distill "entry point under torchrun ($NPROC proc)" "${TORCHRUN[@]}" "${DISTILL_ARGS[@]}" \
  --precision bf16 $(out torchrun_distill)

# ---- DeepSpeed -----------------------------------------------------------------------------
for stage in 1 2; do
  for prec in bf16 fp16; do
    name="deepspeed_zero${stage}_$prec"
    if ! has deepspeed; then skip "$name" "deepspeed not installed"; continue; fi
    if [[ $CPU == 1 && $prec == fp16 ]]; then skip "$name" "fp16 needs CUDA"; continue; fi
    check "$name" "distillation under torchrun" "${TORCHRUN[@]}" "${DISTILL_ARGS[@]}" \
      --enable_deepspeed --zero_stage "$stage" --precision "$prec" $(out "$name")
  done
done

# ---- host syncs -------------------------------------------------------------------------------
# each task through the trainer: none between log lines (CUDA: torch's sync debug mode)
for task in distill pretrain finetune; do
  check "host_syncs_$task" "no host sync between log lines, $BENCH_PRECISION" "$PY" benchmarks/bench_model.py \
    --task "$task" --device "$DEVICE" --precision "$BENCH_PRECISION" "${SYNC_BENCH[@]}" --count_syncs
done

# ---- torchcodec's CUDA decode (optional decoder) ----------------------------------------------
if [[ $CPU == 1 ]]; then
  skip torchcodec_cuda "torchcodec's NVDEC decode needs CUDA"
else
  check torchcodec_cuda "torchcodec on cuda vs PyAV on the CPU, long-GOP files" "$PY" benchmarks/torchcodec_check.py \
    --device cuda
  line=$(grep '^{' "$WORK/logs/torchcodec_cuda.log" 2>/dev/null | tail -1)
  if [[ $(tail -1 "$RESULTS" | cut -f1,2) != torchcodec_cuda$'\t'SKIP && -n $line ]]; then
    # its JSON line: the reason it cannot run (SKIP), or its figures as the note
    IFS=$'\t' read -r status note < <(echo "$line" | "$PY" -c 'import json, sys
r = json.load(sys.stdin)
if "skip" in r:
    print("SKIP\t" + r["skip"])
else:
    print("%s\t%s clips/s (PyAV, CPU, 1 thread: %s); vs PyAV: max |diff| %s, mean %s, %.4f within %s" % (
        "PASS" if r["match"] else "FAIL", r["clips_per_s"]["torchcodec"], r["clips_per_s"]["pyav_cpu_1_thread"],
        r["max_abs_diff"], r["mean_abs_diff"], r["within_atol"], r["atol"]))')
    [[ -n ${status:-} ]] && retag torchcodec_cuda "$status" "$note"
  fi
fi

# ---- benchmark at the paper configuration (before --compile, the slowest checks) -------------
for bs in "${BENCH_SIZES[@]}"; do
  name="bench_distill_b$bs"
  check "$name" "mmkd step, $BENCH_PRECISION" "$PY" benchmarks/bench_model.py --device "$DEVICE" \
    --batch_size "$bs" --precision "$BENCH_PRECISION" "${BENCH[@]}"
  line=$(grep '^{' "$WORK/logs/$name.log" 2>/dev/null | tail -1)
  if [[ $(tail -1 "$RESULTS" | cut -f1,2) == "$name"$'\t'PASS && -n $line ]]; then  # figures as the note
    figures=$(echo "$line" | "$PY" -c 'import json, sys
r = json.load(sys.stdin)
print("%s clips/s, %s s/step, %s TFLOP/s, MFU %s, peak %s MiB" % (r["clips_per_s"], r["sec_per_step"],
      r["achieved_tflops"], r["mfu"], r.get("cuda_max_allocated_MiB", r.get("process_max_rss_MiB"))))')
    sed -i "\$s|\t[^\t]*\$|\t$figures|" "$RESULTS"
  fi
done

# ---- torch.compile ---------------------------------------------------------------------------
TIMEOUT=$COMPILE_TIMEOUT check distill_compile "--compile: student + teacher, bf16" "${DISTILL[@]}" \
  --precision bf16 --compile $(out distill_compile)
TIMEOUT=$COMPILE_TIMEOUT check finetune_compile "--compile: classifier, bf16" "${FINETUNE[@]}" \
  --precision bf16 --compile --reprob 0 $(out finetune_compile)

summary
