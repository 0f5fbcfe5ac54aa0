#!/usr/bin/env bash
# One round of v2 training on a GPU machine: each run on a GPU of its own, side by side, each
# resumed from its checkpoint on the machine's disk (the first round starts it from its config).
#
#   bash scripts/v2_round.sh PACK RUNS MINUTES CONFIG...   e.g. ... pack /root/runs 8.3 m-stage1 m-residual-stage1
#
# A run's folder is RUNS/<config>; its log RUNS/<config>.log. Every run ends with validation.
set -euo pipefail
pack=$1 runs=$2 minutes=$3
shift 3
mkdir -p "$runs"
gpu=0
for name in "$@"; do
    if [ -f "$runs/$name/checkpoint.pt" ]; then
        CUDA_VISIBLE_DEVICES=$gpu python3 -m train.cli resume "$runs/$name" --max-minutes "$minutes" \
            >> "$runs/$name.log" 2>&1 &
    else
        CUDA_VISIBLE_DEVICES=$gpu python3 -m train.cli stage1 --config "train/configs/$name.toml" --data "$pack" \
            --out "$runs/$name" --max-minutes "$minutes" >> "$runs/$name.log" 2>&1 &
    fi
    gpu=$((gpu + 1))
done
wait
