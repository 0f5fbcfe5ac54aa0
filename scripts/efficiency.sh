#!/usr/bin/env bash
# The efficiency comparison: variants of config s trained from scratch (stage 1) on equal wall-clock budgets,
# all at once, one GPU each, 32 clips per step; each run ends with held-out validation, and the table is
# printed (odva-train report). Usage: bash scripts/efficiency.sh PACK MINUTES OUT
#   e.g. bash scripts/efficiency.sh pack 6 runs/efficiency      (needs one GPU per variant, four here)
# The schedule spans STEPS (default 1800) steps; the time budget stops a run sooner if it is slower.
# MODEL (default s), WORKERS (default 12) and EXTRA (settings for every variant) let the script be tried on a
# CPU: MODEL=tiny WORKERS=0 STEPS=20 EXTRA="--set repa_block=0" bash scripts/efficiency.sh pack 0.5 /tmp/eff
set -euo pipefail
PACK=$1; MINUTES=$2; OUT=$3; STEPS=${STEPS:-1800}; MODEL=${MODEL:-s}; WORKERS=${WORKERS:-12}
names=(baseline head16 dropout diffusion-only)
changes=(""                                   # s as shipped: lr 5e-4, LPIPS + REPA, every 1D latent kept
         "--set model_changes=head_channels=16"  # a thicker pixel head (twice the feature maps)
         "--set kept_lengths=motion"          # stage 2's motion-driven 1D dropout from the start
         "--set w_perc=0 --set w_repa=0")     # the flow-matching loss alone: cheaper steps
mkdir -p "$OUT"
for i in "${!names[@]}"; do
    # shellcheck disable=SC2086  # the changes are several words on purpose
    CUDA_VISIBLE_DEVICES=$i python3 -m train.cli stage1 --config train/configs/s-stage1.toml --data "$PACK" \
        --model "$MODEL" \
        --out "$OUT/${names[$i]}" --batch 32 --steps "$STEPS" --max-minutes "$MINUTES" --workers "$WORKERS" \
        --set warmup=100 --set val_every=1000000 --set ckpt_every=1000000 ${changes[$i]} ${EXTRA:-} \
        > "$OUT/${names[$i]}.log" 2>&1 &
done
wait
python3 -m train.cli report "${names[@]/#/$OUT/}"
