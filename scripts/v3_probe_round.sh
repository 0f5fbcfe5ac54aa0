#!/usr/bin/env bash
# v3 design probes side by side on one GPU, detached (setsid) so that they outlive the device call
# that starts them; each gets an equal share of the GPU for the same wall-clock minutes.
#
#   setsid nohup bash scripts/v3_probe_round.sh PACK OUT MINUTES VARIANT... > OUT.log 2>&1 &
#
# OUT/VARIANT/result.json per variant (scripts/v3_probe.py), OUT/done when all are written.
set -euo pipefail
pack=$1 out=$2 minutes=$3
shift 3
mkdir -p "$out"
workers=$(( $(nproc) / $# ))
for variant in "$@"; do
    python3 scripts/v3_probe.py --pack "$pack" --out "$out/$variant" --variant "$variant" --minutes "$minutes" \
        --workers "$workers" > "$out/$variant.log" 2>&1 &
done
wait
touch "$out/done"
