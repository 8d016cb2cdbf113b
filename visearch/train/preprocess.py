"""Image preprocessing: the ONE function used by training, batch embedding and queries.

``preprocess(data, prep, crop)`` decodes an image (EXIF orientation applied, first frame only,
any colour mode converted to RGB), optionally crops a box given in pixels of the *oriented*
image, resizes to ``size × size``, scales to [0, 1] and z-score normalises with the model's
mean and std. The constants (:class:`Preprocessing`) travel with every model version, so the
serving tier embeds a query exactly as the index was embedded.

Resize policy (used everywhere): the crop (or the whole image) is resized **directly to a
square** of ``size × size`` pixels with Pillow's antialiased bicubic filter. Nothing is cut
away — a query box's borders matter to the user who drew it — at the price of stretching
non-square inputs; training sees the same stretch (and random aspect ratios from
:class:`visearch.train.augment.RandomResizedCrop`), so the model learns to ignore it.

Decoding near the target size: JPEG files can be decoded at 1/2, 1/4 or 1/8 scale (Pillow's
draft mode), which is several times faster on large photos. :func:`preprocess` does this by
default, choosing the scale so that the crop still has at least ``size`` pixels on each side,
and maps the crop box to the reduced image. Every caller uses the same default, so training,
batch embedding and queries stay identical; pass ``fast_decode=False`` for a full decode.
"""

from __future__ import annotations

import io
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from visearch.core.config import ModelSettings

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Defaults of :class:`Preprocessing`: the ``model`` settings' (their one source).
_MODEL_DEFAULTS = ModelSettings()

#: A crop box ``(x, y, width, height)`` in pixels of the oriented image.
CropBox = tuple[int, int, int, int]

_RESAMPLE = Image.Resampling.BICUBIC
_WHITE = (255, 255, 255)


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can decode (corrupt, truncated, unknown format)."""


@dataclass(frozen=True)
class Preprocessing:
    """Constants of preprocessing; saved in every model's ``config.json``.

    Built with :meth:`from_settings` from the ``model`` settings, whose defaults are its defaults.

    Attributes:
        size: side of the square model input in pixels.
        mean: per-channel mean (RGB, in [0, 1] units) subtracted after scaling.
        std: per-channel standard deviation (RGB) divided by after subtracting the mean.
    """

    size: int = _MODEL_DEFAULTS.image_size
    mean: tuple[float, float, float] = _MODEL_DEFAULTS.mean
    std: tuple[float, float, float] = _MODEL_DEFAULTS.std

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean!r} and {self.std!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std!r}")

    @classmethod
    def from_settings(cls, model: ModelSettings) -> Preprocessing:
        """The preprocessing a model built from ``model`` settings expects."""
        return cls(size=model.image_size, mean=model.mean, std=model.std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``config.json``)."""
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: on missing or unknown keys, or invalid values.
        """
        unknown = set(data) - {"size", "mean", "std"}
        if unknown or "size" not in data:
            raise ValueError(f"bad preprocessing dict {dict(data)!r}: needs size, mean, std")
        return cls(
            size=int(data["size"]),
            mean=tuple(data.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(data.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
        )


def _open(data: bytes | Image.Image) -> Image.Image:
    if isinstance(data, Image.Image):
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected image bytes or a PIL image, got {type(data).__name__}")
    try:
        img = Image.open(io.BytesIO(bytes(data)))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot identify image ({len(data)} bytes): {exc}") from exc
    return img


def _sixteen_bit_to_rgb(img: Image.Image) -> Image.Image:
    """Scale 16-bit (``I;16*``, ``I``) grey to 8 bits: 0..65535 → 0..255 (Pillow would clip)."""
    arr = np.asarray(img).astype(np.float64)  # (H, W)
    grey = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_to_rgb(img)
    if mode == "F":
        arr = np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError(f"cannot convert colour mode {mode!r} to RGB: {exc}") from exc


def _draft_request(width: int, height: int, target: int, crop: CropBox | None) -> tuple[int, int]:
    """Smallest decode size keeping at least ``target`` pixels on each side of the crop (or image)."""
    short_side = min(width, height) if crop is None else min(crop[2], crop[3])
    scale = min(1.0, target / max(1, short_side))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def decode_image(
    data: bytes | Image.Image,
    *,
    draft_size: int | None = None,
    crop: CropBox | None = None,
) -> Image.Image:
    """Decode an image to RGB: first frame, EXIF orientation applied, any mode converted.

    Args:
        data: encoded bytes (JPEG, PNG, WebP, GIF, TIFF, ...) or an already opened PIL image.
        draft_size: when given and the image is a JPEG, decode at the largest 1/2, 1/4 or 1/8
            reduction that keeps at least ``draft_size`` pixels on the shorter side (of the
            ``crop`` when one is given). The returned image is then smaller than the file.
        crop: only used to choose the draft scale (the box is in full-resolution pixels); the
            image is not cropped here.

    Returns:
        A loaded RGB image. Colour modes: ``L``/``1``/``P``/``CMYK``/``YCbCr`` are converted;
        ``RGBA``/``LA``/``PA`` and ``P`` or ``L`` with a transparency key are composited on white;
        16-bit grey (``I;16``, ``I;16B``, ``I``) is scaled from 0..65535 to 0..255.

    Raises:
        ImageDecodeError: (a ``ValueError``) when the bytes cannot be decoded.
    """
    img = _open(data)
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        if draft_size is not None and img.format == "JPEG":
            width, height = img.size
            img.draft(img.mode, _draft_request(width, height, draft_size, crop))
        img.load()
        oriented = ImageOps.exif_transpose(img)
        return _to_rgb(oriented if oriented is not None else img)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def validate_crop(box: Sequence[Any], width: int, height: int) -> CropBox:
    """Check a crop box ``(x, y, w, h)`` against an image of ``width × height``.

    Returns:
        The box as a tuple of Python ints.

    Raises:
        ValueError: when the box does not have four integral values, has zero or negative
            area, or reaches outside the image.
    """
    if len(box) != 4:
        raise ValueError(f"crop box must be (x, y, width, height), got {box!r}")
    values: list[int] = []
    for value in box:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
            raise ValueError(f"crop box values must be integers, got {box!r}")
        values.append(int(float(value)))
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise ValueError(f"crop box {box!r} has zero or negative area")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"crop box {box!r} reaches outside the {width}x{height} image")
    return x, y, w, h


def to_tensor(img: Image.Image, prep: Preprocessing, crop: Sequence[int] | None = None) -> torch.Tensor:
    """Crop, resize to a square, scale to [0, 1] and normalise one RGB image.

    Args:
        img: an RGB image (from :func:`decode_image`); other modes are converted first.
        prep: the model's preprocessing constants.
        crop: optional ``(x, y, w, h)`` box in pixels of ``img``.

    Returns:
        A float32 tensor of shape ``(3, size, size)``.

    Raises:
        ValueError: for an invalid crop box.
    """
    width, height = img.size
    box: tuple[float, float, float, float] = (0.0, 0.0, float(width), float(height))
    if crop is not None:
        x, y, w, h = validate_crop(crop, width, height)
        box = (float(x), float(y), float(x + w), float(y + h))
    return _resize_normalise(img, prep, box)


def _resize_normalise(
    img: Image.Image, prep: Preprocessing, box: tuple[float, float, float, float]
) -> torch.Tensor:
    """Resize the ``box`` region (left, upper, right, lower; may be fractional) to S×S and normalise."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    if box != (0.0, 0.0, float(img.width), float(img.height)) and all(v.is_integer() for v in box):
        # Crop first: resizing with a box would let the filter see pixels outside it, and a
        # crop must embed exactly like the pre-cropped file.
        img = img.crop((int(box[0]), int(box[1]), int(box[2]), int(box[3])))
        box = (0.0, 0.0, float(img.width), float(img.height))
    size = (prep.size, prep.size)
    if img.size != size or box != (0.0, 0.0, float(img.width), float(img.height)):
        img = img.resize(size, _RESAMPLE, box=box)
    arr = np.array(img, dtype=np.uint8)  # (S, S, 3), a writable copy
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)  # (3, S, S)
    mean = torch.tensor(prep.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def preprocess(
    data: bytes | Image.Image,
    prep: Preprocessing,
    crop: Sequence[int] | None = None,
    *,
    fast_decode: bool = True,
) -> torch.Tensor:
    """Decode and preprocess one image: the function training, embedding and queries share.

    Args:
        data: encoded image bytes or a PIL image.
        prep: the model's preprocessing constants.
        crop: optional ``(x, y, w, h)`` box in pixels of the EXIF-oriented, full-resolution image.
        fast_decode: decode JPEGs at a reduced scale that still gives the crop at least
            ``prep.size`` pixels per side (default; keep it the same across callers).

    Returns:
        A float32 tensor ``(3, size, size)``.

    Raises:
        ImageDecodeError: (a ``ValueError``) when the image cannot be decoded.
        ValueError: for an invalid crop box.
    """
    img = _open(data)
    full_w, full_h = img.size
    if crop is not None and _swaps_axes(img):
        full_w, full_h = full_h, full_w
    full_box = validate_crop(crop, full_w, full_h) if crop is not None else None
    decoded = decode_image(img, draft_size=prep.size if fast_decode else None, crop=full_box)
    if full_box is None:
        return _resize_normalise(decoded, prep, (0.0, 0.0, float(decoded.width), float(decoded.height)))
    # A reduced (draft) decode scales the box; Pillow resizes from a fractional box exactly.
    sx, sy = decoded.width / full_w, decoded.height / full_h
    x, y, w, h = full_box
    return _resize_normalise(decoded, prep, (x * sx, y * sy, (x + w) * sx, (y + h) * sy))


def _swaps_axes(img: Image.Image) -> bool:
    """Whether the EXIF orientation transposes width and height (orientations 5–8)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is ignored, as exif_transpose does
        return False
    return orientation in (5, 6, 7, 8)
