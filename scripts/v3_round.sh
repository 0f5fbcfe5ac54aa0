#!/usr/bin/env bash
# One v3 training round on one GPU, detached (setsid) so that it outlives the device call that starts it:
# train (or resume OUT/run) for MINUTES, then write the round's resume point, the EMA weights in bf16
# (scripts/resume_point.py), split in 15 MiB parts so that each comes back from the machine.
#
#   setsid nohup bash scripts/v3_round.sh CONFIG INIT PACK OUT MINUTES [TRAIN ARGS...] > OUT.log 2>&1 &
#   e.g. ... train/configs/v3-grow-stage1.toml weights /root/data/pack /root/v3 16
#
# OUT/run: the run (metrics.jsonl with held-out bpp and PSNR per rate point, summary.json, samples);
# OUT/resume.pt.part-*: the resume point; OUT/done when all of it is written.
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
python3 scripts/resume_point.py "$out/run" "$out/resume.pt"
split -b 15M "$out/resume.pt" "$out/resume.pt.part-"
touch "$out/done"
