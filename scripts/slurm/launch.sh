# shellcheck shell=bash
# Sourced by the recipe scripts in scripts/{pretrain,distill,finetune}/, never run on its own. Checks
# DATA_PATH and OUTPUT_DIR (DATASET names the data in the message), sets DATA_DIR / OUT_DIR to them made
# absolute, and defines `abspath PATH` and `launch ENTRY FLAGS...`: from the repository root, ENTRY on
# GPUS processes by torchrun (LAUNCHER=torchrun, the default) or slurm_train.sh (LAUNCHER=slurm).
# Env: GPUS (8), MASTER_PORT (12320), LAUNCHER (torchrun), JOB_NAME (slurm; default <family>_<recipe>).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GPUS="${GPUS:-8}"
MASTER_PORT="${MASTER_PORT:-12320}"
# Data-loader workers do the decoding; one OpenMP thread per training process avoids oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Paths from the environment are read from the caller's directory, although the run starts elsewhere.
abspath() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
  esac
}

: "${DATA_PATH:?set DATA_PATH to the ${DATASET} annotation folder (the one holding train.csv)}"
: "${OUTPUT_DIR:?set OUTPUT_DIR to the folder for checkpoints and logs}"
# shellcheck disable=SC2034  # read by the sourcing recipe
DATA_DIR="$(abspath "$DATA_PATH")" OUT_DIR="$(abspath "$OUTPUT_DIR")"

launch() {
  local entry="$1"
  shift
  cd "$REPO_ROOT" || exit
  case "${LAUNCHER:-torchrun}" in
    torchrun)
      exec torchrun --nproc_per_node="$GPUS" --master_port="$MASTER_PORT" "$entry" "$@"
      ;;
    slurm)
      local recipe
      recipe="$(basename "$(dirname "$0")")_$(basename "$0" .sh)"
      GPUS="$GPUS" MASTER_PORT="$MASTER_PORT" JOB_NAME="${JOB_NAME:-$recipe}" \
        exec bash "$REPO_ROOT/scripts/slurm/slurm_train.sh" "$entry" "$@"
      ;;
    *)
      echo "LAUNCHER must be torchrun or slurm, got '${LAUNCHER}'" >&2
      exit 2
      ;;
  esac
}
