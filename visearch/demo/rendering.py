"""Drawing the demo corpus's images: items, their variants, and the files they are saved as.

An *item* is one procedurally drawn object: a shape of its *category* (polygon, ellipse, star,
cross, ring), a two-colour palette and a texture (:func:`make_item`). :func:`render_item` draws a
variant of it (rotation, scale, position, colour shift, background, occlusion, crop) with Pillow
and numpy; :func:`encode` saves it with fixed settings (deterministic bytes), :func:`encode_unusual`
as a legit but unusual file (CMYK JPEG, 16-bit PNG, palette PNG with transparency, animated GIF,
EXIF-rotated JPEG), and :func:`png_bomb` makes a tiny PNG declaring 100000x100000 pixels.
"""

from __future__ import annotations

import colorsys
import functools
import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from visearch.demo.streams import STREAM_ITEM, stream_rng

CATEGORIES: tuple[str, ...] = ("polygon", "ellipse", "star", "cross", "ring")
PATTERNS: tuple[str, ...] = ("solid", "stripes", "checker", "dots", "gradient")
EXTENSIONS: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
JPEG_QUALITY = 90
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

FloatArray = npt.NDArray[np.float64]


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
    rng = stream_rng(seed, STREAM_ITEM, item)
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

