#!/usr/bin/env bash
# One device call: a v3 round (train MIN minutes on the pack in /root/data/pack, export, validate),
# the measured --quality ladder, then GPU<->CPU bit-exactness and 1080p speed of the new model and v2.
# Usage (on the device machine, the pack and wheels carried or staged by an earlier call: scripts/device_stage.sh):
#   CONFIG=train/configs/v3t-grow-stage1.toml INIT=weights RUN=/root/v3 ROUND_S=360 LADDER_S=60 CROSS_S=100 \
#       SPEED_S=50 BASELINE=1 bash scripts/device_v3_call.sh MINUTES [STAGE1 OPTIONS]
#   e.g. CONFIG=train/configs/v3tp-grow-stage1.toml bash scripts/device_v3_call.sh 4 --set steps=5000; then, on the
#   same machine with more of the pack, the same RUN again resumes that run (its schedule of 5000 steps) for 6 more.
# Products: $OUT/small.tar (card, prior, metrics, validation, ladder, logs) and $OUT/model.safetensors.part-*.
# PyAV is not on that machine: an empty `av` module stands in for it, which the array paths never use. Nor are
# LPIPS's weights, which validation needs: carry nets/ (`odva-train nets -o nets`, alexnet.safetensors alone) once;
# it is kept in /root/nets for the machine's later calls.
MIN=$1; shift  # the rest: odva-train stage1 options, e.g. --set lr=1e-4
R=${RUN:-/root/v3}
mkdir -p $R
rm -f $R/model.safetensors.part-* $R/done  # a resumed round's parts are its own
source scripts/device_stage.sh  # wheels, nets/ and the carried parts of the pack in place
timeout ${ROUND_S:-360} bash scripts/v3_round.sh ${CONFIG:-train/configs/v3t-grow-stage1.toml} ${INIT:-weights} /root/data/pack $R $MIN "$@" > $R/round.log 2>&1
echo round rc=$?; grep -v "^  " $R/round.log | tail -30
# a round cut short after its export still brings the weights back
[ -e $R/model.safetensors.part-aa ] || split -b 15M $R/model/model.safetensors $R/model.safetensors.part-
timeout ${LADDER_S:-60} python3 -m train.cli ladder $R/model --data /root/data/pack --device cuda > $R/ladder.md 2>&1; tail -62 $R/ladder.md
# without the sample grids, so that the tar and the weights' parts come back together (64 MiB at most)
tar -cf $OUT/small.tar -C $R --exclude model/model.safetensors --exclude run/checkpoint.pt --exclude run/samples \
    model run validate.json validate.md round.log ladder.md
cp $R/model.safetensors.part-* $OUT/
python3 -c "
import numpy as np; from PIL import Image
np.save('/root/clip.npy', np.stack([np.asarray(Image.open(f'/root/data/pack/videos/bikes/{i:05d}.webp').convert('RGB')) for i in range(31, 65)]))  # no cut inside: chunk 1 depends on chunk 0"
mkdir -p /root/stub/av && touch /root/stub/av/__init__.py  # no PyAV here: the array paths never open a container
export PYTHONPATH=/root/stub:$PYTHONPATH
timeout ${CROSS_S:-100} python3 scripts/check_cross_device.py /root/clip.npy --weights $R/model --frames 34 2>&1 | tail -4
# 1080p speed with every chunk a key chunk, then with dependent chunks (a traceback of every thread if one hangs)
for keyint in 1 ""; do
    PYTHONFAULTHANDLER=1 timeout -s ABRT ${SPEED_S:-50} python3 scripts/multi_gpu_speed.py /root/clip.npy --weights $R/model \
        --devices cuda:0 --frames ${SPEED_FRAMES:-272} --runs 2 ${keyint:+--keyint $keyint} 2>&1 | grep -v '^    ' | tail -12
done
[ "${BASELINE:-1}" = 1 ] && timeout 35 python3 scripts/multi_gpu_speed.py /root/clip.npy --devices cuda:0 --frames 272 --runs 2 2>&1 | tail -3
