#!/usr/bin/env bash
# One training round on a GPU machine, meant to run detached (setsid) so that it outlives the device
# call that starts it: train over GPUS processes (or resume OUT/run), export the EMA weights as a bf16
# model folder, then validate it at 1 and 8 steps for several refining t0.
#
#   setsid nohup bash scripts/train_round.sh GPUS STAGE CONFIG INIT PACK OUT MINUTES [TRAIN ARGS...] > OUT.log 2>&1 &
#   e.g. ... 2 stage2 train/configs/m-residual-stage2.toml weights /root/data/pack /root/round 17
# Arguments after MINUTES go to odva-train (e.g. --steps 1600 for a config written for two GPUs run on one;
# prefix CUDA_VISIBLE_DEVICES=1 to run two one-GPU rounds side by side). INIT `-` starts from scratch
# (stage 1, where --set model_changes=... may change the model config). VALIDATE_ARGS replaces the
# validation's sampling options, e.g. VALIDATE_ARGS="--steps 1 --quant-step 1,2,4" for a rate-distortion
# sweep of a stage-1 design variant.
#
# OUT/run: the run (checkpoint, metrics.jsonl, summary.json); OUT/model: the bf16 model folder;
# OUT/validate.json and .md: the held-out table; OUT/ceiling.json and .md: the same at one step with the
# latents unquantized; OUT/done when all of it is written.
set -euo pipefail
gpus=$1 stage=$2 config=$3 init=$4 pack=$5 out=$6 minutes=$7
shift 7
mkdir -p "$out"
if [ -f "$out/run/checkpoint.pt" ]; then
    bash scripts/train_on.sh "$gpus" resume "$out/run" --max-minutes "$minutes"
else
    from=(--init "$init"); [ "$init" = - ] && from=()
    bash scripts/train_on.sh "$gpus" "$stage" --config "$config" "${from[@]}" --data "$pack" --out "$out/run" \
        --max-minutes "$minutes" "$@"
fi
python3 -m train.cli export "$out/run" -o "$out/model" --data "$pack" --force
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
read -r -a validate_args <<< "${VALIDATE_ARGS:---steps 1,4,8 --refine-from 0.2,0.3,0.5,1}"
python3 -m train.cli validate "$out/model" --data "$pack" "${validate_args[@]}" \
    --device "$device" --json "$out/validate.json" | tee "$out/validate.md"
# the autoencoder's own ceiling, its latents unquantized: what no rate can buy beyond
python3 -m train.cli validate "$out/model" --data "$pack" --steps 1 --quant-step 0 --device "$device" \
    --json "$out/ceiling.json" | tee "$out/ceiling.md"
touch "$out/done"
