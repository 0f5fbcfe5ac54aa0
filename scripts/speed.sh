#!/usr/bin/env bash
# Time whole `odva encode` and `odva decode` commands on a video, with a random-weights
# model of the named config (speed does not depend on the weights' values).
# Usage: bash scripts/speed.sh CONFIG CLIP STEPS...      e.g. bash scripts/speed.sh s clip.mp4 1 4 8
# Set BATCH=N to pass --batch N. Wheels in .whl/ (if any) are installed first, for machines without PyAV.
set -uo pipefail
CONFIG=$1; CLIP=$2; shift 2
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD; else export PYTHONPATH=$PWD; fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee $OUT/gpu.txt
python3 -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__, 'cuda', torch.cuda.is_available())"
python3 - "$CONFIG" <<'PY'
import sys, torch
from onedva_codec.config import get_config
from onedva_codec.model import OneDVA
from onedva_codec.weights import ModelCard, save_model
torch.manual_seed(0)
cfg = get_config(sys.argv[1]); c = cfg.latent_channels
save_model(OneDVA(cfg), ModelCard(cfg, [0.0] * c, [1.0] * c, 0.03, 0.02, training={"note": "random, for speed"}), "/tmp/model")
PY
odva() { python3 -m onedva_codec.cli "$@"; }
run() { local t0=$(date +%s%N); "$@" 2>&1 | tail -2; echo "whole process: $(( ($(date +%s%N) - t0) / 1000000 )) ms"; }
for i in 1 2; do echo "== encode (run $i)"; run odva encode "$CLIP" -o /tmp/clip.odva --weights /tmp/model --force ${BATCH:+--batch $BATCH}; done
odva info /tmp/clip.odva | head -20
for s in "$@"; do for i in 1 2; do echo "== decode steps $s (run $i)"; run odva decode /tmp/clip.odva -o /tmp/rec.mp4 --steps $s --weights /tmp/model --force ${BATCH:+--batch $BATCH}; done; done
