# shellcheck shell=bash
# Sourced by the recipe scripts in scripts/{pretrain,distill,finetune}/, never run on its own. Checks
# DATA_PATH and OUTPUT_DIR (DATASET names the data in the message), sets DATA_DIR / OUT_DIR to them made
# absolute, and defines `abspath PATH` and `launch ENTRY FLAGS...`: from the repository root, ENTRY by
# torchrun (LAUNCHER=torchrun, the default) or slurm_train.sh (LAUNCHER=slurm).
# Env (torchrun): GPUS (8: processes on this node), NNODES (1), NODE_RANK (0: this node, 0..NNODES-1),
#   MASTER_ADDR (the NODE_RANK 0 node's address, required when NNODES > 1; 127.0.0.1 on one node),
#   MASTER_PORT (12320). Or, for an elastic rendezvous in which the nodes need no rank: RDZV_ENDPOINT
#   (host:port of the c10d store, on any one node), RDZV_ID (the same on every node; default the recipe's
#   name), RDZV_BACKEND (c10d); NNODES may then be MIN:MAX. Every node runs the same recipe command.
# Env (slurm): GPUS (tasks in all, 8), JOB_NAME (default <family>_<recipe>) and those of slurm_train.sh;
#   slurm places the tasks on its nodes, so NNODES / NODE_RANK / RDZV_ENDPOINT are not used there.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GPUS="${GPUS:-8}"
MASTER_PORT="${MASTER_PORT:-12320}"
# Data-loader workers do the decoding; one OpenMP thread per training process avoids oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Paths from the environment are read from the caller's directory, although the run starts elsewhere.
abspath() {
  case "$1" in
    /* | *://*) printf '%s\n' "$1" ;;
    *)
      # a model-zoo name (python -m models.zoo list) is passed on as it is; a path is made absolute
      if [ -e "$1" ] || [[ "$1" == */* ]] || [[ "$1" == *.* ]]; then
        printf '%s/%s\n' "$PWD" "$1"
      else
        printf '%s\n' "$1"
      fi
      ;;
  esac
}

: "${DATA_PATH:?set DATA_PATH to the ${DATASET} annotation folder (the one holding train.csv)}"
: "${OUTPUT_DIR:?set OUTPUT_DIR to the folder for checkpoints and logs}"
# shellcheck disable=SC2034  # read by the sourcing recipe
DATA_DIR="$(abspath "$DATA_PATH")" OUT_DIR="$(abspath "$OUTPUT_DIR")"

_refuse() {
  echo "$1" >&2
  exit 2
}

_count() {  # NAME VALUE: VALUE must be a whole number >= 1
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || _refuse "$1 must be a whole number >= 1, got '$2'"
}

# The torchrun options of this node, in TORCHRUN_ARGS. One node keeps the single-node command of
# earlier releases (torchrun's own default master, 127.0.0.1).
_torchrun_args() {
  local nnodes="${NNODES:-1}" rank="${NODE_RANK:-0}"
  _count GPUS "$GPUS"
  _count MASTER_PORT "$MASTER_PORT"
  if [ -n "${RDZV_ENDPOINT:-}" ]; then
    [[ "$nnodes" =~ ^[1-9][0-9]*(:[1-9][0-9]*)?$ ]] ||
      _refuse "NNODES must be a node count or MIN:MAX with RDZV_ENDPOINT, got '$nnodes'"
    TORCHRUN_ARGS=(--nnodes="$nnodes" --nproc_per_node="$GPUS" --rdzv_backend="${RDZV_BACKEND:-c10d}"
      --rdzv_endpoint="$RDZV_ENDPOINT" --rdzv_id="${RDZV_ID:-$1}")
    return
  fi
  _count NNODES "$nnodes"
  [[ "$rank" =~ ^(0|[1-9][0-9]*)$ ]] && ((rank < nnodes)) ||
    _refuse "NODE_RANK must be this node's number, 0 to $((nnodes - 1)) for NNODES=$nnodes, got '$rank'"
  if ((nnodes == 1)); then
    TORCHRUN_ARGS=(--nproc_per_node="$GPUS" --master_port="$MASTER_PORT")
    return
  fi
  local hint="the address of the NODE_RANK=0 node, the same on every node"
  [ -n "${MASTER_ADDR:-}" ] || _refuse "NNODES=$nnodes needs MASTER_ADDR ($hint) or RDZV_ENDPOINT"
  TORCHRUN_ARGS=(--nnodes="$nnodes" --node_rank="$rank" --nproc_per_node="$GPUS"
    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT")
}

launch() {
  local entry="$1" recipe
  shift
  recipe="$(basename "$(dirname "$0")")_$(basename "$0" .sh)"
  cd "$REPO_ROOT" || exit
  case "${LAUNCHER:-torchrun}" in
    torchrun)
      _torchrun_args "$recipe"
      exec torchrun "${TORCHRUN_ARGS[@]}" "$entry" "$@"
      ;;
    slurm)
      [ "${NNODES:-1}" = 1 ] && [ -z "${RDZV_ENDPOINT:-}" ] || _refuse "NNODES / RDZV_ENDPOINT are for \
LAUNCHER=torchrun; under slurm set GPUS (tasks in all) and GPUS_PER_NODE"
      GPUS="$GPUS" MASTER_PORT="$MASTER_PORT" JOB_NAME="${JOB_NAME:-$recipe}" \
        exec bash "$REPO_ROOT/scripts/slurm/slurm_train.sh" "$entry" "$@"
      ;;
    *)
      _refuse "LAUNCHER must be torchrun or slurm, got '${LAUNCHER}'"
      ;;
  esac
}
