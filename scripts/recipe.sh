#!/usr/bin/env bash
# The recipe after stage 1: stage2, align, ldm, decoder-ft, each from the one before, on GPUS GPUs (32 clips
# per GPU per step), then the final model exported to OUT/model and stage 2's to OUT/model-stage2, and a
# table of held-out figures at the end of each stage (odva-train report).
# Usage: bash scripts/recipe.sh PACK INIT OUT GPUS     e.g. bash scripts/recipe.sh pack weights runs 4
# INIT is stage 1's run folder or a model folder. Steps and minute budgets per stage come from the
# environment (defaults below: about a quarter of an hour on 4 x H200); EXTRA adds settings to every stage,
# WORKERS sets the loader processes. On a CPU, with a tiny stage-1 run:
#   WORKERS=0 STAGE2_STEPS=6 ALIGN_STEPS=4 LDM_STEPS=4 FT_STEPS=4 EXTRA="--set repa_block=0" \
#   bash scripts/recipe.sh pack /tmp/eff/baseline /tmp/recipe 1
set -euo pipefail
PACK=$1; INIT=$2; OUT=$3; GPUS=$4
launch() { bash "$(dirname "$0")/train_on.sh" "$GPUS" "$@"; }
common=(--data "$PACK" --batch $((32 * GPUS)) --workers "${WORKERS:-12}" --set val_every=1000000 ${EXTRA:-})
launch stage2 --config train/configs/s-stage2.toml --init "$INIT" --out "$OUT/stage2" "${common[@]}" \
    --steps "${STAGE2_STEPS:-1400}" --max-minutes "${STAGE2_MINUTES:-7}"
launch align --init "$OUT/stage2" --out "$OUT/align" "${common[@]}" --set warmup=25 \
    --steps "${ALIGN_STEPS:-250}" --max-minutes "${ALIGN_MINUTES:-2}"
launch ldm --init "$OUT/align" --out "$OUT/ldm" "${common[@]}" --set warmup=50 --lr 3e-4 \
    --steps "${LDM_STEPS:-500}" --max-minutes "${LDM_MINUTES:-1.5}"
launch decoder-ft --init "$OUT/align" --ldm "$OUT/ldm" --out "$OUT/decoder-ft" "${common[@]}" --set warmup=25 \
    --steps "${FT_STEPS:-300}" --max-minutes "${FT_MINUTES:-2}"
python3 -m train.cli export "$OUT/decoder-ft" -o "$OUT/model" --force
python3 -m train.cli export "$OUT/stage2" -o "$OUT/model-stage2" --data "$PACK" --force
python3 -m train.cli report "$OUT/stage2" "$OUT/align" "$OUT/decoder-ft"
