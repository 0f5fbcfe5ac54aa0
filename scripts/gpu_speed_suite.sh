#!/usr/bin/env bash
# The speed figures of docs/performance.md on this machine's GPUs, in seven parts, each sized for one
# 10-minute device call (the whole suite in one call ran out of time in its compiled section):
#   1080p     in-process encode and decode of 68 frames of docs/sample.mp4 at 1920 x 1080 on one GPU:
#             entropy coding on the calling thread, the coding workers, and the coding workers with
#             the noise drawn on the GPU;
#   compiled  the same compiled, and compiled with the noise drawn on the GPU;
#   spread    272 frames per GPU at 1080p on one GPU, on two and on four (as many as the machine has),
#             a process per GPU;
#   spread-gpu-noise  the same with the starting noise drawn on the GPUs (at one step the CPU's noise
#             is most of a decode's host work);
#   two-on-one  two processes on one GPU (cuda:0,0) against one;
#   other     a 4K pass for its peak memory, 272 and 2720 frames at 256 x 256 (plain, and compiled with
#             GPU noise), one decoder call plain and compiled;
#   commands  whole `odva` commands (scripts/speed.sh) on 272 frames of the 1080p clip written as .y4m,
#             and each once more under py-spy (OUT/prof/*.summary.txt: where each thread's time went).
# Results go to OUT (JSON and text); PART `all` (the default) runs them all one after the other.
#   bash scripts/gpu_speed_suite.sh OUT [WEIGHTS] [PART]     e.g. bash scripts/gpu_speed_suite.sh speed weights 1080p
set -euo pipefail
out=${1:?usage: bash scripts/gpu_speed_suite.sh OUT [WEIGHTS] [1080p|compiled|spread|spread-gpu-noise|two-on-one|other|commands|all]}
weights=${2:-weights} part=${3:-all}
case $part in 1080p|compiled|spread|spread-gpu-noise|two-on-one|other|commands|all) ;;
    *) echo "unknown part '$part': 1080p, compiled, spread, spread-gpu-noise, two-on-one, other, commands or all" >&2
       exit 2;;
esac
mkdir -p "$out"
export PYTHONUNBUFFERED=1
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
[ "$gpus" -ge 1 ] || { echo "gpu_speed_suite.sh needs a CUDA GPU" >&2; exit 1; }
lists=(cuda:0) most=1
[ "$gpus" -ge 2 ] && lists+=(cuda:0,1) most=2
[ "$gpus" -ge 4 ] && lists+=(cuda:0,1,2,3) most=4
speed() {  # NAME ARGS...: scripts/multi_gpu_speed.py on docs/sample.mp4, its table to OUT/NAME.txt
    local name=$1; shift
    python3 scripts/multi_gpu_speed.py docs/sample.mp4 --weights "$weights" --json "$out/$name.json" "$@" \
        2>&1 | tee "$out/$name.txt"
}
run_part() { [ "$part" = all ] || [ "$part" = "$1" ]; }
if run_part 1080p; then
    speed 1080p-serial-coding --devices cuda:0 --steps 1 8 --coding-workers 0
    speed 1080p --devices cuda:0 --steps 1 8
    speed 1080p-gpu-noise --devices cuda:0 --steps 1 8 --gpu-noise
fi
if run_part compiled; then
    speed 1080p-compiled --devices cuda:0 --steps 1 8 --compile
    speed 1080p-compiled-gpu-noise --devices cuda:0 --steps 1 8 --compile --gpu-noise
fi
# four runs of 4 chunks (the batches' period at 1080p) for each GPU
run_part spread && speed 1080p-spread --devices "${lists[@]}" --frames $((272 * most)) --steps 1 8 --runs 2
run_part spread-gpu-noise && speed 1080p-spread-gpu-noise --devices "${lists[@]}" --frames $((272 * most)) \
    --steps 1 8 --runs 2 --gpu-noise
run_part two-on-one && speed 1080p-two-on-one --devices cuda:0 cuda:0,0 --frames 544 --steps 1 8 --runs 2
if run_part other; then
    speed 4k --devices cuda:0 --size 3840x2160 --frames 34 --steps 1 --runs 1
    speed 256 --devices cuda:0 --size 256x256 --frames 272 --steps 1 8 --batch 32
    speed 256-compiled-gpu-noise --devices cuda:0 --size 256x256 --frames 272 --steps 1 8 --batch 32 --compile --gpu-noise
    # 272 frames are 16 tiles, one batch: nothing overlaps. A longer clip measures throughput
    speed 256-long --devices cuda:0 --size 256x256 --frames 2720 --steps 1 8 --batch 32
    speed 256-long-compiled-gpu-noise --devices cuda:0 --size 256x256 --frames 2720 --steps 1 8 --batch 32 --compile --gpu-noise
    python3 scripts/model_speed.py --weights "$weights" --batch 16 32 --modes default 2>&1 | tee "$out/model_call.txt"
fi
run_part commands || exit 0
python3 - "$out/clip1080.y4m" <<'PY'
import sys
from fractions import Fraction
sys.path.insert(0, "scripts")
from multi_gpu_speed import load_frames
from onedva_codec.video.io import VideoWriter
video, fps = load_frames("docs/sample.mp4", 1920, 1080, 272)
writer = VideoWriter(sys.argv[1], ".y4m", 1920, 1080, Fraction(fps).limit_denominator(1001))
for frame in video:
    writer.write(frame)
writer.close()
PY
profile=$out/prof  # py-spy, installed or in .whl/ (speed.sh installs it from there)
if ! command -v py-spy >/dev/null && ! ls .whl/py_spy-*.whl >/dev/null 2>&1; then
    profile=
    echo "no py-spy: the whole commands are timed without profiles" >&2
fi
PROFILE=$profile RUNS=3 bash scripts/speed.sh "$weights" "$out/clip1080.y4m" 1 8 2>&1 | tee "$out/whole_commands.txt"
# the raw stacks are MBs each; their summaries stay
[ -z "$profile" ] || find "$profile" -name '*.txt' ! -name '*.summary.txt' -delete
rm -f "$out/clip1080.y4m"
