"""The perceptual hash against an independent DCT, a hand-worked case, and its invariances."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.fft
from PIL import Image

from tests.support import images as I
from visearch.ingest.phash import (
    dct2,
    dct_matrix,
    grayscale,
    hamming_distance,
    hash_thumbnail,
    phash,
    phash_pixels,
)


def reference_phash(pixels: np.ndarray) -> str:
    """imagehash's recipe written independently: scipy DCT, median of the 8×8 block, bits row-major."""
    coeffs = scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)
    low = coeffs[:8, :8]
    bits = "".join("1" if v > np.median(low) else "0" for v in low.flatten())
    return f"{int(bits, 2):016x}"


def test_dct2__matches_scipy() -> None:
    x = np.random.default_rng(0).normal(size=(32, 32))
    # scipy's unnormalised DCT-II carries a factor 2 per axis.
    np.testing.assert_allclose(4 * dct2(x), scipy.fft.dctn(x, type=2), rtol=1e-10, atol=1e-9)


def test_dct_matrix__rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="-1"):
        dct_matrix(-1)


def test_phash_pixels__matches_reference_implementation() -> None:
    rng = np.random.default_rng(1)
    for seed in range(20):
        noise = rng.uniform(0, 255, size=(32, 32))
        thumb = np.asarray(I.photo(seed).convert("F").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
        for pixels in (noise, thumb):
            assert phash_pixels(pixels) == reference_phash(pixels)


def test_phash_pixels__hand_worked_ramp() -> None:
    # Brightness falling down the rows, constant along them: only the vertical frequencies (k, 0)
    # are non-zero; for a linear ramp the odd ones are positive and the even ones (k > 0) vanish.
    # Above the median (0) are DC and (1,0), (3,0), (5,0), (7,0): bits 0, 8, 24, 40, 56.
    pixels = np.repeat(np.arange(31, -1, -1, dtype=np.float64)[:, None], 32, axis=1)  # (32, 32)
    expected = sum(1 << (63 - bit) for bit in (0, 8, 24, 40, 56))
    assert phash_pixels(pixels) == f"{expected:016x}" == "8080008000800080"


def test_phash_pixels__flat_image_is_stable() -> None:
    assert phash_pixels(np.full((32, 32), 117.0)) == "8000000000000000"


def test_phash_pixels__rejects_wrong_shape_and_nan() -> None:
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        phash_pixels(np.zeros((16, 16)))
    bad = np.zeros((32, 32))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        phash_pixels(bad)


def test_hamming_distance__counts_bits() -> None:
    assert hamming_distance("0" * 16, "f" * 16) == 64
    assert hamming_distance("8000000000000000", "0000000000000000") == 1
    assert hamming_distance("00000000000000ff", "000000000000000f") == 4
    assert hamming_distance("abcdef0123456789", "abcdef0123456789") == 0


def test_hamming_distance__rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="length"):
        hamming_distance("00", "000")
    with pytest.raises(ValueError, match="hexadecimal"):
        hamming_distance("zz", "00")


def test_phash__near_duplicates_close_and_unrelated_far() -> None:
    for seed in range(6):
        im = I.photo(seed, 160, 120)
        base = phash(im)
        rescaled = phash(im.resize((97, 73), Image.Resampling.BILINEAR))
        recompressed = phash(Image.open(io.BytesIO(I.encode(im, "JPEG", quality=40))))
        brighter = phash(Image.eval(im, lambda v: min(255, int(v * 1.1) + 5)))
        for near in (rescaled, recompressed, brighter):
            assert hamming_distance(base, near) <= 6
        assert hamming_distance(base, phash(I.photo(seed + 100, 160, 120))) >= 16


def test_grayscale__alpha_flattened_on_white() -> None:
    rgb = I.photo(1)
    rgba = rgb.convert("RGBA")
    alpha = Image.new("L", rgb.size, 0)
    alpha.paste(255, (10, 10, 40, 30))
    rgba.putalpha(alpha)
    on_white = Image.new("RGB", rgb.size, (255, 255, 255))
    on_white.paste(rgb.crop((10, 10, 40, 30)), (10, 10))
    np.testing.assert_allclose(np.asarray(grayscale(rgba)), np.asarray(grayscale(on_white)), atol=0.5)


def test_grayscale__16_bit_not_clipped() -> None:
    im = Image.fromarray(np.full((4, 4), 60000, dtype=np.uint16))
    assert float(np.asarray(grayscale(im)).max()) == 60000.0


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_phash__orientation_equals_transposing_first(orientation: int) -> None:
    from visearch.ingest.phash import EXIF_TRANSPOSE

    im = I.photo(2, 96, 64)
    assert hamming_distance(phash(im, orientation), phash(im.transpose(EXIF_TRANSPOSE[orientation]))) <= 1


def test_hash_thumbnail__preshrinks_big_images_of_any_mode() -> None:
    big = I.photo(3, 900, 700)
    for mode in ("RGB", "P", "I;16", "1", "CMYK", "LA"):
        im = big.convert(mode) if mode != "I;16" else Image.fromarray(
            np.asarray(big.convert("L"), dtype=np.uint16) * 257
        )
        thumb = hash_thumbnail(im)
        assert thumb.shape == (32, 32) and np.isfinite(thumb).all()
    assert hamming_distance(phash(big), phash(big, preshrink=False)) <= 4


def test_hash_thumbnail__rejects_bad_orientation() -> None:
    with pytest.raises(ValueError, match="9"):
        hash_thumbnail(I.photo(4), 9)
