"""Small image files for tests: good ones in every awkward mode, and deliberately bad ones.

Everything is generated with Pillow or written byte by byte; sizes stay tiny (tens of pixels)
except where the case is about size, and there only the header claims it.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from visearch.bench.ingest import synthetic_photo


def photo(seed: int, width: int = 64, height: int = 48) -> Image.Image:
    """A photo-like RGB image (seeded)."""
    return Image.fromarray(synthetic_photo(np.random.default_rng(seed), width, height))


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """The image saved in ``fmt`` to bytes."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(seed: int, width: int = 64, height: int = 48) -> bytes:
    """A good RGB JPEG."""
    return encode(photo(seed, width, height), "JPEG", quality=90)


def png(seed: int, width: int = 64, height: int = 48) -> bytes:
    """A good RGB PNG."""
    return encode(photo(seed, width, height), "PNG")


def truncated_jpeg(seed: int) -> bytes:
    """A JPEG cut in the middle of its entropy-coded data."""
    data = jpeg(seed, 96, 64)
    return data[: len(data) * 2 // 3]


def text_as_jpg() -> bytes:
    """What a .jpg named text file holds."""
    return b"this is not an image, just text saved with a .jpg name\n"


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares ``width`` × ``height`` RGB pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def cmyk_jpeg(seed: int) -> bytes:
    """A CMYK JPEG (print workflows and old scanners produce them)."""
    return encode(photo(seed).convert("CMYK"), "JPEG", quality=90)


def png16(seed: int) -> bytes:
    """A 16-bit grayscale PNG (mode ``I;16``) using the full 0..65535 range."""
    gray = np.asarray(photo(seed).convert("L"), dtype=np.uint16) * 257  # (H, W) 0..65535
    return encode(Image.fromarray(gray), "PNG")


def palette_png_transparent(seed: int) -> bytes:
    """A palette PNG whose palette index 0 is transparent."""
    im = photo(seed).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return encode(im, "PNG", transparency=0)


def animated_gif(seed: int, frames: int = 3) -> bytes:
    """An animated GIF of ``frames`` different pictures."""
    images = [photo(seed + i).convert("P", palette=Image.Palette.ADAPTIVE) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def exif_rotated_jpeg(seed: int, orientation: int = 6) -> tuple[bytes, Image.Image]:
    """A JPEG stored sideways with the EXIF orientation that turns it upright, and the upright image.

    Orientation 6 means "rotate 90° clockwise to display": the stored pixels are the upright
    picture turned 90° counter-clockwise.
    """
    upright = photo(seed, 64, 40)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: 40 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif), upright


def webp(seed: int) -> bytes:
    """A good WebP."""
    return encode(photo(seed), "WEBP", quality=90)


def bmp(seed: int) -> bytes:
    """A BMP (a real image, but not an allowed format)."""
    return encode(photo(seed), "BMP")
