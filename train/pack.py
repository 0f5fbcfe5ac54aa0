"""The training pack: frames and photos as WebP plus an index, small enough to ship to a GPU.

    pack/index.json            what is in the pack, where it came from, its licence and split
    pack/videos/<id>/NNNNN.webp  the frames of each video, short side at most 288 px
    pack/photos/<id>.webp      each photo, long side at most 1280 px

Building needs PyAV (to read videos); reading needs only Pillow and numpy, which
is all a GPU machine may have.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .sources import Source

PACK_FORMAT = "odva-pack"
PACK_VERSION = 1
VIDEO_SHORT_SIDE = 288  # frames are stored downscaled to this (never upscaled)
VIDEO_MAX_FRAMES = 300  # per source: more of one scene adds bytes faster than variety
SEGMENT_FRAMES = 100  # a longer source gives segments of this length spread over it, each a pack video
PHOTO_LONG_SIDE = 1280
WEBP_QUALITY = 85
VIDEO_EXTENSIONS = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".y4m", ".ogv", ".mpg", ".mpeg"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def folder_sources(folder: Path, licence: str = "user-supplied") -> list[Source]:
    """Every video and image under `folder`. One file in ten of each kind, at least one where there
    are two or more, is held out; which ones is fixed by a hash of the names."""
    found = []
    for kind, extensions in (("video", VIDEO_EXTENSIONS), ("photo", IMAGE_EXTENSIONS)):
        paths = sorted((p for p in folder.rglob("*") if p.suffix.lower() in extensions),
                       key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
        held_out = max(1, round(len(paths) / 10)) if len(paths) > 1 else 0
        found += [Source(str(p), kind, f"folder {folder}", licence, "user-supplied",
                         "val" if i < held_out else "train") for i, p in enumerate(paths)]
    return found


def _open_photo(source: Source) -> Image.Image:
    """A photo source is a file, a wallpaper folder whose largest image is used, or an Eet archive
    (.edj) whose largest embedded JPEG is used."""
    path = Path(source.path)
    if path.is_dir():
        images = [p for p in (path / "contents" / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        return Image.open(max(images, key=lambda p: Image.open(p).size[0] * Image.open(p).size[1]))
    if path.suffix == ".edj":
        return _largest_embedded_jpeg(path.read_bytes())
    return Image.open(path)


def _largest_embedded_jpeg(data: bytes) -> Image.Image:
    """The largest JPEG stored whole inside an archive: each JPEG starts with FF D8 FF."""
    best = None
    start = data.find(b"\xff\xd8\xff")
    while start >= 0:
        try:
            image = Image.open(io.BytesIO(data[start:]))
            image.load()
            if best is None or image.width * image.height > best.width * best.height:
                best = image
        except OSError:
            pass
        start = data.find(b"\xff\xd8\xff", start + 3)
    if best is None:
        raise ValueError("no embedded JPEG found")
    return best


def _segments(first: int, stop: int) -> list[tuple[int, int]]:
    """Frame ranges to keep of a source's frames [first, stop): all of them up to VIDEO_MAX_FRAMES,
    else segments of SEGMENT_FRAMES spread evenly."""
    if stop - first <= VIDEO_MAX_FRAMES:
        return [(first, stop)]
    count = VIDEO_MAX_FRAMES // SEGMENT_FRAMES
    starts = [first + round(i * (stop - first - SEGMENT_FRAMES) / (count - 1)) for i in range(count)]
    return [(s, s + SEGMENT_FRAMES) for s in starts]


def _resized(image: Image.Image, scale: float) -> Image.Image:
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS)


def _unique_id(source: Source, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in source.name)
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def build_pack(sources: list[Source], out: Path, log: Callable[[str], None] = print) -> dict:
    """Write every source into the pack folder `out`; returns the index."""
    out.mkdir(parents=True, exist_ok=True)
    index: dict = {"format": PACK_FORMAT, "version": PACK_VERSION, "videos": [], "photos": []}
    taken: set[str] = set()
    for source in sources:
        if not Path(source.path).exists():
            raise FileNotFoundError(f"{source.path} is missing; run scripts/install_data_sources.sh")
        item_id = _unique_id(source, taken)
        if source.kind == "video":
            for entry in _pack_video(source, item_id, out, taken):
                index["videos"].append(entry)
                log(f"video {entry['id']}: {entry['frames']} frames from {entry['first_frame']}, "
                    f"{entry['original_size'][0]}x{entry['original_size'][1]} x {entry['scale']:.3f}, "
                    f"{source.split}")
        else:
            image = _open_photo(source).convert("RGB")
            if source.crop:
                image = image.crop(source.crop)
            scale = min(1.0, PHOTO_LONG_SIDE / max(image.size))
            (out / "photos").mkdir(exist_ok=True)
            _resized(image, scale).save(out / "photos" / f"{item_id}.webp", quality=WEBP_QUALITY)
            entry = {"id": item_id, **asdict(source)}
            entry.update(original_size=list(image.size), scale=scale, file=f"photos/{item_id}.webp")
            index["photos"].append(entry)
            log(f"photo {item_id}: {image.width}x{image.height} x {scale:.3f}, {source.split}")
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (out / "files.md").write_text(file_table(index))
    return index


def _pack_video(source: Source, item_id: str, out: Path, taken: set[str]) -> list[dict]:
    """Write a video source's kept frames as one pack video per segment; returns their index entries."""
    from onedva_codec.video.io import VideoReader  # PyAV: only needed to build

    with VideoReader(source.path) as reader:
        info = reader.info
        first, stop = source.frames or (0, info.frames_hint or VIDEO_MAX_FRAMES)
        segments = _segments(first, stop)
        left, top, right, bottom = source.crop or (0, 0, info.width, info.height)
        scale = min(1.0, VIDEO_SHORT_SIDE / min(right - left, bottom - top))
        entries, written = [], 0
        for number, frame in enumerate(reader.frames()):
            inside = [i for i, (a, b) in enumerate(segments) if a <= number < b]
            if number >= segments[-1][1]:
                break
            if not inside:
                continue
            segment = inside[0]
            if segment == len(entries):
                name = item_id if len(segments) == 1 else f"{item_id}-s{segment}"
                taken.add(name)
                folder = out / "videos" / name
                folder.mkdir(parents=True, exist_ok=True)
                entries.append({"id": name, **asdict(source), "first_frame": number, "frames": 0,
                                "fps": [info.fps.numerator, info.fps.denominator],
                                "original_size": [right - left, bottom - top], "scale": scale,
                                "folder": f"videos/{name}"})
                written = 0
            image = Image.fromarray(frame[top:bottom, left:right])
            _resized(image, scale).save(out / entries[-1]["folder"] / f"{written:05d}.webp", quality=WEBP_QUALITY)
            written += 1
            entries[-1]["frames"] = written
    return entries


def file_table(index: dict) -> str:
    """Markdown table of every file in a pack: where it came from, its licence, its split."""
    lines = ["| split | kind | file | package | licence | credit | size used |", "|---|---|---|---|---|---|---|"]
    for kind in ("videos", "photos"):
        for e in sorted(index[kind], key=lambda e: (e["split"], e["path"])):
            w, h = e["original_size"]
            used = f"{round(w * e['scale'])}x{round(h * e['scale'])}"
            used += f", frames {e['first_frame']}-{e['first_frame'] + e['frames'] - 1}" if kind == "videos" else ""
            lines.append(f"| {e['split']} | {e['kind']} | `{e['path']}` | {e['package']} | {e['licence']} | "
                         f"{e['credit']} | {used} |")
    return "\n".join(lines) + "\n"


class Pack:
    """A built pack, decoded into memory one split at a time."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a training pack (no index.json); "
                                    "build one with `odva-train data`")
        self.index = json.loads(index_path.read_text())
        if self.index.get("format") != PACK_FORMAT or self.index.get("version") != PACK_VERSION:
            raise ValueError(f"{self.folder} is not an {PACK_FORMAT} v{PACK_VERSION} pack")

    def videos(self, split: str) -> list[np.ndarray]:
        """(T, H, W, 3) uint8 arrays, one per video of the split."""
        out = []
        for entry in self.index["videos"]:
            if entry["split"] == split:
                folder = self.folder / entry["folder"]
                frames = [np.array(Image.open(folder / f"{i:05d}.webp").convert("RGB"))
                          for i in range(entry["frames"])]
                out.append(np.stack(frames))
        return out

    def photos(self, split: str) -> list[np.ndarray]:
        return [np.array(Image.open(self.folder / e["file"]).convert("RGB"))
                for e in self.index["photos"] if e["split"] == split]


def write_heldout_clips(pack: Pack, out: Path, size: int) -> list[Path]:
    """The held-out videos, centre-cropped to size x size, as lossless FFV1 .mkv files for `odva bench`.

    These are the clips the project's quality bars are measured on: every frame of
    each held-out video, at the pack's resolution, so no rescaling enters the figures.
    """
    from fractions import Fraction

    from onedva_codec.video.io import VideoWriter

    out.mkdir(parents=True, exist_ok=True)
    entries = [e for e in pack.index["videos"] if e["split"] == "val"]
    written = []
    for entry, video in zip(entries, pack.videos("val")):
        h, w = video.shape[1:3]
        if min(h, w) < size:
            raise ValueError(f"held-out video {entry['id']} is {w}x{h}, smaller than {size}x{size}")
        top, left = (h - size) // 2, (w - size) // 2
        path = out / f"{entry['id']}-{size}.mkv"
        writer = VideoWriter(path, ".mkv", size, size, Fraction(*entry["fps"]))
        for frame in video[:, top:top + size, left:left + size]:
            writer.write(frame)
        writer.close()
        written.append(path)
    return written
