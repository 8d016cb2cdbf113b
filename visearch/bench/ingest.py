"""``visearch bench ingest``: images validated per second, draft-mode path vs full-decode baseline.

Both paths run in the same process on the same bytes, held in memory (storage I/O is not
measured), through :func:`visearch.ingest.validation.validate_image`:

- ``optimised`` (``fast=True``, what the ingest job runs): a JPEG is decoded in Pillow's draft
  mode (libjpeg scales by 1/2..1/8 inside the IDCT; every compressed byte is still decoded, so
  truncation is still caught) and the pHash is taken from that small image; other formats are
  decoded in full and shrunk with ``Image.reduce`` before hashing.
- ``baseline`` (``fast=False``): full-resolution decode, pHash from the full-resolution image.

It also reports what the speed costs: whether both paths gave the same verdict on every image
and how many of the 64 hash bits differ between them.

The corpus is either ``--count`` procedurally generated photo-like JPEGs (smooth colour fields,
shapes, fine texture and sensor noise; sides drawn between ``--min-side`` and ``--max-side``), or
the images of ``--images DIR`` (e.g. ``../shared/data/cifar10-train``; note that CIFAR's 32×32
pictures are too small for draft mode to shrink, so both paths do the same work there).

Try: visearch bench ingest --count 200 --out bench-results
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--images", default=None,
                        help="folder of real images to use instead of generated ones (searched recursively)")
    parser.add_argument("--count", type=int, default=200, help="number of images (default 200)")
    parser.add_argument("--min-side", type=int, default=256, help="smallest generated side in pixels")
    parser.add_argument("--max-side", type=int, default=1024, help="largest generated side in pixels")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of generated images")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per path; the best one counts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated corpus")
    parser.add_argument("--quick", action="store_true", help="40 images, one pass (used by `bench all`)")


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A photo-like RGB image, shape (height, width, 3) uint8.

    A smooth two-colour gradient, a few soft coloured blobs and hard-edged rectangles (objects),
    fine sinusoidal texture and Gaussian sensor noise: enough high-frequency content that JPEG
    files have realistic sizes and decoding has real work to do.

    Raises:
        ValueError: when a side is smaller than 8 pixels.
    """
    if width < 8 or height < 8:
        raise ValueError(f"image sides must be >= 8, got {width}x{height}")
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
    u, v = x / width, y / height
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * u + np.sin(angle) * v)[..., None]  # (H, W, 1)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = (1 - t) * c0 + t * c1  # (H, W, 3)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0, 1, size=2)
        radius = rng.uniform(0.05, 0.3)
        weight = np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * radius**2))[..., None]  # (H, W, 1)
        img = img * (1 - weight) + weight * rng.uniform(0, 255, size=3).astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        x0, x1 = sorted(rng.integers(0, width, size=2))
        y0, y1 = sorted(rng.integers(0, height, size=2))
        img[y0:y1 + 1, x0:x1 + 1] = rng.uniform(0, 255, size=3).astype(np.float32)
    freq = rng.uniform(20, 80)
    img += 12 * np.sin(freq * u * np.pi + 3 * np.sin(freq / 3 * v))[..., None]
    img += rng.normal(0, 4, size=img.shape).astype(np.float32)
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def generate_corpus(count: int, min_side: int, max_side: int, seed: int, quality: int = 90) -> list[bytes]:
    """``count`` generated JPEGs (bytes) with sides uniformly drawn in ``[min_side, max_side]``.

    Raises:
        ValueError: for a non-positive count or an empty side range.
    """
    from PIL import Image

    if count <= 0 or min_side < 8 or max_side < min_side:
        raise ValueError(f"bad corpus shape: count={count}, sides {min_side}..{max_side}")
    rng = np.random.default_rng(seed)
    corpus = []
    for _ in range(count):
        width, height = (int(s) for s in rng.integers(min_side, max_side + 1, size=2))
        buf = io.BytesIO()
        Image.fromarray(synthetic_photo(rng, width, height)).save(buf, "JPEG", quality=quality)
        corpus.append(buf.getvalue())
    return corpus


def load_folder(folder: str | Path, count: int, seed: int) -> list[bytes]:
    """The bytes of up to ``count`` images of a folder (a seeded sample when there are more).

    Raises:
        FileNotFoundError: when the folder holds no image.
    """
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no {IMAGE_SUFFIXES} images under {folder}")
    if len(paths) > count:
        rng = np.random.default_rng(seed)
        paths = [paths[i] for i in sorted(rng.choice(len(paths), size=count, replace=False))]
    return [p.read_bytes() for p in paths]


def _time_pass(corpus: list[bytes], validate: Callable[[bytes], Any]) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    results = [validate(data) for data in corpus]
    return time.perf_counter() - start, results


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure both paths on one corpus; print a table and write ``<out>/ingest.json``.

    Raises:
        ValueError: for a non-positive ``--count`` or ``--repeats``.
    """
    from visearch.bench import print_table, write_result
    from visearch.core.config import IngestSettings
    from visearch.ingest.phash import hamming_distance
    from visearch.ingest.validation import ImageInfo, validate_image

    count = 40 if args.quick else args.count
    repeats = 1 if args.quick else args.repeats
    if count <= 0 or repeats <= 0:
        raise ValueError(f"--count and --repeats must be positive, got {count}, {repeats}")
    if args.images:
        corpus = load_folder(args.images, count, args.seed)
        source = str(args.images)
    else:
        corpus = generate_corpus(count, args.min_side, args.max_side, args.seed, args.quality)
        source = f"generated JPEG q{args.quality}, sides {args.min_side}-{args.max_side}px"
    limits = IngestSettings()
    total_mb = sum(len(d) for d in corpus) / 1e6

    def validator(fast: bool) -> Callable[[bytes], Any]:
        def validate(data: bytes) -> Any:
            return validate_image(data, max_pixels=limits.max_pixels, allowed_formats=limits.allowed_formats,
                                  max_bytes=limits.max_bytes, fast=fast)
        return validate

    paths = {"optimised": validator(True), "baseline": validator(False)}
    for validate in paths.values():  # warm-up: imports, plugin registration, allocator
        for data in corpus[:3]:
            validate(data)
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    outputs: dict[str, list[Any]] = {}
    for _ in range(repeats):
        for name, validate in paths.items():  # interleaved so drift hits both alike
            elapsed, outputs[name] = _time_pass(corpus, validate)
            seconds[name].append(elapsed)

    fast_out, base_out = outputs["optimised"], outputs["baseline"]
    megapixels = sum(r.width * r.height for r in base_out if isinstance(r, ImageInfo)) / 1e6
    same_verdict = sum(
        type(a) is type(b) and (isinstance(a, ImageInfo) or a.reason == b.reason)
        for a, b in zip(fast_out, base_out, strict=True)
    )
    distances = [hamming_distance(a.phash, b.phash) for a, b in zip(fast_out, base_out, strict=True)
                 if isinstance(a, ImageInfo) and isinstance(b, ImageInfo)]
    rows: list[dict[str, Any]] = []
    for name in paths:
        best = min(seconds[name])
        rows.append({
            "path": name,
            "images": len(corpus),
            "best_s": best,
            "median_s": statistics.median(seconds[name]),
            "images_per_s": len(corpus) / best,
            "MB_per_s": total_mb / best,
            "Mpix_per_s": megapixels / best,
        })
    speedup = rows[1]["best_s"] / rows[0]["best_s"]
    for row in rows:
        row["speedup"] = rows[1]["best_s"] / row["best_s"]
    print(f"corpus: {len(corpus)} images, {total_mb:.1f} MB, {megapixels:.1f} Mpix ({source})")
    print_table(rows, ["path", "images", "best_s", "median_s", "images_per_s", "MB_per_s", "Mpix_per_s",
                       "speedup"])
    quality = {
        "same_verdict": same_verdict,
        "hashed_pairs": len(distances),
        "hamming_mean": statistics.fmean(distances) if distances else None,
        "hamming_max": max(distances) if distances else None,
    }
    print(f"same verdict on {same_verdict}/{len(corpus)} images; pHash bits differing between paths: "
          f"mean {quality['hamming_mean']}, max {quality['hamming_max']} of 64")
    result: dict[str, Any] = {
        "source": source,
        "images": len(corpus),
        "megabytes": total_mb,
        "megapixels": megapixels,
        "repeats": repeats,
        "rows": rows,
        "speedup": speedup,
        "quality": quality,
    }
    out = getattr(args, "out", None) or "bench-results"
    write_result(out, "ingest", result, argv=sys.argv)
    return result
