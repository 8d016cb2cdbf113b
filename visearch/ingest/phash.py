"""Perceptual hash (DCT pHash, 64 bits) of an image, and the Hamming distance between two hashes.

The hash follows the classic pHash recipe (as in the ``imagehash`` package): grayscale, resize to
32×32 with Lanczos, 2-D DCT-II, keep the 8×8 lowest frequencies, one bit per coefficient set when
it is above the median of those 64. Near-duplicates (re-encoded, rescaled, lightly recoloured)
land within a few bits; unrelated images differ in about half of them.

Any Pillow mode is accepted: alpha is flattened onto white (what a viewer shows), 16-bit and
float images keep their full range (Pillow's ``convert("L")`` would clip ``I;16`` at 255), and a
palette is resolved. :func:`hash_thumbnail` shrinks a big decoded image cheaply (``Image.reduce``,
an integer box filter) before the Lanczos step, so the hash costs little beyond the decode.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

HASH_SIZE = 8  # 8×8 low frequencies -> 64 bits
HIGHFREQ_FACTOR = 4
IMG_SIZE = HASH_SIZE * HIGHFREQ_FACTOR  # 32×32 thumbnail fed to the DCT
HEX_LENGTH = HASH_SIZE * HASH_SIZE // 4  # 16 hex characters
# The smallest side a pre-shrunk image keeps before the final Lanczos resize to 32×32.
MIN_PRESHRINK_SIDE = 2 * IMG_SIZE

_ALPHA_MODES = frozenset({"LA", "PA", "RGBA", "RGBa", "La"})
_NO_REDUCE_MODES = frozenset({"1", "P", "I;16", "I;16L", "I;16B", "I;16N"})

# EXIF orientation tag value -> the transpose that makes the image upright.
EXIF_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@lru_cache(maxsize=4)
def dct_matrix(n: int) -> np.ndarray:
    """The unnormalised DCT-II matrix ``C[k, j] = cos(pi * (2j + 1) * k / (2n))``, shape (n, n).

    ``C @ x`` is scipy's ``dct(x, type=2)`` divided by 2 (a uniform factor the hash ignores).

    Raises:
        ValueError: when ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"DCT size must be positive, got {n}")
    k = np.arange(n, dtype=np.float64)[:, None]  # (n, 1)
    j = np.arange(n, dtype=np.float64)[None, :]  # (1, n)
    matrix = np.cos(np.pi * (2.0 * j + 1.0) * k / (2.0 * n))  # (n, n)
    matrix.setflags(write=False)
    return matrix


def dct2(pixels: np.ndarray) -> np.ndarray:
    """2-D DCT-II of a square array (columns, then rows), unnormalised.

    Raises:
        ValueError: when ``pixels`` is not a square 2-D array.
    """
    if pixels.ndim != 2 or pixels.shape[0] != pixels.shape[1]:
        raise ValueError(f"expected a square 2-D array, got shape {pixels.shape}")
    c = dct_matrix(pixels.shape[0])  # (N, N)
    # (N, N) @ (N, N) -> (N, N) DCT of every column; @ (N, N)^T -> DCT of every row.
    out: np.ndarray = c @ pixels.astype(np.float64) @ c.T
    return out


def phash_pixels(pixels: np.ndarray) -> str:
    """The 64-bit pHash of a 32×32 grayscale array, as 16 lowercase hex characters.

    Bits are row-major over the 8×8 low-frequency block, most significant first. A coefficient
    counts as above the median only by more than a tiny tolerance, so flat regions hash the same
    on every platform instead of on float rounding noise.

    Raises:
        ValueError: when ``pixels`` is not 32×32 or holds non-finite values.
    """
    if pixels.shape != (IMG_SIZE, IMG_SIZE):
        raise ValueError(f"expected a {IMG_SIZE}x{IMG_SIZE} array, got shape {pixels.shape}")
    if not np.all(np.isfinite(pixels)):
        raise ValueError("pixels hold NaN or infinite values")
    low = dct2(pixels)[:HASH_SIZE, :HASH_SIZE]  # (8, 8) lowest frequencies
    median = float(np.median(low))
    tolerance = 1e-9 * max(1.0, float(np.abs(low).max()))
    bits = (low - median > tolerance).flatten()  # (64,)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:0{HEX_LENGTH}x}"


def grayscale(im: Image.Image) -> Image.Image:
    """A mode ``F`` (float luminance) copy of any Pillow image; alpha is composited onto white.

    Raises:
        ValueError: for a mode Pillow cannot convert (e.g. ``La``, ``RGBa`` premultiplied).
    """
    has_alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode == "F":
        return im
    # I;16 and I go straight to F (full range); the rest through Pillow's ITU-R 601-2 luma.
    return im.convert("F")


def hash_thumbnail(im: Image.Image, orientation: int = 1) -> np.ndarray:
    """The 32×32 float luminance thumbnail of a decoded image, upright per its EXIF orientation.

    A large image is first shrunk with ``Image.reduce`` by an integer factor that keeps its
    short side at least 64 pixels (a box filter over decoded pixels; cheap), then resized to
    32×32 with Lanczos. Images already small (e.g. a JPEG decoded in draft mode) skip the reduce.

    Raises:
        ValueError: for an unknown orientation value or an unconvertible mode.
    """
    if orientation != 1 and orientation not in EXIF_TRANSPOSE:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    factor = min(im.size) // MIN_PRESHRINK_SIDE
    if factor >= 2 and im.mode not in _NO_REDUCE_MODES:
        im = im.reduce(factor)
        gray = grayscale(im)
    else:
        gray = grayscale(im)
        if factor >= 2:
            gray = gray.reduce(factor)
    if orientation in EXIF_TRANSPOSE:
        gray = gray.transpose(EXIF_TRANSPOSE[orientation])
    small = gray.resize((IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)  # (32, 32)


def phash(im: Image.Image, orientation: int = 1, *, preshrink: bool = True) -> str:
    """The pHash of a decoded Pillow image (16 hex chars).

    ``preshrink=False`` is the textbook path (full-resolution grayscale, one Lanczos resize); the
    default pre-shrinks with ``Image.reduce`` first and lands within a few bits of it.

    Raises:
        ValueError: for an unknown orientation value or an unconvertible mode.
    """
    if preshrink:
        return phash_pixels(hash_thumbnail(im, orientation))
    if orientation != 1 and orientation not in EXIF_TRANSPOSE:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    gray = grayscale(im)
    if orientation in EXIF_TRANSPOSE:
        gray = gray.transpose(EXIF_TRANSPOSE[orientation])
    small = gray.resize((IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS)
    return phash_pixels(np.asarray(small, dtype=np.float64))


def hamming_distance(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of equal length.

    Raises:
        ValueError: when the lengths differ or a hash is not hexadecimal.
    """
    if len(a) != len(b):
        raise ValueError(f"hashes differ in length: {a!r} vs {b!r}")
    try:
        return (int(a, 16) ^ int(b, 16)).bit_count()
    except ValueError as exc:
        raise ValueError(f"not hexadecimal hashes: {a!r}, {b!r}") from exc
