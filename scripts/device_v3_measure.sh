#!/usr/bin/env bash
# One short device call: a v3tp model grown from the shipped v2 weights and trained a few steps (its weights
# barely moved: what this measures does not need a trained model), then GPU<->CPU bit-exactness of files
# with dependent chunks and in-process 1080p speed (v3tp, then v2 on the same machine).
# Usage (on the device machine, the pack, wheels and LPIPS's weights carried or staged by an earlier call, as
# scripts/device_stage.sh says):
#   STEPS=20 TRAIN_S=120 EXPORT_S=50 CROSS_S=70 SPEED_S=60 bash scripts/device_v3_measure.sh
source scripts/device_stage.sh  # wheels, nets/ and the carried parts of the pack in place
mkdir -p /root/v3
timeout ${TRAIN_S:-120} python3 -m train.cli stage1 --config train/configs/v3tp-grow-stage1.toml --init weights --data /root/data/pack \
    --out /root/v3/run --steps ${STEPS:-20} --set val_every=100000 --set val_clips=2 > /root/v3/run.log 2>&1
echo train rc=$?; grep -v "^  " /root/v3/run.log | tail -6
timeout ${EXPORT_S:-50} python3 -m train.cli export /root/v3/run -o /root/v3/model --data /root/data/pack --default-steps 1 --force 2>&1 | tail -2
python3 -c "
import numpy as np; from PIL import Image
np.save('/root/clip.npy', np.stack([np.asarray(Image.open(f'/root/data/pack/videos/bikes/{i:05d}.webp').convert('RGB')) for i in range(31, 65)]))"
mkdir -p /root/stub/av && touch /root/stub/av/__init__.py  # no PyAV here: the array paths never open a container
export PYTHONPATH=/root/stub:$PYTHONPATH
timeout ${CROSS_S:-70} python3 scripts/check_cross_device.py /root/clip.npy --weights /root/v3/model --frames 34 2>&1 | tail -4
timeout ${SPEED_S:-60} python3 scripts/multi_gpu_speed.py /root/clip.npy --weights /root/v3/model --devices cuda:0 --frames 272 --runs 2 2>&1 | tail -4
timeout 40 python3 scripts/multi_gpu_speed.py /root/clip.npy --devices cuda:0 --frames 272 --runs 2 2>&1 | tail -3
