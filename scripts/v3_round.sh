#!/usr/bin/env bash
# One v3 training round on one GPU, detached (setsid) so that it outlives the device call that starts it:
# train (or resume OUT/run) for MINUTES, export the EMA weights as a bf16 model folder (which is also the
# next round's starting point: `--init` takes a model folder), validate it on the held-out clips at one
# step, and cut the weights in 15 MiB parts so that each comes back from the machine.
#
#   setsid nohup bash scripts/v3_round.sh CONFIG INIT PACK OUT MINUTES [TRAIN ARGS...] > OUT.log 2>&1 &
#   e.g. ... train/configs/v3-grow-stage1.toml weights /root/data/pack /root/v3 16
#
# OUT/run: the run (metrics.jsonl with held-out bpp and PSNR per rate point, summary.json, samples);
# OUT/model: the model folder; OUT/validate.json and .md; OUT/small.tar: all of it but the weights;
# OUT/model.safetensors.part-*: the weights; OUT/done when all of it is written.
set -euo pipefail
config=$1 init=$2 pack=$3 out=$4 minutes=$5
shift 5
mkdir -p "$out"
if [ -f "$out/run/checkpoint.pt" ]; then
    python3 -m train.cli resume "$out/run" --max-minutes "$minutes"
else
    python3 -m train.cli stage1 --config "$config" --init "$init" --data "$pack" --out "$out/run" \
        --max-minutes "$minutes" "$@"
fi
python3 -m train.cli export "$out/run" -o "$out/model" --data "$pack" --default-steps 1 --force
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
python3 -m train.cli validate "$out/model" --data "$pack" --steps 1 --device "$device" \
    --json "$out/validate.json" | tee "$out/validate.md"
tar -cf "$out/small.tar" -C "$out" --exclude model/model.safetensors --exclude run/checkpoint.pt model run \
    validate.json validate.md
split -b 15M "$out/model/model.safetensors" "$out/model.safetensors.part-"
touch "$out/done"
