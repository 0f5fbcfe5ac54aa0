"""scripts/profile_summary.py: py-spy's collapsed stacks, summed per process and thread."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from profile_summary import summarise  # noqa: E402

PARENT = 'process 10:"python -m onedva_codec decode a.odva -o b.y4m"'
CHILD = 'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=9)"'
RAW = [
    f"{PARENT};thread (10);<module> (onedva_codec/__main__.py:5);_find_and_load (<frozen importlib._bootstrap>:1176) 30",
    f"{PARENT};thread (10): MainThread;run (onedva_codec/cli.py:90);write (onedva_codec/video_io.py:270);"
    "reformat (av/video/frame.py:1) 5",
    f"{PARENT};thread (10): MainThread;run (onedva_codec/cli.py:90);wait (threading.py:320) 7",
    f"{PARENT};{CHILD};thread (11): MainThread;_serve (onedva_codec/device_pool.py:80);"
    "forward (onedva_codec/model.py:200);linear (torch/nn/functional.py:1) 12",
]


def test_samples_go_to_the_innermost_odva_function_of_each_thread_and_process():
    threads = summarise(RAW)
    assert set(threads) == {"main process 10 / MainThread", "spawned child 11 / MainThread"}
    main = threads["main process 10 / MainThread"]  # its early, unnamed samples join it
    assert main == {"(imports) __main__.py: <module>": 30, "video_io.py: write": 5, "cli.py: run": 7}
    assert threads["spawned child 11 / MainThread"] == {"model.py: forward": 12}
