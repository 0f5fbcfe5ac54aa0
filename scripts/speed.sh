#!/usr/bin/env bash
# Time whole `odva encode` and `odva decode` commands on a video: RUNS runs of each (default 3), the
# median and every run, for decoding to raw .y4m and to H.264 .mp4 (whose encoder may be the limit).
# In-process figures, one GPU against several: scripts/multi_gpu_speed.py.
# Usage: bash scripts/speed.sh WEIGHTS CLIP STEPS...      e.g. bash scripts/speed.sh weights clip.mp4 1 8
# Set BATCH=N to pass --batch N, DEVICE=cuda:0,1 to pass --device. Wheels in .whl/ (if any) are
# installed first, for machines without PyAV (or py-spy). PROFILE=DIR also records each command once
# with py-spy (every thread and process, idle time included) and writes DIR/NAME.txt (raw stacks)
# and DIR/NAME.summary.txt (scripts/profile_summary.py: where each thread's time went).
set -uo pipefail
WEIGHTS=$1; CLIP=$2; shift 2
RUNS=${RUNS:-3}; WORK=$(mktemp -d)
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}; else export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}; fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__, 'cuda', torch.cuda.is_available())"
if [ -n "${PROFILE:-}" ]; then
    mkdir -p "$PROFILE"
    pyspy=$(command -v py-spy || echo /tmp/site/bin/py-spy)
    [ -x "$pyspy" ] || { echo "PROFILE needs py-spy (pip install py-spy, or its wheel in .whl/)" >&2; exit 1; }
fi
options=(--weights "$WEIGHTS" --force ${BATCH:+--batch $BATCH} ${DEVICE:+--device $DEVICE})
odva() { python3 -m onedva_codec "$@"; }
timed() {  # NAME COMMAND...: RUNS runs; prints the median and each run
    local name=$1 times=() t0; shift
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s%N)
        "$@" 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
        times+=($(( ($(date +%s%N) - t0) / 1000000 )))
    done
    if [ -n "${PROFILE:-}" ]; then
        local file="$PROFILE/$(echo "${name//[^A-Za-z0-9]/-}" | tr -s -)" command=("$@")
        [ "$1" = odva ] && command=(python3 -m onedva_codec "${@:2}")  # py-spy runs programs, not functions
        "$pyspy" record --idle --threads --subprocesses --format raw -r 100 -o "$file.txt" -- "${command[@]}" >"$WORK/err" 2>&1 \
            || { cat "$WORK/err"; exit 1; }
        python3 scripts/profile_summary.py "$file.txt" --rate 100 > "$file.summary.txt"
    fi
    python3 -c "
import statistics, sys
name, frames, ms = sys.argv[1], int(sys.argv[2]), [int(v) for v in sys.argv[3:]]
m = statistics.median(ms) / 1000
print(f'{name:<26} median {m:6.2f} s {frames / m:7.1f} frames/s   runs (ms): {ms}')" "$name" "$frames" "${times[@]}"
}
odva encode "$CLIP" -o "$WORK/clip.odva" "${options[@]}" -q || exit 1  # warms the disk cache and checks the clip
frames=$(odva info "$WORK/clip.odva" --json | python3 -c "import json, sys; print(json.load(sys.stdin)['frames'])")
odva info "$WORK/clip.odva" | head -12
timed "encode" odva encode "$CLIP" -o "$WORK/clip.odva" "${options[@]}" -q
for s in "$@"; do
    for ext in y4m mp4; do
        timed "decode --steps $s .$ext" odva decode "$WORK/clip.odva" -o "$WORK/rec.$ext" --steps "$s" "${options[@]}" -q
    done
done
rm -rf "$WORK"
