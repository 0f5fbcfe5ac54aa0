"""Where a whole `odva` command's time goes, per thread, from a py-spy recording.

Record a command with py-spy's raw (collapsed-stack) output, every thread, idle ones included:

    py-spy record --idle --threads --subprocesses --format raw -r 100 -o enc.txt -- python3 -m onedva_codec encode ...
    python scripts/profile_summary.py enc.txt --rate 100

Each sample is put under the innermost function of odva's own code on its stack (`onedva_codec/`),
or "(imports)" while modules load, or "(outside odva) LEAF" for the rest. Seconds are samples over
the sampling rate; an idle thread counts too, under the function it waits in, so a thread's
total is its lifetime. `scripts/speed.sh` writes such recordings with PROFILE=DIR.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")
_PROCESS = re.compile(r'(process \d+:"[^"]*");')  # a command line may hold ';' but no '"'


def place(stack: list[str]) -> str:
    """The name a sample is counted under (stack: outermost frame first)."""
    importing = any("_find_and_load" in frame for frame in stack)
    for frame in reversed(stack):
        match = _FRAME.match(frame)
        if match and match["file"].startswith("onedva_codec/"):
            name = f"{match['file'].removeprefix('onedva_codec/')}: {match['function']}"
            return "(imports) " + name if importing else name
    if importing:
        return "(imports)"
    leaf = _FRAME.match(stack[-1]) if stack else None
    return f"(outside odva) {leaf['function'] if leaf else (stack[-1] if stack else '?')}"


def _process_label(entry: str, top: bool) -> str:
    pid, _, command = entry.removeprefix("process ").partition(":")
    command = command.strip('"')
    kind = ("spawned child" if "spawn_main" in command else "resource tracker" if "resource_tracker" in command
            else "forked child" if not top else "main process")
    return f"{kind} {pid}"


def summarise(lines: list[str]) -> dict[str, Counter]:
    """Samples per place, per thread ("PROCESS / THREAD"; a thread named late keeps one entry)."""
    samples: dict[tuple[str, str], Counter] = defaultdict(Counter)
    names: dict[tuple[str, str], str] = {}
    for line in lines:
        stack_text, _, count = line.rstrip("\n").rpartition(" ")
        if not stack_text:
            continue
        process, depth = "process", 0
        while match := _PROCESS.match(stack_text):  # py-spy --subprocesses: parent, then child
            process = _process_label(match[1], top=depth == 0)
            stack_text, depth = stack_text[match.end():], depth + 1
        frames = stack_text.split(";")
        thread = frames.pop(0) if frames and frames[0].startswith("thread ") else "thread ?"
        tid, _, name = thread.partition(": ")
        key = (process, tid.removeprefix("thread ").strip("()"))
        if name:
            names[key] = name
        samples[key][place(frames)] += int(count)
    return {f"{process} / {names.get((process, tid), 'thread ' + tid)}": places
            for (process, tid), places in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's sampling rate (-r)")
    parser.add_argument("--top", type=int, default=12, help="places shown per thread")
    args = parser.parse_args()
    threads = summarise(args.recording.read_text().splitlines())
    for thread, places in sorted(threads.items(), key=lambda item: -sum(item[1].values())):
        total = sum(places.values())
        print(f"\n{thread}: {total / args.rate:.2f} s")
        for name, samples in places.most_common(args.top):
            print(f"  {samples / args.rate:7.2f} s  {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
