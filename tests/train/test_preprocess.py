"""Preprocessing: every colour mode to RGB, EXIF orientation, crops, draft decoding, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from visearch.core.config import ModelSettings
from visearch.train.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    Preprocessing,
    decode_image,
    preprocess,
    to_tensor,
    validate_crop,
)

PREP = Preprocessing(size=16)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def pixels(tensor: torch.Tensor, prep: Preprocessing = PREP) -> np.ndarray:
    """Undo normalisation: (3, S, S) → (S, S, 3) values in 0..255."""
    mean = torch.tensor(prep.mean).view(3, 1, 1)
    std = torch.tensor(prep.std).view(3, 1, 1)
    return ((tensor * std + mean) * 255).permute(1, 2, 0).numpy()


def two_halves(mode: str, left: object, right: object, size: tuple[int, int] = (16, 16)) -> Image.Image:
    img = Image.new(mode, size, left)  # type: ignore[arg-type]
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))  # type: ignore[arg-type]
    return img


def assert_halves(
    tensor: torch.Tensor, left: tuple[int, int, int], right: tuple[int, int, int], tol: float
) -> None:
    px = pixels(tensor)  # (16, 16, 3)
    np.testing.assert_allclose(px[:, :6].reshape(-1, 3).mean(0), left, atol=tol)
    np.testing.assert_allclose(px[:, 10:].reshape(-1, 3).mean(0), right, atol=tol)


def test_preprocess__rgb_is_scaled_and_normalised_exactly() -> None:
    tensor = preprocess(encode(Image.new("RGB", (16, 16), (255, 0, 128))), PREP)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    np.testing.assert_allclose(tensor[:, 5, 5].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "image", "left", "right"),
    [
        ("L", two_halves("L", 0, 200), (0, 0, 0), (200, 200, 200)),
        ("1", two_halves("1", 0, 1), (0, 0, 0), (255, 255, 255)),
        ("RGBA", two_halves("RGBA", (255, 0, 0, 255), (255, 0, 0, 0)), (255, 0, 0), (255, 255, 255)),
        ("LA", two_halves("LA", (0, 255), (0, 0)), (0, 0, 0), (255, 255, 255)),
        ("CMYK", two_halves("CMYK", (0, 255, 255, 0), (255, 255, 0, 0)), (255, 0, 0), (0, 0, 255)),
    ],
)
def test_preprocess__colour_mode_becomes_rgb(
    name: str, image: Image.Image, left: tuple[int, int, int], right: tuple[int, int, int]
) -> None:
    fmt = "TIFF" if name == "CMYK" else "PNG"
    data = encode(image, fmt)
    assert Image.open(io.BytesIO(data)).mode == name
    assert_halves(preprocess(data, PREP), left, right, tol=1.0)


def test_preprocess__semi_transparent_rgba_is_composited_on_white() -> None:
    data = encode(Image.new("RGBA", (16, 16), (255, 0, 0, 128)))
    px = pixels(preprocess(data, PREP))
    # 128/255 red over white: 255·a + 255·(1−a) = 255 for red; 255·(1−a) ≈ 127 for green and blue.
    np.testing.assert_allclose(px[8, 8], (255, 127, 127), atol=1.0)


def test_preprocess__palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 6))  # 0 = blue, 1 = green
    img.paste(1, (8, 0, 16, 16))
    data = encode(img, "PNG", transparency=1)  # green is the transparent key
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and "transparency" in opened.info
    assert_halves(preprocess(data, PREP), (0, 0, 255), (255, 255, 255), tol=1.0)


def test_preprocess__sixteen_bit_grey_is_scaled_not_clipped() -> None:
    arr = np.full((16, 16), 65535, dtype=np.uint16)
    arr[:, :8] = 32896  # 32896 / 257 = 128
    data = encode(Image.fromarray(arr))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert_halves(preprocess(data, PREP), (128, 128, 128), (255, 255, 255), tol=0.6)


def test_preprocess__cmyk_jpeg_decodes_to_rgb() -> None:
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    px = pixels(preprocess(data, PREP))
    np.testing.assert_allclose(px[8, 8], (255, 0, 0), atol=8.0)


def test_preprocess__animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50)
    px = pixels(preprocess(buf.getvalue(), PREP))
    np.testing.assert_allclose(px[8, 8], (255, 0, 0), atol=2.0)


def oriented_jpeg(orientation: int) -> bytes:
    """A 32×16 stored image: left half red, right half blue, with an EXIF orientation tag."""
    img = two_halves("RGB", (255, 0, 0), (0, 0, 255), size=(32, 16))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=100, exif=exif.tobytes())


def test_decode_image__applies_exif_orientation() -> None:
    img = decode_image(oriented_jpeg(6))  # 6: rotate 90° clockwise for display
    assert img.size == (16, 32)
    arr = np.asarray(img)
    assert arr[4, 8, 0] > 200 and arr[4, 8, 2] < 60  # red ends up on top
    assert arr[28, 8, 2] > 200 and arr[28, 8, 0] < 60  # blue at the bottom


def test_preprocess__crop_is_in_pixels_of_the_oriented_image() -> None:
    top = preprocess(oriented_jpeg(6), PREP, crop=(0, 0, 16, 14))
    bottom = preprocess(oriented_jpeg(6), PREP, crop=(0, 18, 16, 14))
    assert pixels(top)[:, :, 0].mean() > 200 and pixels(top)[:, :, 2].mean() < 60
    assert pixels(bottom)[:, :, 2].mean() > 200 and pixels(bottom)[:, :, 0].mean() < 60
    with pytest.raises(ValueError, match="outside"):
        preprocess(oriented_jpeg(6), PREP, crop=(0, 0, 32, 16))  # the stored, not the oriented, size


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)


def test_preprocess__crop_equals_the_precropped_file() -> None:
    img = noise_image(64, 48)
    box = (10, 6, 30, 20)
    cropped = img.crop((10, 6, 40, 26))
    full = preprocess(encode(img), PREP, crop=box)
    pre = preprocess(encode(cropped), PREP)
    assert torch.equal(full, pre)
    assert torch.equal(to_tensor(img, PREP, box), pre)


def test_preprocess__jpeg_draft_decode_is_close_to_full_decode() -> None:
    data = encode(noise_image(512, 384, seed=1), "JPEG", quality=95)
    drafted = decode_image(data, draft_size=16)
    assert drafted.size == (64, 48)  # 1/8 scale still keeps >= 16 px on the short side
    assert decode_image(data).size == (512, 384)
    fast = preprocess(data, PREP, crop=(100, 80, 200, 160))
    exact = preprocess(data, PREP, crop=(100, 80, 200, 160), fast_decode=False)
    precropped = preprocess(encode(decode_image(data).crop((100, 80, 300, 240))), PREP)
    assert torch.equal(exact, precropped)
    assert float((fast - exact).abs().mean()) < 0.1  # normalised units (~6/255 of a pixel value)


def test_preprocess__draft_keeps_small_crops_sharp() -> None:
    data = encode(noise_image(512, 384, seed=2), "JPEG", quality=95)
    # A 40-px crop needs a decode scale of at least 16/40: 1/2 (256×192), not 1/8.
    img = Image.open(io.BytesIO(data))
    fast = preprocess(img, PREP, crop=(200, 100, 40, 40))
    exact = preprocess(data, PREP, crop=(200, 100, 40, 40), fast_decode=False)
    assert float((fast - exact).abs().mean()) < 0.1


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((0, 0, 0, 5), "zero or negative area"),
        ((0, 0, 5, -1), "zero or negative area"),
        ((-1, 0, 5, 5), "outside"),
        ((10, 10, 7, 5), "outside"),
        ((0, 0, 2.5, 5), "integers"),
        ((0, 0, 5), r"\(x, y, width, height\)"),
    ],
)
def test_validate_crop__rejects_bad_boxes(box: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_crop(box, 16, 16)


def test_validate_crop__accepts_integral_values_of_any_type() -> None:
    assert validate_crop((np.int64(1), 2.0, 3, 4), 16, 16) == (1, 2, 3, 4)
    assert validate_crop((0, 0, 16, 16), 16, 16) == (0, 0, 16, 16)


@pytest.mark.parametrize("data", [b"not an image at all", encode(noise_image(64, 64), "JPEG")[:200]])
def test_preprocess__undecodable_bytes_raise_image_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        preprocess(data, PREP)
    assert issubclass(ImageDecodeError, ValueError)


def test_preprocessing__round_trips_and_comes_from_settings() -> None:
    prep = Preprocessing.from_settings(
        ModelSettings(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    )
    assert prep == Preprocessing(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(ValueError, match="std"):
        Preprocessing(32, std=(0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="bad preprocessing"):
        Preprocessing.from_dict({"size": 32, "crop": "center"})


def test_preprocess__non_square_input_is_resized_to_a_square_whole() -> None:
    img = two_halves("RGB", (255, 0, 0), (0, 0, 255), size=(64, 16))
    px = pixels(preprocess(encode(img), PREP))
    assert px.shape == (16, 16, 3)
    # Nothing is cut away: both halves survive the direct resize.
    assert px[:, :6, 0].mean() > 240 and px[:, 10:, 2].mean() > 240
