#!/usr/bin/env bash
# odva-train on GPUS processes: through torchrun (one process per GPU) when GPUS > 1, directly otherwise.
# Usage: bash scripts/train_on.sh GPUS STAGE ARGS...     e.g. bash scripts/train_on.sh 4 stage1 --data pack
set -euo pipefail
GPUS=$1; shift
if [ "$GPUS" -gt 1 ]; then exec python3 -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m train.cli "$@"
else exec python3 -m train.cli "$@"; fi
