"""The colour-histogram baseline embedding: shape, normalisation, similarity behaviour, crops."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visearch.evaluate.baselines import ColorHistogramEmbedder


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _noisy(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), "RGB")


def _shift(image: Image.Image, amount: int) -> Image.Image:
    """Add ``amount`` to the red channel (clipped): a colour shift of growing strength."""
    arr = np.asarray(image).astype(np.int32)
    arr[..., 0] = np.clip(arr[..., 0] + amount, 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def test_embed_images__shape_dtype_and_unit_norm() -> None:
    embedder = ColorHistogramEmbedder(bins=8)
    out = embedder.embed_images([_png(_noisy(s)) for s in range(3)])
    assert out.shape == (3, 512) == (3, embedder.dim)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert (out >= 0).all()
    assert ColorHistogramEmbedder(bins=4).embed_images([_noisy(0)]).shape == (1, 64)


def test_identical_images__similarity_one_from_bytes_or_pil(cifar_dir: Path) -> None:
    photo = (cifar_dir / "airplane" / "0000.jpg").read_bytes()
    embedder = ColorHistogramEmbedder()
    out = embedder.embed_images([photo, photo, Image.open(io.BytesIO(photo))])
    # (3, D) @ (D, 3) -> (3, 3) cosine similarities
    sims = out @ out.T
    assert sims[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert sims[0, 2] == pytest.approx(1.0, abs=1e-6)


def test_colour_shift__lowers_similarity_monotonically() -> None:
    base = _noisy(1)
    embedder = ColorHistogramEmbedder()
    out = embedder.embed_images([base, _shift(base, 40), _shift(base, 100), _shift(base, 200)])
    sims = out[1:] @ out[0]  # (3, D) @ (D,) -> (3,)
    assert sims[0] < 0.99
    assert sims[0] > sims[1] > sims[2]


def test_histogram__hand_worked_half_black_half_white() -> None:
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[:, 4:] = 255  # half the pixels white
    vec = ColorHistogramEmbedder(bins=8).embed_images([Image.fromarray(arr, "RGB")])[0]
    # p = 0.5 in cell 0 (black) and 0.5 in cell 511 (white); sqrt -> 0.7071 each; already unit norm
    assert vec[0] == pytest.approx(math.sqrt(0.5), abs=1e-6)
    assert vec[511] == pytest.approx(math.sqrt(0.5), abs=1e-6)
    assert np.count_nonzero(vec) == 2
    black = ColorHistogramEmbedder(bins=8).embed_images([Image.new("RGB", (8, 8), (0, 0, 0))])[0]
    # Bhattacharyya coefficient sqrt(0.5 * 1) = 0.7071
    assert float(vec @ black) == pytest.approx(math.sqrt(0.5), abs=1e-6)


def test_crops__embed_only_the_box_x_y_w_h() -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    image = Image.fromarray(arr, "RGB")
    embedder = ColorHistogramEmbedder()
    out = embedder.embed_images(
        [image, image, Image.new("RGB", (5, 5), (255, 0, 0))], crops=[(0, 0, 20, 20), (20, 0, 20, 20), None]
    )
    assert float(out[0] @ out[2]) == pytest.approx(1.0, abs=1e-6)  # left crop is pure red
    assert float(out[0] @ out[1]) == pytest.approx(0.0, abs=1e-6)  # red and blue share no cell


def test_other_colour_modes__grey_equals_its_rgb_conversion() -> None:
    grey = Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 16), dtype=np.uint8), "L")
    out = ColorHistogramEmbedder().embed_images([_png(grey), grey.convert("RGB")])
    np.testing.assert_allclose(out[0], out[1], atol=1e-7)


def test_downscaling_large_images__keeps_a_flat_colour_exact() -> None:
    big = Image.new("RGB", (1000, 600), (10, 200, 90))
    small = Image.new("RGB", (10, 6), (10, 200, 90))
    out = ColorHistogramEmbedder(max_side=64).embed_images([big, small])
    assert float(out[0] @ out[1]) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs__raise_value_error() -> None:
    embedder = ColorHistogramEmbedder()
    with pytest.raises(ValueError, match="2 images but 1 crop boxes"):
        embedder.embed_images([_noisy(0), _noisy(1)], crops=[None])
    with pytest.raises(ValueError, match="outside"):
        embedder.embed_images([_noisy(0)], crops=[(40, 40, 20, 20)])
    with pytest.raises(ValueError, match="zero or negative area"):
        embedder.embed_images([_noisy(0)], crops=[(0, 0, 0, 5)])
    with pytest.raises(ValueError, match="cannot"):
        embedder.embed_images([b"not an image"])
    with pytest.raises(ValueError, match="bins must be in"):
        ColorHistogramEmbedder(bins=1)
