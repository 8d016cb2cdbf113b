"""The procedural demo corpus: real image files with ground truth, manifests, click logs, judgments.

``visearch demo-data --images N --days D --out DIR`` renders ``N`` good images with Pillow and numpy
and writes a complete landing folder (layout in ``DESIGN.md`` and the brief):

- ``images/ds=YYYY-MM-DD/<image_id>.<ext>``: mostly JPEG, some PNG, a few WebP and GIF.
  Each *item* (one procedurally drawn object: a shape family, a two-colour palette and a texture)
  appears as several *variants* (rotation, scale, position, colour shift, background, occlusion,
  random crop); a *group* is all variants of one item. Items belong to shape-family *categories*.
  A few images are *compositions*: two different items side by side (left and right halves of a
  ``2*size x size`` image), with both items and their pixel boxes in the truth (for crop queries).
- ``manifests/ds=…/uploads.jsonl``: the day's uploads; from the second day on also deletes,
  ``set_private``, ``set_public`` (of an image uploaded private) and upserts that replace an
  image's file (same id, a new variant of the same item, new file).
- ``clicks/ds=…/events.jsonl``: simulated search sessions. A user queries an image and is shown
  ~10 results: some of the query's group, maybe a composition holding its item, some of its
  category, the rest random, **in a uniformly random order** (a randomised experiment, so that
  ``CTR(p) / CTR(1)`` estimates the examination propensity). Each shown result is an impression;
  it is clicked with probability ``examination(p) * relevance(grade)``, where
  ``examination(p) = (1/p) ** eta``. Dwell time is longer for relevant clicks.
- ``judgments/judgments.csv``: graded relevance 0–5 (set ``demo``) of candidates for a sample of
  query images; ``labels/labels.csv``: a few human-label positives.
- ``demo_truth.json``: the ground truth (structure in :func:`generate_demo`).
- Deliberately bad inputs (truncated JPEG, zero-byte file, text named ``.jpg``, a PNG declaring
  100000x100000 pixels, a missing file, a duplicate image_id, malformed/missing-field/wrong-type
  manifest lines; malformed, missing-field, negative-position, duplicate and unknown-image click
  events) and legit-but-unusual images that must be accepted (CMYK JPEG, 16-bit PNG, palette PNG
  with transparency, animated GIF, EXIF-rotated JPEG), all listed in the truth.

``N`` counts the good images (those in ``truth["images"]``); bad records come on top of it.
Every random choice comes from a ``numpy`` generator keyed on ``(seed, stream, index)`` and no
clock is read, so one seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import datetime as dt
import functools
import io
import json
import logging
import shutil
import struct
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from visearch.core.config import load_settings
from visearch.core.storage import ObjectStore, open_store
from visearch.ingest.landing import file_uri

log = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("polygon", "ellipse", "star", "cross", "ring")
PATTERNS: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "gradient")
EXTENSIONS: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
JPEG_QUALITY = 90
TRUTH_VERSION = 1

# Click model: probability that an examined result of a given grade is clicked.
RELEVANCE_BY_GRADE: dict[int, float] = {5: 0.9, 4: 0.7, 3: 0.5, 2: 0.25, 0: 0.04}  # grade() never gives 1

# The bad inputs planted in manifests and click logs, in the order they are cycled through,
# with the quarantine reason we expect ingestion to give (a suggestion; ``kind`` is the fact).
BAD_MANIFEST_KINDS: dict[str, str] = {
    "truncated_jpeg": "decode_error",
    "zero_byte": "empty_file",
    "text_as_jpg": "not_an_image",
    "png_bomb": "too_many_pixels",
    "missing_file": "missing_file",
    "duplicate_image_id": "duplicate_image_id",
    "malformed_json": "malformed_json",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
}
BAD_CLICK_KINDS: dict[str, str] = {
    "malformed_json": "malformed_json",
    "missing_field": "missing_field",
    "negative_position": "invalid_position",
    "duplicate_event_id": "duplicate_event_id",
    "unknown_image": "unknown_image",
}
UNUSUAL_KINDS: tuple[str, ...] = (
    "cmyk_jpeg",
    "png_16bit",
    "palette_png_transparency",
    "animated_gif",
    "exif_rotated_jpeg",
)
UNUSUAL_FORMAT: dict[str, str] = {
    "cmyk_jpeg": "JPEG",
    "png_16bit": "PNG",
    "palette_png_transparency": "PNG",
    "animated_gif": "GIF",
    "exif_rotated_jpeg": "JPEG",
}
UNUSUAL_MODE: dict[str, str] = {
    "cmyk_jpeg": "CMYK",
    "png_16bit": "I;16",
    "palette_png_transparency": "P",
    "animated_gif": "P",
    "exif_rotated_jpeg": "RGB",
}
BOMB_SIDE = 100_000

# Random streams (first key after the seed) so every choice is independent of the others' order.
_S_ITEM, _S_RENDER, _S_PLAN, _S_ACTIONS, _S_CLICKS, _S_BAD, _S_JUDGE = range(1, 8)

FloatArray = npt.NDArray[np.float64]


def _rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """A generator keyed on (seed, stream, index…): independent of how many others were drawn."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, *index]))


def parse_ds(value: str) -> dt.date:
    """A ``YYYY-MM-DD`` date.

    Raises:
        ValueError: for anything else.
    """
    try:
        day = dt.date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected a YYYY-MM-DD date, got {value!r}") from exc
    if len(value) != 10:
        raise ValueError(f"expected a YYYY-MM-DD date, got {value!r}")
    return day


def propensities(positions: int, eta: float) -> dict[int, float]:
    """The planted examination probability of each position: ``(1/p) ** eta`` for p = 1..positions."""
    return {p: float((1.0 / p) ** eta) for p in range(1, positions + 1)}


# ----------------------------------------------------------------------------- items and rendering


@dataclass(frozen=True)
class ItemSpec:
    """How one item looks: a shape of its category, a two-colour palette and a texture."""

    item: int
    category: str
    pattern: str
    outer: tuple[tuple[float, float], ...]  # polygon in unit coordinates (radius <= 1)
    hole: tuple[tuple[float, float], ...]  # inner polygon cut out (rings), else empty
    colors: tuple[tuple[int, int, int], tuple[int, int, int]]
    frequency: float  # texture cycles per unit radius
    angle: float  # texture direction, radians


def _ellipse(aspect: float, points: int = 40) -> list[tuple[float, float]]:
    angles = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    return [(float(np.cos(a)), float(aspect * np.sin(a))) for a in angles]


def make_item(seed: int, item: int) -> ItemSpec:
    """The appearance of ``item`` for ``seed``; the category cycles so categories stay balanced."""
    rng = _rng(seed, _S_ITEM, item)
    category = CATEGORIES[item % len(CATEGORIES)]
    hole: list[tuple[float, float]] = []
    if category == "polygon":
        k = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=k)) if k > 3 else np.array([0.0, 2.1, 4.2])
        radii = rng.uniform(0.6, 1.0, size=k)
        outer = [(float(r * np.cos(a)), float(r * np.sin(a))) for a, r in zip(angles, radii, strict=True)]
    elif category == "ellipse":
        outer = _ellipse(float(rng.uniform(0.45, 1.0)))
    elif category == "star":
        k = int(rng.integers(5, 9))
        inner = float(rng.uniform(0.35, 0.6))
        angles = np.linspace(0.0, 2 * np.pi, 2 * k, endpoint=False)
        outer = [
            (float(r * np.cos(a)), float(r * np.sin(a)))
            for i, a in enumerate(angles)
            for r in [1.0 if i % 2 == 0 else inner]
        ]
    elif category == "cross":
        w = float(rng.uniform(0.25, 0.5))
        outer = [(-w, -1.0), (w, -1.0), (w, -w), (1.0, -w), (1.0, w), (w, w),
                 (w, 1.0), (-w, 1.0), (-w, w), (-1.0, w), (-1.0, -w), (-w, -w)]
    else:  # ring
        aspect = float(rng.uniform(0.7, 1.0))
        ratio = float(rng.uniform(0.4, 0.65))
        outer = _ellipse(aspect)
        hole = [(ratio * x, ratio * y) for x, y in _ellipse(aspect)]
    h0 = float(rng.uniform(0, 1))
    h1 = (h0 + float(rng.uniform(0.25, 0.75))) % 1.0
    colors = tuple(
        tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h, float(rng.uniform(0.6, 1.0)),
                                                               float(rng.uniform(0.6, 1.0))))
        for h in (h0, h1)
    )
    return ItemSpec(
        item=item,
        category=category,
        pattern=PATTERNS[int(rng.integers(0, len(PATTERNS)))],
        outer=tuple(outer),
        hole=tuple(hole),
        colors=colors,  # type: ignore[arg-type]
        frequency=float(rng.uniform(2.0, 5.0)),
        angle=float(rng.uniform(0, np.pi)),
    )


def _texture(spec: ItemSpec, u: FloatArray, v: FloatArray) -> FloatArray:
    """Mix weight of the second colour in [0, 1] at object coordinates (u, v): (H, W) -> (H, W)."""
    along: FloatArray = u * np.cos(spec.angle) + v * np.sin(spec.angle)
    f = spec.frequency
    out: FloatArray
    if spec.pattern == "solid":
        return np.zeros_like(u)
    if spec.pattern == "stripes":
        out = (np.sin(2 * np.pi * f * along) > 0).astype(np.float64)
        return out
    if spec.pattern == "checker":
        return ((np.floor(u * f) + np.floor(v * f)) % 2).astype(np.float64)
    if spec.pattern == "dots":
        du = (u * f) % 1.0 - 0.5
        dv = (v * f) % 1.0 - 0.5
        out = (du * du + dv * dv < 0.09).astype(np.float64)
        return out
    return np.clip((along + 1.0) / 2.0, 0.0, 1.0)  # gradient


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A plain, gradient or smooth-noise background of muted colours."""
    kind = int(rng.integers(0, 3))

    def muted() -> FloatArray:
        grey = rng.uniform(40, 215)
        return np.clip(grey + rng.normal(0, 25, size=3), 0, 255)

    if kind == 0:
        return Image.new("RGB", (width, height), tuple(int(c) for c in muted()))
    if kind == 1:
        a, b = muted(), muted()
        theta = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width]  # (H, W) each
        t = (xs * np.cos(theta) + ys * np.sin(theta)) / max(width, height)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
        pixels = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]  # (H, W, 3)
        return Image.fromarray(pixels.astype(np.uint8))
    coarse = np.clip(rng.uniform(40, 215) + rng.normal(0, 35, size=(4, 4, 3)), 0, 255)  # (4, 4, 3)
    return Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[FloatArray, FloatArray]:
    """Pixel row and column coordinates, (H, W) each (cached: every image of a size shares them)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def render_item(
    spec: ItemSpec,
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    canonical: bool = False,
) -> Image.Image:
    """Draw one variant of ``spec`` as an RGB ``width x height`` image.

    The canonical variant is the plain view (centred, upright, grey background); the others get a
    random rotation, scale, offset, colour shift, background, occlusion (35 %) and crop (50 %).
    Drawn at twice the size and reduced, for smooth edges.
    """
    ss = 2
    w2, h2 = width * ss, height * ss
    side = min(w2, h2)
    if canonical:
        theta, scale, cx, cy = 0.0, 0.8, w2 / 2, h2 / 2
        gains = np.ones(3)
        background = Image.new("RGB", (w2, h2), (128, 128, 128))
    else:
        theta = float(rng.uniform(0, 2 * np.pi))
        scale = float(rng.uniform(0.55, 0.95))
        slack_x = (w2 - scale * side) / 2
        slack_y = (h2 - scale * side) / 2
        cx = w2 / 2 + float(rng.uniform(-0.8, 0.8)) * slack_x
        cy = h2 / 2 + float(rng.uniform(-0.8, 0.8)) * slack_y
        gains = rng.uniform(0.8, 1.2, size=3)
        background = _background(rng, w2, h2)
    radius = scale * side / 2
    cos_t, sin_t = np.cos(theta), np.sin(theta)

    def to_pixels(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(cx + radius * (x * cos_t - y * sin_t), cy + radius * (x * sin_t + y * cos_t))
                for x, y in points]

    mask = Image.new("L", (w2, h2), 0)
    draw = ImageDraw.Draw(mask)
    draw.polygon(to_pixels(spec.outer), fill=255)
    if spec.hole:
        draw.polygon(to_pixels(spec.hole), fill=0)

    ys, xs = _grid(h2, w2)  # (H2, W2) each
    dx, dy = (xs - cx) / radius, (ys - cy) / radius
    u = dx * cos_t + dy * sin_t  # inverse rotation: the texture turns with the object
    v = -dx * sin_t + dy * cos_t
    t = _texture(spec, u, v)[..., None]  # (H2, W2, 1)
    c0 = np.array(spec.colors[0], dtype=np.float64)
    c1 = np.array(spec.colors[1], dtype=np.float64)
    pixels = (c0 * (1 - t) + c1 * t) * gains  # (H2, W2, 3)
    foreground = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image = Image.composite(foreground, background, mask)

    box: tuple[float, float, float, float] = (0.0, 0.0, float(w2), float(h2))
    if not canonical:
        if rng.uniform() < 0.35:  # occlusion: a rectangle over part of the object
            ow, oh = rng.uniform(0.5, 0.9, size=2) * radius
            direction = rng.uniform(0, 2 * np.pi)
            reach = rng.uniform(0.3, 0.8) * radius
            ox, oy = cx + reach * np.cos(direction), cy + reach * np.sin(direction)
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            ImageDraw.Draw(image).rectangle((ox - ow / 2, oy - oh / 2, ox + ow / 2, oy + oh / 2), fill=colour)
        if rng.uniform() < 0.5:  # random crop, same aspect ratio
            frac = float(rng.uniform(0.7, 0.95))
            cw, ch = frac * w2, frac * h2
            x0, y0 = float(rng.uniform(0, w2 - cw)), float(rng.uniform(0, h2 - ch))
            box = (x0, y0, x0 + cw, y0 + ch)
    return image.resize((width, height), Image.Resampling.BOX, box=box)


def _quantize(image: Image.Image, colors: int = 128) -> Image.Image:
    return image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def encode(image: Image.Image, fmt: str) -> bytes:
    """Encode an RGB image with fixed settings (deterministic bytes).

    Raises:
        ValueError: for a format other than JPEG, PNG, WEBP or GIF.
    """
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, "JPEG", quality=JPEG_QUALITY)
    elif fmt == "PNG":
        image.save(buf, "PNG", compress_level=6)
    elif fmt == "WEBP":
        image.save(buf, "WEBP", quality=85, method=4)
    elif fmt == "GIF":
        _quantize(image).save(buf, "GIF")
    else:
        raise ValueError(f"unsupported demo format {fmt!r}")
    return buf.getvalue()


def encode_unusual(kind: str, image: Image.Image, extra_frames: Sequence[Image.Image] = ()) -> bytes:
    """Encode a legit but unusual file of ``kind`` (see ``UNUSUAL_KINDS``).

    For ``exif_rotated_jpeg`` ``image`` is the upright view; the file stores it turned 90° counter-
    clockwise with EXIF orientation 6, so ``ImageOps.exif_transpose`` gives ``image`` back.

    Raises:
        ValueError: for an unknown kind.
    """
    buf = io.BytesIO()
    if kind == "cmyk_jpeg":
        image.convert("CMYK").save(buf, "JPEG", quality=JPEG_QUALITY)
    elif kind == "png_16bit":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257  # (H, W) 8 -> 16 bit
        Image.fromarray(grey).save(buf, "PNG")  # mode I;16
    elif kind == "palette_png_transparency":
        pal = _quantize(image, 64)
        index = pal.getpixel((0, 0))  # the corner (background) colour becomes transparent
        pal.save(buf, "PNG", transparency=index)
    elif kind == "animated_gif":
        frames = [_quantize(f) for f in (image, *extra_frames)]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    elif kind == "exif_rotated_jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
        stored = image.transpose(Image.Transpose.ROTATE_90)  # (W, H) -> (H, W), turned back by readers
        stored.save(buf, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    else:
        raise ValueError(f"unknown unusual image kind {kind!r}")
    return buf.getvalue()


def png_bomb(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A tiny PNG whose header declares ``width x height`` RGB pixels (a decompression bomb).

    Hand-made chunks with valid CRCs: IHDR, one IDAT holding a single compressed row, IEND.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    row = zlib.compress(b"\x00" + b"\x00" * (3 * width), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- the plan


@dataclass
class _Image:
    """One good image as planned: what it shows and when it lands."""

    serial: int  # render key
    items: tuple[int, ...]  # one item, or two for a composition (left, right)
    day: int
    second: int  # upload time, seconds after midnight
    fmt: str
    unusual: str | None = None
    image_id: str = ""
    variant: int | None = None
    private: bool = False
    uploaded_private: bool = False
    deleted: bool = False
    replaced_ds: str | None = None
    path: str = ""
    width: int = 0
    height: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    owner: str = ""
    mode: str = "RGB"  # Pillow mode of the file as opened

    @property
    def is_composition(self) -> bool:
        return len(self.items) == 2


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate_demo` wrote."""

    out: str
    images: int
    items: int
    compositions: int
    days: int
    per_day: dict[str, dict[str, int]]
    bad_manifest_records: int
    bad_click_records: int
    unusual_images: int
    sessions: int
    impressions: int
    clicks: int
    judgments: int
    labels: int
    seconds: float
    bad_kinds: dict[str, int] = field(default_factory=dict)  # "manifest:png_bomb" -> count

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able)."""
        return dict(self.__dict__)


def _iso(day: dt.date, second: float) -> str:
    stamp = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC) + dt.timedelta(seconds=int(second))
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _manifest_line(image_id: str, uri: str, owner: str, ts: str, tags: list[str], private: bool,
                   action: str) -> dict[str, Any]:
    return {"image_id": image_id, "uri": uri, "owner_id": owner, "upload_ts": ts, "tags": tags,
            "is_private": private, "action": action}


def grade(q_items: tuple[int, ...], c_items: tuple[int, ...], specs: dict[int, ItemSpec]) -> int:
    """Graded relevance 0–5 of a candidate for a query, from the items each shows.

    5: the same item (or the same pair of items); 4: the candidate is a composition that holds the
    query's item; 3: the query is a composition and the candidate one of its items, or two
    compositions share one item, or another item of the same category and texture pattern;
    2: another item of the same category; 0: otherwise.
    """
    shared = set(q_items) & set(c_items)
    if set(q_items) == set(c_items):
        return 5
    if shared:
        return 4 if len(q_items) == 1 else 3
    best = 0
    for a in q_items:
        for b in c_items:
            if specs[a].category == specs[b].category:
                best = max(best, 3 if specs[a].pattern == specs[b].pattern else 2)
    return best


class _Sink:
    """Where files go: a local folder written directly, or any object store (``s3://``)."""

    def __init__(self, out: str | Path) -> None:
        text = str(out)
        if text.startswith(("s3://", "s3a://")):
            self.store: ObjectStore | None = open_store(text)
            self.local: Path | None = None
            self.root = self.store.root
        else:
            local = unquote(urlparse(text).path) if text.startswith("file://") else text
            path = Path(local).expanduser().resolve()
            self.store, self.local, self.root = None, path, file_uri(path)

    def uri(self, key: str) -> str:
        if self.local is not None:
            return file_uri(self.local / key)
        assert self.store is not None
        return self.store.uri(key)

    def put(self, key: str, data: bytes) -> None:
        if self.local is not None:
            target = self.local / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:
            assert self.store is not None
            self.store.put_bytes(key, data)

    def prepare(self) -> None:
        """Clear a previous demo here; refuse a non-empty folder that is not one.

        Raises:
            ValueError: when the destination holds other files.
        """
        prefixes = ("images/", "manifests/", "clicks/", "judgments/", "labels/")
        if self.local is not None:
            if not self.local.exists():
                return
            if not any(self.local.iterdir()):
                return
            if not (self.local / "demo_truth.json").is_file():
                raise ValueError(f"refusing to write demo data into {self.local}: it is not empty and "
                                 "holds no demo_truth.json (not made by demo-data)")
            for prefix in prefixes:
                shutil.rmtree(self.local / prefix.rstrip("/"), ignore_errors=True)
            (self.local / "demo_truth.json").unlink()
            return
        assert self.store is not None
        keys = self.store.list("")
        if not keys:
            return
        if "demo_truth.json" not in keys:
            raise ValueError(f"refusing to write demo data into {self.root}: it is not empty and holds "
                             "no demo_truth.json (not made by demo-data)")
        for prefix in prefixes:
            self.store.delete_prefix(prefix)
        self.store.delete("demo_truth.json")


def _split_counts(total: int, parts: int) -> list[int]:
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


@dataclass
class _Run:
    """What every stage of one demo generation shares."""

    seed: int
    size: int
    ds_list: list[str]
    dates: list[dt.date]
    specs: dict[int, ItemSpec]
    sink: _Sink
    n_owners: int

    @property
    def days(self) -> int:
        return len(self.ds_list)


def _plan_images(run: _Run, images: int) -> list[_Image]:
    """Decide every good image: items or composition pair, unusual kind, format, day, id, privacy."""
    plan = _rng(run.seed, _S_PLAN)
    n_items = len(run.specs)
    n_comp = max(2, round(0.08 * images))
    n_single = images - n_comp
    single_items = [i % n_items for i in range(2 * n_items)]  # every item at least twice
    single_items += [int(x) for x in plan.integers(0, n_items, size=max(0, n_single - len(single_items)))]
    single_items = single_items[:n_single]
    fmt_choices = plan.choice(4, size=n_single, p=[0.85, 0.09, 0.03, 0.03])
    formats = [("JPEG", "PNG", "WEBP", "GIF")[int(c)] for c in fmt_choices]
    formats[0], formats[1], formats[2] = "PNG", "WEBP", "GIF"  # each format at least once
    plan.shuffle(formats)  # type: ignore[arg-type]
    planned = [_Image(serial=0, items=(item,), day=0, second=0, fmt=fmt)
               for item, fmt in zip(single_items, formats, strict=True)]
    for _ in range(n_comp):
        a, b = (int(x) for x in plan.choice(n_items, size=2, replace=False))
        planned.append(_Image(serial=0, items=(a, b), day=0, second=0, fmt="JPEG"))
    singles_idx = [i for i, p in enumerate(planned) if not p.is_composition]
    chosen = plan.choice(singles_idx, size=len(UNUSUAL_KINDS), replace=False)
    for kind, idx in zip(UNUSUAL_KINDS, chosen, strict=True):
        planned[int(idx)].unusual = kind
        planned[int(idx)].fmt = UNUSUAL_FORMAT[kind]
    day_of = np.repeat(np.arange(run.days), _split_counts(images, run.days))
    plan.shuffle(day_of)
    for p, day in zip(planned, day_of, strict=True):
        p.day = int(day)
        p.second = int(plan.integers(0, 43_200))  # uploads land before noon, sessions after
    planned.sort(key=lambda p: (p.day, p.second, p.items))
    variants: Counter[int] = Counter()
    for serial, p in enumerate(planned):
        p.serial = serial
        p.image_id = f"demo-{serial:06d}"
        if not p.is_composition:
            p.variant = variants[p.items[0]]
            variants[p.items[0]] += 1
        p.path = f"images/ds={run.ds_list[p.day]}/{p.image_id}.{EXTENSIONS[p.fmt]}"
        p.owner = f"owner-{int(plan.integers(0, run.n_owners)):03d}"
        if plan.uniform() < 0.5:
            p.tags = sorted({run.specs[i].category for i in p.items})
    plain = [p for p in planned if not p.is_composition and p.unusual is None]
    for idx in plan.choice(len(plain), size=max(1, round(0.03 * images)), replace=False):
        plain[int(idx)].private = plain[int(idx)].uploaded_private = True
    return planned


_DayRecords = list[list[tuple[int, dict[str, Any]]]]  # per day: (second of day, manifest record)


def _render_all(run: _Run, planned: list[_Image], progress: bool | None) -> None:
    """Render, encode and write every planned image; record its size and mode."""
    from tqdm import tqdm

    for p in tqdm(planned, desc="render", unit="img", disable=None if progress is None else not progress):
        data, p.mode, p.width, p.height = _render_planned(p, run.specs, _rng(run.seed, _S_RENDER, p.serial),
                                                          run.size)
        p.history.append({"ds": run.ds_list[p.day], "action": "upsert", "is_private": p.private})
        run.sink.put(p.path, data)


def _apply_actions(
    run: _Run, planned: list[_Image], images: int
) -> tuple[_DayRecords, list[dict[str, tuple[bool, bool]]]]:
    """Uploads and, from the second day on, deletes, set_private, replacing upserts and set_public.

    Returns the good manifest records of each day as (second of day, record) and the state of
    every landed image after each day: image_id -> (private, deleted).
    """
    sink = run.sink
    records: _DayRecords = [[] for _ in range(run.days)]
    for p in planned:
        records[p.day].append((p.second, _manifest_line(
            p.image_id, sink.uri(p.path), p.owner, _iso(run.dates[p.day], p.second), p.tags, p.private,
            "upsert")))
    variants = Counter(p.items[0] for p in planned if not p.is_composition)
    n_actions = max(1, images // 250)
    touched: set[str] = set()
    replacement_serial = len(planned)
    states: list[dict[str, tuple[bool, bool]]] = []
    for day in range(run.days):
        arng = _rng(run.seed, _S_ACTIONS, day)
        ds = run.ds_list[day]
        if day >= 1:
            pool = [p for p in planned if p.day < day and not p.deleted and not p.private
                    and not p.is_composition and p.unusual is None and p.image_id not in touched]
            chosen = [pool[int(i)] for i in arng.permutation(len(pool))[: 3 * n_actions]]
            for k, p in enumerate(chosen):
                second = int(arng.integers(0, 43_200))
                touched.add(p.image_id)
                action = ("delete", "set_private", "replace")[k % 3]
                if action == "delete":
                    p.deleted = True
                elif action == "set_private":
                    p.private = True
                else:  # a new variant of the same item in a new file, same id
                    item = p.items[0]
                    p.variant = variants[item]
                    variants[item] += 1
                    image = render_item(run.specs[item], _rng(run.seed, _S_RENDER, replacement_serial),
                                        run.size, run.size)
                    replacement_serial += 1
                    p.fmt, p.mode, p.width, p.height = "JPEG", "RGB", run.size, run.size
                    p.path = f"images/ds={ds}/{p.image_id}.r{day}.jpg"
                    p.replaced_ds = ds
                    sink.put(p.path, encode(image, "JPEG"))
                    action = "upsert"
                records[day].append((second, _manifest_line(
                    p.image_id, sink.uri(p.path), p.owner, _iso(run.dates[day], second), p.tags, p.private,
                    action)))
                p.history.append({"ds": ds, "action": action, "is_private": p.private})
            hidden = [p for p in planned if p.day < day and p.uploaded_private and p.private
                      and not p.deleted and p.image_id not in touched]
            if hidden:
                p = hidden[int(arng.integers(0, len(hidden)))]
                touched.add(p.image_id)
                p.private = False
                second = int(arng.integers(0, 43_200))
                records[day].append((second, _manifest_line(
                    p.image_id, sink.uri(p.path), p.owner, _iso(run.dates[day], second), p.tags, False,
                    "set_public")))
                p.history.append({"ds": ds, "action": "set_public", "is_private": False})
        states.append({p.image_id: (p.private, p.deleted) for p in planned if p.day <= day})
    return records, states


def _bad_manifest_line(run: _Run, b: int, kind: str,
                       day_records: _DayRecords) -> tuple[int, str, dict[str, Any]]:
    """Plant bad manifest record number ``b`` of ``kind`` (writing its file, if it has one).

    Returns (day, line text, bad-record entry without its line number).
    """
    brng = _rng(run.seed, _S_BAD, 0, b)
    day = int(brng.integers(0, run.days))
    sink, size = run.sink, run.size
    bad_id = f"demo-bad-{b:03d}"
    key = f"images/ds={run.ds_list[day]}/{bad_id}.{'png' if kind == 'png_bomb' else 'jpg'}"
    ts = _iso(run.dates[day], int(brng.integers(0, 43_200)))
    owner = f"owner-{int(brng.integers(0, run.n_owners)):03d}"
    record = _manifest_line(bad_id, sink.uri(key), owner, ts, [], False, "upsert")
    record_id: str | None = bad_id
    path: str | None = key
    if kind == "truncated_jpeg":
        full = encode(render_item(run.specs[int(brng.integers(0, len(run.specs)))], brng, size, size), "JPEG")
        scan = full.index(b"\xff\xda")  # start of scan: keep the headers, cut the pixels in half
        sink.put(key, full[: scan + (len(full) - scan) // 2])
    elif kind == "zero_byte":
        sink.put(key, b"")
    elif kind == "text_as_jpg":
        sink.put(key, b"This is a text file with a .jpg name, not an image.\n")
    elif kind == "png_bomb":
        sink.put(key, png_bomb())
    elif kind == "wrong_type":  # a valid image; the line's is_private is a string
        sink.put(key, encode(render_item(run.specs[int(brng.integers(0, len(run.specs)))], brng, size, size),
                             "JPEG"))
        record["is_private"] = "yes"
    elif kind == "missing_field":
        del record["uri"]
        path = None
    elif kind == "malformed_json":
        record_id, path = None, None
    elif kind == "duplicate_image_id":  # the exact record of a good upload of that day, again
        ups = [r for _, r in sorted(day_records[day], key=lambda x: (x[0], x[1]["image_id"]))
               if r["action"] == "upsert"]
        record = ups[int(brng.integers(0, len(ups)))]
        record_id, path = record["image_id"], None
    elif kind != "missing_file":
        raise ValueError(f"unknown bad manifest kind {kind!r}")
    text = json.dumps(record)
    if kind == "malformed_json":
        text = text[:-25]  # cut mid-object
    return day, text, {"source": "manifest", "ds": run.ds_list[day], "record_id": record_id, "kind": kind,
                       "expected_reason": BAD_MANIFEST_KINDS[kind], "path": path}


def _insert_bad(lines: list[str], text: str, lo: int, pick: int) -> int:
    """Insert ``text`` at a position in ``[lo, len(lines)]`` chosen by ``pick``; return the position."""
    pos = lo + pick % (len(lines) - lo + 1)
    lines.insert(pos, text)
    return pos


def _write_manifests(run: _Run, day_records: _DayRecords, n_bad: int
                     ) -> tuple[list[dict[str, Any]], list[int]]:
    """Write each day's ``uploads.jsonl`` with the bad lines planted; return the bad records
    (with 1-based line numbers) and the line count of each day."""
    kinds = list(BAD_MANIFEST_KINDS)
    planted: list[list[tuple[int, str, dict[str, Any]]]] = [[] for _ in range(run.days)]
    for b in range(n_bad):
        kind = kinds[b % len(kinds)]
        day, text, bad = _bad_manifest_line(run, b, kind, day_records)
        planted[day].append((int(_rng(run.seed, _S_BAD, 3, b).integers(0, 1 << 30)), text, bad))
    bad_records: list[dict[str, Any]] = []
    line_counts: list[int] = []
    for day in range(run.days):
        lines = [json.dumps(r) for _, r in sorted(day_records[day], key=lambda x: (x[0], x[1]["image_id"]))]
        markers: list[dict[str, Any] | None] = [None] * len(lines)
        for pick, text, bad in planted[day]:
            lo = lines.index(text) + 1 if bad["kind"] == "duplicate_image_id" else 0  # after the original
            markers.insert(_insert_bad(lines, text, lo, pick), bad)
        bad_records += [{**m, "line": n} for n, m in enumerate(markers, start=1) if m is not None]
        line_counts.append(len(lines))
        key = f"manifests/ds={run.ds_list[day]}/uploads.jsonl"
        run.sink.put(key, "".join(t + "\n" for t in lines).encode())
    return bad_records, line_counts


_EVENT_KEYS = ("event_id", "user_id", "session_id", "query_image_id", "image_id", "position", "event_type",
               "ts", "dwell_ms")


def _simulate_day(run: _Run, day: int, visible: list[_Image], n_sessions: int, k: int,
                  prop: dict[int, float], n_users: int) -> list[dict[str, Any]]:
    """The good click-log events of one day, in time order, from ``n_sessions`` search sessions."""
    crng = _rng(run.seed, _S_CLICKS, day)
    ds_compact = run.ds_list[day].replace("-", "")
    by_item: dict[int, list[_Image]] = defaultdict(list)
    for p in visible:
        for it in p.items:
            by_item[it].append(p)
    categories = _CategoryPools(visible, run.specs)
    queryable = [p for p in visible if not p.is_composition and len(by_item[p.items[0]]) >= 2]
    events: list[tuple[int, dict[str, Any]]] = []  # (ms of day, event)
    for s in range(n_sessions if len(visible) >= 2 else 0):
        if queryable and crng.uniform() < 0.85:
            query = queryable[int(crng.integers(0, len(queryable)))]
        else:
            query = visible[int(crng.integers(0, len(visible)))]
        shown = _candidates(query, visible, by_item, categories, crng, k)
        crng.shuffle(shown)  # type: ignore[arg-type]  # random order: position independent of relevance
        start_ms = int(crng.integers(43_200_000, 85_800_000))
        user = f"user-{int(crng.integers(0, n_users)):04d}"
        session = f"s-{ds_compact}-{s:05d}"
        for position, cand in enumerate(shown, start=1):
            g = grade(query.items, cand.items, run.specs)
            base = {"user_id": user, "session_id": session, "query_image_id": query.image_id,
                    "image_id": cand.image_id, "position": position}
            events.append((start_ms, {**base, "event_type": "impression", "dwell_ms": 0}))
            if crng.uniform() < prop[position] * RELEVANCE_BY_GRADE[g]:
                mean = 15_000.0 if g >= 4 else 3_000.0
                dwell = int(min(600_000, crng.lognormal(np.log(mean), 0.5)))
                click_ms = start_ms + 1500 * position + int(crng.integers(0, 3000))
                events.append((click_ms, {**base, "event_type": "click", "dwell_ms": dwell}))
    events.sort(key=lambda e: e[0])  # stable: a session's events keep their order
    day_start = dt.datetime.combine(run.dates[day], dt.time(0, 0), tzinfo=dt.UTC)
    out: list[dict[str, Any]] = []
    for n, (ms, ev) in enumerate(events):
        stamp = day_start + dt.timedelta(milliseconds=ms)
        ev = {**ev, "event_id": f"ev-{ds_compact}-{n:07d}",
              "ts": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"}
        out.append({key: ev[key] for key in _EVENT_KEYS})
    return out


def _plant_bad_clicks(run: _Run, day: int, records: list[dict[str, Any]], lines: list[str],
                      bad_numbers: list[int]) -> list[dict[str, Any]]:
    """Insert the bad click lines numbered ``bad_numbers`` into ``lines``; return their records."""
    kinds = list(BAD_CLICK_KINDS)
    markers: list[dict[str, Any] | None] = [None] * len(lines)
    for b in bad_numbers:
        kind = kinds[b % len(kinds)]
        brng = _rng(run.seed, _S_BAD, 2, b)
        template = dict(records[int(brng.integers(0, len(records)))])
        template["event_id"] = f"ev-bad-{b:04d}"
        record_id: str | None = template["event_id"]
        lo = 0
        if kind == "malformed_json":
            text, record_id = json.dumps(template)[:-20], None
        elif kind == "missing_field":
            del template["event_type"]
            text = json.dumps(template)
        elif kind == "negative_position":
            template["position"] = -int(brng.integers(1, 4))
            text = json.dumps(template)
        elif kind == "unknown_image":
            template.update(image_id=f"demo-unknown-{b:04d}", event_type="impression", dwell_ms=0)
            text = json.dumps(template)
        elif kind == "duplicate_event_id":  # the exact line of an earlier good event, again
            i = int(brng.integers(0, len(lines)))
            while markers[i] is not None:
                i = (i + 1) % len(lines)
            text = lines[i]
            record_id = json.loads(text)["event_id"]
            lo = i + 1
        else:
            raise ValueError(f"unknown bad click kind {kind!r}")
        pos = _insert_bad(lines, text, lo, int(brng.integers(0, 1 << 30)))
        markers.insert(pos, {"source": "clicks", "ds": run.ds_list[day], "record_id": record_id, "kind": kind,
                             "expected_reason": BAD_CLICK_KINDS[kind], "path": None})
    return [{**m, "line": n} for n, m in enumerate(markers, start=1) if m is not None]


def _write_csv(sink: _Sink, key: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    sink.put(key, buf.getvalue().encode())


def generate_demo(
    out: str | Path,
    images: int,
    days: int,
    seed: int = 0,
    size: int = 64,
    start_ds: str = "2026-01-01",
    bad_share: float = 0.02,
    *,
    sessions_per_day: int | None = None,
    results_per_query: int = 10,
    eta: float = 1.0,
    progress: bool | None = None,
) -> DemoSummary:
    """Write the demo landing folder at ``out`` (a local path, ``file://`` or ``s3://`` URI).

    ``images`` good images over ``days`` days; ``sessions_per_day`` search sessions a day
    (default ``max(10, 2 * images // days)``); shown lists of ``results_per_query``; click
    examination ``(1/p) ** eta``; bad records: ``max(9, bad_share * images)`` manifest lines and
    ``max(5, bad_share * sessions)`` click lines (none when ``bad_share`` is 0). A previous demo at
    ``out`` is replaced; any other non-empty destination is refused. ``progress``: tqdm bar
    (``None``: only on a terminal).

    ``demo_truth.json`` holds::

        {"version": 1, "seed", "size", "start_ds", "days", "ds_list": [ds…],
         "images": {image_id: {"item": int|null, "category": str|null, "pattern": str|null,
                    "variant": int|null, "day": int, "ds": str, "format": "JPEG"|"PNG"|"WEBP"|"GIF",
                    "mode": Pillow mode as opened, "width", "height" (as displayed, after EXIF),
                    "unusual": kind|null, "composition": [{"item", "category", "box": [x, y, w, h]}]|null,
                    "private": bool, "deleted": bool (final state), "uploaded_private": bool,
                    "replaced_ds": ds|null, "path": key under out, "uri": final file URI,
                    "owner_id", "history": [{"ds", "action", "is_private"}]}},
         "items": {item: {"category", "pattern"}}, "groups": {item: [image_id…]},
         "categories": [...], "propensity": {"1": 1.0, "2": 0.5, …}, "eta": float,
         "click_model": {...}, "grades": {...},
         "bad_records": [{"source": "manifest"|"clicks", "ds", "line" (1-based), "record_id":
                          image_id|event_id|null, "kind", "expected_reason", "path": key|null}],
         "unusual_images": [{"image_id", "kind", "format", "mode"}],
         "counts": {ds: {...}}, "totals": {...}}

    Raises:
        ValueError: for a bad argument (the value is in the message) or a non-empty destination
            that holds no previous demo.
    """
    started = time.perf_counter()
    if images < 12:
        raise ValueError(f"images must be at least 12 (items need variants), got {images}")
    if days < 1 or days > images // 2:
        raise ValueError(f"days must be between 1 and images/2 ({images // 2}), got {days}")
    if not 16 <= size <= 1024:
        raise ValueError(f"size must be between 16 and 1024 pixels, got {size}")
    if not 0.0 <= bad_share < 0.5:
        raise ValueError(f"bad_share must be in [0, 0.5), got {bad_share}")
    if results_per_query < 2:
        raise ValueError(f"results_per_query must be at least 2, got {results_per_query}")
    if sessions_per_day is not None and sessions_per_day < 1:
        raise ValueError(f"sessions_per_day must be at least 1, got {sessions_per_day}")
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta}")
    start = parse_ds(start_ds)
    dates = [start + dt.timedelta(days=d) for d in range(days)]
    n_sessions = sessions_per_day if sessions_per_day is not None else max(10, 2 * images // days)
    n_items = max(2, (images - max(2, round(0.08 * images))) // 5)
    sink = _Sink(out)
    sink.prepare()
    specs = {i: make_item(seed, i) for i in range(n_items)}
    run = _Run(seed=seed, size=size, ds_list=[d.isoformat() for d in dates], dates=dates, specs=specs,
               sink=sink, n_owners=max(3, images // 20))

    planned = _plan_images(run, images)
    _render_all(run, planned, progress)
    by_id = {p.image_id: p for p in planned}
    day_records, states = _apply_actions(run, planned, images)
    n_bad = 0 if bad_share == 0 else max(len(BAD_MANIFEST_KINDS), round(bad_share * images))
    bad_records, manifest_lines = _write_manifests(run, day_records, n_bad)

    prop = propensities(results_per_query, eta)
    n_bad_clicks = 0 if bad_share == 0 else max(len(BAD_CLICK_KINDS), round(bad_share * n_sessions * days))
    visible_by_day = [sorted((by_id[i] for i, (priv, dele) in states[day].items() if not priv and not dele),
                             key=lambda p: p.serial) for day in range(days)]
    click_days = [day for day in range(days) if len(visible_by_day[day]) >= 2]  # days with sessions
    bad_click_days: dict[int, list[int]] = defaultdict(list)
    for b in range(n_bad_clicks if click_days else 0):
        bad_click_days[click_days[int(_rng(seed, _S_BAD, 1, b).integers(0, len(click_days)))]].append(b)
    counts: dict[str, dict[str, int]] = {}
    for day, ds in enumerate(run.ds_list):
        records = _simulate_day(run, day, visible_by_day[day], n_sessions, results_per_query, prop,
                                max(5, images // 10))
        lines = [json.dumps(r) for r in records]
        day_bad = _plant_bad_clicks(run, day, records, lines, bad_click_days.get(day, []))
        bad_records += day_bad
        sink.put(f"clicks/ds={ds}/events.jsonl", "".join(t + "\n" for t in lines).encode())
        n_clicks = sum(1 for r in records if r["event_type"] == "click")
        uploads = sum(1 for p in planned if p.day == day)
        counts[ds] = {
            "uploads": uploads,
            "actions": len(day_records[day]) - uploads,
            "manifest_lines": manifest_lines[day],
            "bad_manifest_lines": sum(1 for r in bad_records if r["source"] == "manifest" and r["ds"] == ds),
            "sessions": n_sessions if len(visible_by_day[day]) >= 2 else 0,
            "impressions": len(records) - n_clicks,
            "clicks": n_clicks,
            "click_lines": len(lines),
            "bad_click_lines": len(day_bad),
            "visible_images": len(visible_by_day[day]),
        }

    final_visible = sorted((p for p in planned if not p.private and not p.deleted), key=lambda p: p.serial)
    judgments, labels = _judgments_and_labels(final_visible, run.specs, _rng(seed, _S_JUDGE), images)
    _write_csv(sink, "judgments/judgments.csv", ("set", "query_image_id", "candidate_image_id", "relevance"),
               judgments)
    _write_csv(sink, "labels/labels.csv", ("query_image_id", "positive_image_id", "weight"), labels)

    bad_records.sort(key=lambda r: (r["source"], r["ds"], r["line"]))
    truth = _truth(planned, run.specs, sink, seed=seed, size=size, start_ds=start_ds, ds_list=run.ds_list,
                   eta=eta, prop=prop, results_per_query=results_per_query, bad_records=bad_records,
                   counts=counts, judgments=len(judgments), labels=len(labels))
    sink.put("demo_truth.json", (json.dumps(truth, indent=1) + "\n").encode())
    totals: Counter[str] = Counter()
    for row in counts.values():
        totals.update(row)
    summary = DemoSummary(
        out=sink.root, images=len(planned), items=n_items,
        compositions=sum(1 for p in planned if p.is_composition), days=days, per_day=counts,
        bad_manifest_records=sum(1 for r in bad_records if r["source"] == "manifest"),
        bad_click_records=sum(1 for r in bad_records if r["source"] == "clicks"),
        unusual_images=len(UNUSUAL_KINDS), sessions=totals["sessions"], impressions=totals["impressions"],
        clicks=totals["clicks"], judgments=len(judgments), labels=len(labels),
        seconds=round(time.perf_counter() - started, 3),
        bad_kinds=dict(sorted(Counter(f"{r['source']}:{r['kind']}" for r in bad_records).items())),
    )
    log.info("demo data: %d images of %d items over %d days, %d + %d bad manifest/click records, "
             "at %s in %.1f s", summary.images, summary.items, days, summary.bad_manifest_records,
             summary.bad_click_records, sink.root, summary.seconds)
    return summary


def _render_planned(p: _Image, specs: dict[int, ItemSpec], rng: np.random.Generator,
                    size: int) -> tuple[bytes, str, int, int]:
    """Render and encode one planned image: (file bytes, Pillow mode when opened, width, height)."""
    if p.is_composition:
        canvas = Image.new("RGB", (2 * size, size))
        for half, item in enumerate(p.items):
            canvas.paste(render_item(specs[item], rng, size, size), (half * size, 0))
        return encode(canvas, p.fmt), "RGB", 2 * size, size
    spec = specs[p.items[0]]
    canonical = p.variant == 0 and p.unusual is None
    if p.unusual == "exif_rotated_jpeg":
        width = size * 3 // 2  # not square, so the rotation shows in the size
        image = render_item(spec, rng, width, size)
        return encode_unusual(p.unusual, image), UNUSUAL_MODE[p.unusual], width, size
    image = render_item(spec, rng, size, size, canonical=canonical)
    if p.unusual == "animated_gif":
        frames = [render_item(spec, rng, size, size) for _ in range(2)]
        return encode_unusual(p.unusual, image, frames), "P", size, size
    if p.unusual is not None:
        return encode_unusual(p.unusual, image), UNUSUAL_MODE[p.unusual], size, size
    mode = "P" if p.fmt == "GIF" else "RGB"
    return encode(image, p.fmt), mode, size, size


def _pick(pool: Sequence[_Image], n: int, rng: np.random.Generator, exclude: Collection[str]) -> list[_Image]:
    """Up to ``n`` distinct members of ``pool`` whose ids are not in ``exclude``, uniformly at random.

    Draws ``n + len(exclude)`` distinct positions (enough whatever ``exclude`` holds), so a large
    pool costs O(n + len(exclude)), not a permutation of the whole pool; a pool at most four times
    that size is permuted whole.
    """
    if n <= 0 or not pool:
        return []
    m = min(len(pool), n + len(exclude))
    small = len(pool) <= 4 * m
    order = rng.permutation(len(pool)) if small else rng.choice(len(pool), size=m, replace=False)
    out: dict[str, _Image] = {}
    for i in order:
        p = pool[int(i)]
        if p.image_id not in exclude and p.image_id not in out:
            out[p.image_id] = p
            if len(out) == n:
                break
    return list(out.values())


class _CategoryPools:
    """The visible images of each set of categories (deduplicated), built once per set."""

    def __init__(self, visible: Sequence[_Image], specs: dict[int, ItemSpec]) -> None:
        self._specs = specs
        self._by_category: dict[str, list[_Image]] = defaultdict(list)
        for p in visible:
            for c in sorted({specs[i].category for i in p.items}):
                self._by_category[c].append(p)
        self._pools: dict[tuple[str, ...], list[_Image]] = {}

    def of(self, items: Sequence[int]) -> list[_Image]:
        """The visible images sharing a category with any of ``items``."""
        cats = tuple(sorted({self._specs[i].category for i in items}))
        pool = self._pools.get(cats)
        if pool is None:
            seen: dict[str, _Image] = {}
            for c in cats:
                for p in self._by_category[c]:
                    seen.setdefault(p.image_id, p)
            pool = self._pools[cats] = list(seen.values())
        return pool


def _candidates(query: _Image, visible: list[_Image], by_item: dict[int, list[_Image]],
                categories: _CategoryPools, rng: np.random.Generator, k: int) -> list[_Image]:
    """A result list for ``query``: some of its group, a composition holding its item, some of its
    category, the rest random (order decided by the caller)."""
    chosen: dict[str, _Image] = {query.image_id: query}

    def take(pool: Sequence[_Image], n: int) -> None:
        need = max(0, min(n, k + 1 - len(chosen)))  # k results besides the query
        for p in _pick(pool, need, rng, chosen):
            chosen[p.image_id] = p

    same = [p for it in query.items for p in by_item[it]]
    take([p for p in same if not p.is_composition], int(rng.integers(1, 5)))
    take([p for p in same if p.is_composition], 1)
    take(categories.of(query.items), 2)
    take(visible, k)
    del chosen[query.image_id]
    return list(chosen.values())


def _judgments_and_labels(visible: list[_Image], specs: dict[int, ItemSpec], rng: np.random.Generator,
                          images: int) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str]]]:
    """Graded judgments for a sample of queries, and human-label positives for a tenth of the items."""
    by_item: dict[int, list[_Image]] = defaultdict(list)
    for p in visible:
        for it in p.items:
            by_item[it].append(p)
    categories = _CategoryPools(visible, specs)
    singles = [p for p in visible if not p.is_composition and len(by_item[p.items[0]]) >= 2]
    comps = [p for p in visible if p.is_composition]
    n_queries = min(len(singles) + len(comps), max(10, images // 10))
    n_comp = min(len(comps), max(1, n_queries // 5))
    picked = [comps[int(i)] for i in rng.permutation(len(comps))[:n_comp]]
    picked += [singles[int(i)] for i in rng.permutation(len(singles))[: n_queries - n_comp]]
    rows: list[tuple[str, str, str, int]] = []
    for q in sorted(picked, key=lambda p: p.serial):
        cands: dict[str, _Image] = {p.image_id: p for it in q.items for p in by_item[it]}
        for p in _pick(categories.of(q.items), 5, rng, cands):
            cands[p.image_id] = p
        for p in _pick(visible, 10, rng, cands):
            cands[p.image_id] = p
        cands.pop(q.image_id, None)
        for c in sorted(cands.values(), key=lambda p: p.serial):
            rows.append(("demo", q.image_id, c.image_id, grade(q.items, c.items, specs)))
    labels: list[tuple[str, str, str]] = []
    items = sorted(it for it, members in by_item.items() if sum(not m.is_composition for m in members) >= 2)
    for i in rng.permutation(len(items))[: max(1, len(items) // 10)]:
        members = [m for m in by_item[items[int(i)]] if not m.is_composition]
        for m in members[1:]:
            labels.append((members[0].image_id, m.image_id, "1.0"))
    labels.sort()
    return rows, labels


def _truth(planned: list[_Image], specs: dict[int, ItemSpec], sink: _Sink, *, seed: int, size: int,
           start_ds: str, ds_list: list[str], eta: float, prop: dict[int, float], results_per_query: int,
           bad_records: list[dict[str, Any]], counts: dict[str, dict[str, int]], judgments: int,
           labels: int) -> dict[str, Any]:
    """The ``demo_truth.json`` document (structure in :func:`generate_demo`)."""
    images: dict[str, Any] = {}
    groups: dict[str, list[str]] = defaultdict(list)
    for p in planned:
        single = not p.is_composition
        spec = specs[p.items[0]]
        composition = None
        if not single:
            composition = [{"item": it, "category": specs[it].category, "box": [half * size, 0, size, size]}
                           for half, it in enumerate(p.items)]
        else:
            groups[str(p.items[0])].append(p.image_id)
        images[p.image_id] = {
            "item": p.items[0] if single else None,
            "category": spec.category if single else None,
            "pattern": spec.pattern if single else None,
            "variant": p.variant,
            "day": p.day,
            "ds": ds_list[p.day],
            "format": p.fmt,
            "mode": p.mode,
            "width": p.width,
            "height": p.height,
            "unusual": p.unusual,
            "composition": composition,
            "private": p.private,
            "deleted": p.deleted,
            "uploaded_private": p.uploaded_private,
            "replaced_ds": p.replaced_ds,
            "path": p.path,
            "uri": sink.uri(p.path),
            "owner_id": p.owner,
            "history": p.history,
        }
    unusual = [{"image_id": p.image_id, "kind": p.unusual, "format": p.fmt, "mode": UNUSUAL_MODE[p.unusual]}
               for p in planned if p.unusual is not None]
    totals: Counter[str] = Counter()
    for day_counts in counts.values():
        totals.update({k: v for k, v in day_counts.items() if k != "visible_images"})
    return {
        "version": TRUTH_VERSION,
        "seed": seed,
        "size": size,
        "start_ds": start_ds,
        "days": len(ds_list),
        "ds_list": ds_list,
        "images": images,
        "items": {str(i): {"category": s.category, "pattern": s.pattern} for i, s in specs.items()},
        "groups": dict(groups),
        "categories": list(CATEGORIES),
        "propensity": {str(p): v for p, v in prop.items()},
        "eta": eta,
        "click_model": {
            "examination": "(1/position) ** eta",
            "relevance_by_grade": {str(g): r for g, r in RELEVANCE_BY_GRADE.items()},
            "results_per_query": results_per_query,
            "ranking": "uniform random permutation of the shown results (independent of relevance)",
            "dwell_ms": "lognormal around 15000 for grade >= 4 clicks, around 3000 otherwise",
        },
        "grades": {
            "5": "same item (or the same pair)", "4": "composition holding the query's item",
            "3": "query composition vs one of its items, compositions sharing one item, "
                 "or same category and pattern",
            "2": "same category", "0": "other",
        },
        "bad_records": bad_records,
        "unusual_images": unusual,
        "counts": counts,
        "totals": {**dict(totals), "judgments": judgments, "labels": labels},
    }


# ----------------------------------------------------------------------------- CLI


def format_summary(summary: DemoSummary) -> str:
    """A small table of what was written, per day, and the bad records by kind."""
    lines = [f"demo data at {summary.out}: {summary.images} images of {summary.items} items "
             f"({summary.compositions} compositions, {summary.unusual_images} unusual files), "
             f"{summary.days} days, {summary.seconds:.1f} s"]
    header = ("ds", "uploads", "actions", "bad_manifest_lines", "sessions", "impressions", "clicks",
              "bad_click_lines")
    lines.append("  ".join(f"{h:>12}" for h in header))
    for ds, row in summary.per_day.items():
        lines.append("  ".join([f"{ds:>12}", *(f"{row[h]:>12}" for h in header[1:])]))
    lines.append(f"judgments: {summary.judgments}, labels: {summary.labels}")
    if summary.bad_kinds:
        lines.append("bad records: " + ", ".join(f"{k}={v}" for k, v in summary.bad_kinds.items()))
    return "\n".join(lines)


def _cli(args: argparse.Namespace) -> int:
    out = args.out or load_settings().landing
    summary = generate_demo(
        out, args.images, args.days, seed=args.seed, size=args.size, start_ds=args.start_ds,
        bad_share=args.bad_share, sessions_per_day=args.sessions_per_day,
        results_per_query=args.results_per_query, eta=args.eta,
    )
    print(format_summary(summary))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch demo-data``."""
    parser = subparsers.add_parser(
        "demo-data",
        help="generate the procedural demo corpus (images, manifests, clicks, judgments)",
        description="Render a demo landing folder with ground truth. Try: "
                    "visearch demo-data --images 500 --days 3 --out .visearch/landing",
    )
    parser.add_argument("--images", type=int, required=True, help="good images to render (at least 12)")
    parser.add_argument("--days", type=int, required=True, help="days to spread uploads and clicks over")
    parser.add_argument("--out", default=None,
                        help="landing folder or URI, file:// or s3:// (default: settings.landing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--bad-share", type=float, default=0.02,
                        help="share of deliberately bad records (0 for none; default 0.02)")
    parser.add_argument("--start-ds", default="2026-01-01", help="first day, YYYY-MM-DD")
    parser.add_argument("--sessions-per-day", type=int, default=None,
                        help="simulated search sessions a day (default max(10, 2*images/days))")
    parser.add_argument("--results-per-query", type=int, default=10, help="results shown per session")
    parser.add_argument("--eta", type=float, default=1.0,
                        help="position-bias exponent: examination (1/p)**eta (default 1)")
    parser.set_defaults(func=_cli)
