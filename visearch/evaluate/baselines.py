"""Non-learned baselines the learned embedding must beat: a colour-histogram embedding.

:class:`ColorHistogramEmbedder` maps an image to its joint RGB histogram (``bins`` levels per
channel, ``bins**3`` cells), L1-normalised to a distribution ``p`` and square-rooted (the
Hellinger map). ``sqrt(p)`` has unit L2 norm, so the inner product of two embeddings is the
Bhattacharyya coefficient ``Σ sqrt(p_i q_i)`` in [0, 1]: an inner-product (or L2) index ranks by a
proper kernel between colour distributions, just as it ranks the learned model's cosine
similarities. Identical colour distributions score 1.0.

It has the same call as the learned model's ``embed_images``: a list of encoded images (bytes) or
Pillow images, optional crop boxes ``(x, y, width, height)`` in pixels of the EXIF-oriented image
(the convention of :mod:`visearch.train.preprocess`, whose decoder it shares), and a float32 ``(N, D)``
array out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from visearch.train.preprocess import CropBox, decode_image, validate_crop

log = logging.getLogger(__name__)

ImageInput = bytes | Image.Image


class ColorHistogramEmbedder:
    """Joint RGB histogram → L1 → sqrt (Hellinger) → L2-normalised float32 embedding.

    Args:
        bins: levels per channel (the embedding has ``bins**3`` dimensions); 2 to 64.
        max_side: images larger than this on their longest side are downscaled first (a histogram
            hardly changes, and decoding stays cheap); 0 keeps full resolution.

    Raises:
        ValueError: for ``bins`` outside [2, 64] or a negative ``max_side``.
    """

    name = "color_histogram"

    def __init__(self, bins: int = 8, *, max_side: int = 256) -> None:
        if not 2 <= bins <= 64:
            raise ValueError(f"bins must be in [2, 64], got {bins!r}")
        if max_side < 0:
            raise ValueError(f"max_side must be >= 0, got {max_side!r}")
        self.bins = bins
        self.max_side = max_side

    @property
    def dim(self) -> int:
        """Embedding dimension, ``bins**3``."""
        return int(self.bins**3)

    def histogram(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """The Hellinger-mapped, L2-normalised joint histogram of one RGB image, shape ``(D,)``."""
        if self.max_side and max(image.size) > self.max_side:
            image = image.copy()
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8).reshape(-1, 3)  # (H, W, 3) -> (H*W, 3)
        levels = (pixels.astype(np.int64) * self.bins) // 256  # (P, 3) in [0, bins)
        cell = (levels[:, 0] * self.bins + levels[:, 1]) * self.bins + levels[:, 2]  # (P,)
        counts = np.bincount(cell, minlength=self.dim).astype(np.float64)  # (D,)
        vector: npt.NDArray[np.float64] = np.sqrt(counts / counts.sum())
        vector /= np.linalg.norm(vector)
        return vector.astype(np.float32)

    def embed_images(
        self, images: Sequence[ImageInput], crops: Sequence[CropBox | None] | None = None
    ) -> npt.NDArray[np.float32]:
        """Embed images (encoded bytes or Pillow images), each optionally cropped first.

        Returns:
            float32 array of shape ``(N, bins**3)``; every row has unit L2 norm.

        Raises:
            ValueError: when ``crops`` and ``images`` differ in length, an image cannot be decoded
                (:class:`visearch.train.preprocess.ImageDecodeError`), or a crop box is outside its
                image or empty.
        """
        if crops is not None and len(crops) != len(images):
            raise ValueError(f"{len(images)} images but {len(crops)} crop boxes")
        out = np.empty((len(images), self.dim), dtype=np.float32)  # (N, D)
        for row, image in enumerate(images):
            box = None if crops is None else crops[row]
            # Without a crop, JPEGs may decode at a reduced scale (the histogram is downscaled anyway).
            draft = self.max_side if (box is None and self.max_side) else None
            rgb = decode_image(image, draft_size=draft)
            if box is not None:
                x, y, w, h = validate_crop(box, rgb.width, rgb.height)
                rgb = rgb.crop((x, y, x + w, y + h))
            out[row] = self.histogram(rgb)
        log.debug("embedded %d images into %d-d colour histograms", len(images), self.dim)
        return out
