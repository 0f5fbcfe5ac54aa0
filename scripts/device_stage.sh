#!/usr/bin/env bash
# Stage what a device call carried, so that every later call on the same warm machine finds it in place:
#   .whl/   wheels, installed into /root/site (PYTHONPATH)
#   nets/   LPIPS's weights for validation, copied to /root/nets (ODVA_NETS)
#   m3/     a model folder to start a round from (--init), copied to /root/init
#   stageA/pack ... stageD/pack   the training pack's parts, merged into /root/data/pack; the index (in
#           stageA) is kept whole as index.full.json and cut to the videos and photos present, so that a
#           round can start on part of the pack and see the rest once a later call brings it
# Usage (on the device machine, in the repository root): source scripts/device_stage.sh
# (scripts/device_v3_call.sh and device_v3_measure.sh start with it)
export PYTHONPATH=/root/site:$PWD PYTHONUNBUFFERED=1 ODVA_NETS=/root/nets
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/site .whl/*.whl
fi
[ -d nets ] && mkdir -p /root/nets && cp nets/* /root/nets/
[ -d m3 ] && mkdir -p /root/init && cp m3/* /root/init/
mkdir -p /root/data/pack
for part in stageA stageB stageC stageD; do
    [ -d $part/pack ] && cp -r $part/pack/. /root/data/pack/
done
if [ -f /root/data/pack/index.json ]; then
    [ -f /root/data/pack/index.full.json ] || cp /root/data/pack/index.json /root/data/pack/index.full.json
    python3 - <<'PY'
import json, pathlib
pack = pathlib.Path("/root/data/pack")
index = json.loads((pack / "index.full.json").read_text())
index["videos"] = [v for v in index["videos"] if (pack / v["folder"]).is_dir()]
index["photos"] = [p for p in index["photos"] if (pack / p["file"]).is_file()]
(pack / "index.json").write_text(json.dumps(index))
print(f"pack: {len(index['videos'])} videos, {len(index['photos'])} photos")
PY
fi
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
