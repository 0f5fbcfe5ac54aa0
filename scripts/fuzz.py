"""Fuzz the .odva reader and decoder with CRC-valid mutants (tests/odva_fuzz.py's mutator).

Each mutant goes through what a user's file goes through: `read_info` (what `odva info` and
`odva decode` check first) and `Codec.decode_array` at one step. Anything but an OdvaError is a
finding, and so is an input slower than --max-seconds; the peak memory of the whole run is
reported. Findings are saved under --save for replay (`python scripts/fuzz.py --replay FILE`).

    python scripts/fuzz.py --minutes 30 --save fuzz-findings     # the long run
    python scripts/fuzz.py --count 2000 --seed 1 --json           # what tests/test_fuzz.py runs
    python scripts/fuzz.py --atheris --minutes 30                 # coverage-guided (pip install atheris)

With --atheris, libFuzzer chooses which inputs to keep by the coverage they reach in
onedva_codec; the mutator is the same structured one (libFuzzer's own byte mutations for
inputs it cannot take apart), and the run stops at the first finding, which it saves.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
import traceback
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

if "--atheris" in sys.argv:  # the codec's modules must be imported instrumented, before anything imports them
    import atheris
    with atheris.instrument_imports(include=["onedva_codec"]):
        import onedva_codec.codec  # noqa: F401 - and with it container, latent_coding, prior, geometry, ...

from helpers import TINY_MODEL, synthetic_clip  # noqa: E402
from odva_fuzz import mutate  # noqa: E402

from onedva_codec import Codec, OdvaError, RateOptions, read_info  # noqa: E402


def seed_files(codec: Codec) -> list[bytes]:
    """The pinned reference files this model made, and a longer, two-tile file with several chunks."""
    longer = codec.encode_array(synthetic_clip(40, 40, 60, seed=5), Fraction(30, 1), RateOptions(quality=0.7))
    pinned = [path.read_bytes() for path in sorted((ROOT / "tests" / "data").glob("reference*.odva"))]
    own = [data for data in pinned if read_info(data).header.model_sha256 == codec.model.card.weights_sha256]
    return [*own, longer]


def try_one(codec: Codec, data: bytes) -> str | None:
    """None if the input ends as it should (decoded, or refused with an OdvaError); else the finding."""
    try:
        read_info(data)
        codec.decode_array(data, steps=1)
    except OdvaError:
        pass
    except Exception as exc:  # noqa: BLE001 - what the fuzzer is looking for
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}: {str(exc)[:200]}"
    return None


def run_atheris(codec: Codec, seeds: list[bytes], args: argparse.Namespace) -> None:
    import tempfile

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        try:
            return mutate(data, random.Random(seed))[:max_size]
        except Exception:  # noqa: BLE001 - not a file it can take apart: libFuzzer's byte mutations
            return atheris.Mutate(data, max_size)

    def test_one_input(data: bytes) -> None:
        finding = try_one(codec, data)
        if finding is not None:
            raise RuntimeError(finding)

    corpus = Path(tempfile.mkdtemp(prefix="odva-corpus-"))
    for i, data in enumerate(seeds):
        (corpus / f"seed{i}.odva").write_bytes(data)
    save = args.save or Path("fuzz-findings")
    save.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(corpus), f"-max_total_time={int(args.minutes * 60)}", f"-seed={args.seed or 1}",
            f"-timeout={max(int(args.max_seconds), 1)}", f"-artifact_prefix={save}/", "-max_len=65536",
            "-print_final_stats=1"]
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def peak_rss_kib() -> int:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; getrusage's ru_maxrss does
    not, so under a large parent (a test run) it would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=0, help="inputs to try (0: until --minutes)")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, default=TINY_MODEL)
    parser.add_argument("--max-seconds", type=float, default=2.0, help="slower than this is a finding")
    parser.add_argument("--save", type=Path, help="folder for the inputs behind findings")
    parser.add_argument("--replay", type=Path, help="try one saved input and print what happens")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, with atheris (libFuzzer)")
    args = parser.parse_args()
    codec = Codec(args.weights, device="cpu", batch_size=4)
    if args.replay:
        print(try_one(codec, args.replay.read_bytes()) or "no finding")
        return
    rng = random.Random(args.seed)
    seeds = seed_files(codec)
    if args.atheris:
        run_atheris(codec, seeds, args)
        return
    findings: dict[str, int] = {}
    tried = slowest = 0
    deadline = time.monotonic() + args.minutes * 60
    while (tried < args.count) if args.count else (time.monotonic() < deadline):
        data = mutate(seeds[tried % len(seeds)], rng)
        started = time.perf_counter()
        finding = try_one(codec, data)
        seconds = time.perf_counter() - started
        slowest = max(slowest, seconds)
        if finding is None and seconds > args.max_seconds:
            finding = f"slow: {seconds:.1f} s"
        if finding is not None:
            if finding not in findings and args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"finding-{len(findings):03d}.odva").write_bytes(data)
            findings[finding] = findings.get(finding, 0) + 1
        tried += 1
    summary = {"inputs": tried, "findings": findings, "slowest_s": round(slowest, 3),
               "peak_rss_mib": round(peak_rss_kib() / 1024, 1)}
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{tried} inputs, {len(findings)} distinct findings, slowest {slowest:.2f} s, "
          f"peak memory {summary['peak_rss_mib']} MiB")
    for finding, count in sorted(findings.items(), key=lambda kv: -kv[1]):
        print(f"  {count:6d}  {finding}")


if __name__ == "__main__":
    main()
