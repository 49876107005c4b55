#!/usr/bin/env bash
# Multi-node DDP without SLURM: run this script once on every node, e.g. on two nodes
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 bash scripts/slurm/train_torchrun.sh   # on node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 bash scripts/slurm/train_torchrun.sh   # on node1
# Arguments are Hydra overrides of `molsym train` (default: experiment=rmd17
# data.molecule=aspirin). torchrun starts one process per GPU; Lightning detects
# torchelastic's variables (no SLURM needed). In Docker, run it with --network=host.
set -euo pipefail

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus 2>/dev/null | wc -l)}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
RUN_DIR=${RUN_DIR:-runs/torchrun}

if [ "${GPUS_PER_NODE:-0}" -lt 1 ]; then
    echo "no GPU found (set GPUS_PER_NODE)" >&2
    exit 1
fi
if [ "$#" -eq 0 ]; then
    set -- experiment=rmd17 data.molecule=aspirin
fi
MOLSYM_BIN=$(command -v molsym) || { echo "molsym is not on PATH" >&2; exit 1; }
RESUME=()
if [ -f "$RUN_DIR/checkpoints/last.ckpt" ]; then
    RESUME=(ckpt_path="$RUN_DIR/checkpoints/last.ckpt")
fi

# The molsym console script is a Python file, so torchrun can run it as the training script.
exec torchrun \
    --nnodes="$NNODES" --node-rank="$NODE_RANK" --nproc-per-node="$GPUS_PER_NODE" \
    --master-addr="$MASTER_ADDR" --master-port="$MASTER_PORT" \
    "$MOLSYM_BIN" train \
    trainer=ddp \
    trainer.accelerator=gpu \
    trainer.devices="$GPUS_PER_NODE" \
    trainer.num_nodes="$NNODES" \
    trainer.strategy=ddp \
    hydra.run.dir="$RUN_DIR" \
    ${RESUME[@]+"${RESUME[@]}"} \
    "$@"
