"""SimCLR-style augmentations as small typed classes on PIL images.

Each transform takes an RGB image and a random source and returns an RGB image. The random
source is either a :class:`random.Random` or a :class:`torch.Generator`, passed explicitly, so
a training step can rebuild exactly the same views after a resume (the trainer derives one
seed per sample from the run seed and the sample's position in the data stream).

:class:`SimCLRAugment` composes them as in SimCLR (Chen et al., 2020): random resized crop →
horizontal flip → colour jitter (p=0.8) → grayscale (p=0.2) → Gaussian blur (p=0.5), and turns
a view into a model input with the same :func:`visearch.train.preprocess` constants queries use.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from visearch.core.config import TrainSettings
from visearch.train.preprocess import Preprocessing, to_tensor

#: Where augmentations draw their random numbers from.
Rng = random.Random | torch.Generator

_RESAMPLE = Image.Resampling.BICUBIC
#: Defaults of :class:`SimCLRAugment`'s colour strength and blur: the ``train`` settings' (their one source).
_TRAIN_DEFAULTS = TrainSettings()


def uniform(rng: Rng, low: float, high: float) -> float:
    """One float drawn uniformly from ``[low, high)``."""
    u = float(torch.rand((), generator=rng)) if isinstance(rng, torch.Generator) else rng.random()
    return low + (high - low) * u


def chance(rng: Rng, p: float) -> bool:
    """True with probability ``p`` (always consumes one draw, so streams stay aligned)."""
    return uniform(rng, 0.0, 1.0) < p


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop a random area share and aspect ratio, resized to ``size × size`` (torchvision's rule).

    Attributes:
        size: output side in pixels.
        scale: range of the crop's area as a share of the image's area.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
    """

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size!r}")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale!r}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio!r}")

    def box(self, width: int, height: int, rng: Rng) -> tuple[int, int, int, int]:
        """The crop ``(x, y, w, h)``: ten tries at a random box, else the central box."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * uniform(rng, self.scale[0], self.scale[1])
            aspect = math.exp(uniform(rng, log_lo, log_hi))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                x = min(width - w, int(uniform(rng, 0, width - w + 1)))
                y = min(height - h, int(uniform(rng, 0, height - h + 1)))
                return x, y, w, h
        # Fallback: the whole image clipped to the ratio range, centred.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, img: Image.Image, rng: Rng) -> Image.Image:
        """A random crop of ``img`` resized to ``size × size``."""
        x, y, w, h = self.box(img.width, img.height, rng)
        return img.resize((self.size, self.size), _RESAMPLE, box=(x, y, x + w, y + h))


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        _check_probability("p", self.p)

    def __call__(self, img: Image.Image, rng: Rng) -> Image.Image:
        """The image, mirrored with probability ``p``."""
        if chance(rng, self.p):
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


def _shift_hue(img: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5])."""
    hsv = np.array(img.convert("HSV"), dtype=np.uint8)  # (H, W, 3)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(shift * 255)) % 256
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, applied in a random order, with probability ``p``.

    Factors are drawn from ``[1 - x, 1 + x]`` for brightness, contrast and saturation, and the hue
    shift from ``[-hue, hue]`` turns, as torchvision's ``ColorJitter`` does.
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float = 0.8

    def __post_init__(self) -> None:
        _check_probability("p", self.p)
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")

    def __call__(self, img: Image.Image, rng: Rng) -> Image.Image:
        """The image with jittered colours (or unchanged, with probability ``1 - p``)."""
        if not chance(rng, self.p):
            return img
        order = [0, 1, 2, 3]
        for i in range(3, 0, -1):  # Fisher–Yates with our own random source
            j = min(i, int(uniform(rng, 0, i + 1)))
            order[i], order[j] = order[j], order[i]
        for op in order:
            if op == 0 and self.brightness > 0:
                img = ImageEnhance.Brightness(img).enhance(
                    uniform(rng, max(0.0, 1 - self.brightness), 1 + self.brightness)
                )
            elif op == 1 and self.contrast > 0:
                img = ImageEnhance.Contrast(img).enhance(
                    uniform(rng, max(0.0, 1 - self.contrast), 1 + self.contrast)
                )
            elif op == 2 and self.saturation > 0:
                img = ImageEnhance.Color(img).enhance(
                    uniform(rng, max(0.0, 1 - self.saturation), 1 + self.saturation)
                )
            elif op == 3 and self.hue > 0:
                img = _shift_hue(img, uniform(rng, -self.hue, self.hue))
        return img


@dataclass(frozen=True)
class RandomGrayscale:
    """Convert to grey (kept as 3 identical channels) with probability ``p``."""

    p: float = 0.2

    def __post_init__(self) -> None:
        _check_probability("p", self.p)

    def __call__(self, img: Image.Image, rng: Rng) -> Image.Image:
        """The image, greyed with probability ``p``."""
        if chance(rng, self.p):
            return img.convert("L").convert("RGB")
        return img


@dataclass(frozen=True)
class GaussianBlur:
    """Gaussian blur with a random sigma, given as a share of the image side, with probability ``p``.

    SimCLR blurs 224-pixel images with sigma in [0.1, 2.0] pixels; as a share of the side that
    is about [0.0005, 0.009], so small images get proportionally small blurs.
    """

    sigma: tuple[float, float] = (0.1 / 224, 2.0 / 224)
    p: float = 0.5

    def __post_init__(self) -> None:
        _check_probability("p", self.p)
        if not 0.0 <= self.sigma[0] <= self.sigma[1]:
            raise ValueError(f"sigma must satisfy 0 <= low <= high, got {self.sigma!r}")

    def __call__(self, img: Image.Image, rng: Rng) -> Image.Image:
        """The image, blurred with probability ``p``."""
        if not chance(rng, self.p):
            return img
        radius = uniform(rng, self.sigma[0], self.sigma[1]) * max(img.size)
        return img.filter(ImageFilter.GaussianBlur(radius=radius))


@dataclass
class SimCLRAugment:
    """The SimCLR view pipeline at ``size`` pixels, colour strength ``strength`` (1.0 = SimCLR's).

    Args:
        size: output side; must equal ``prep.size`` when a preprocessing is given.
        strength: scales colour jitter (0.8·s brightness/contrast/saturation, 0.2·s hue);
            0 turns jitter off (default: the ``train.augment_strength`` setting's default).
        prep: normalisation constants for :meth:`view` (default: ImageNet at ``size``).
        rng: the default random source when a call passes none (default: ``random.Random(0)``).
        min_scale: smallest crop area share of :class:`RandomResizedCrop`.
        blur: probability of the Gaussian blur (SimCLR uses 0.5 on ImageNet, 0 on CIFAR; default:
            the ``train.augment_blur`` setting's default).
    """

    size: int
    strength: float = _TRAIN_DEFAULTS.augment_strength
    prep: Preprocessing | None = None
    rng: Rng = field(default_factory=lambda: random.Random(0))
    min_scale: float = 0.2
    blur: float = _TRAIN_DEFAULTS.augment_blur

    def __post_init__(self) -> None:
        if self.strength < 0:
            raise ValueError(f"strength must be >= 0, got {self.strength!r}")
        if self.prep is None:
            self.prep = Preprocessing(size=self.size)
        elif self.prep.size != self.size:
            raise ValueError(f"augment size {self.size} differs from preprocessing size {self.prep.size}")
        s = self.strength
        self.transforms: list[
            RandomResizedCrop | HorizontalFlip | ColorJitter | RandomGrayscale | GaussianBlur
        ] = [
            RandomResizedCrop(self.size, scale=(self.min_scale, 1.0)),
            HorizontalFlip(0.5),
            ColorJitter(
                brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=min(0.5, 0.2 * s), p=0.8
            ),
            RandomGrayscale(0.2),
            GaussianBlur(p=self.blur),
        ]

    def __call__(self, img: Image.Image, rng: Rng | None = None) -> Image.Image:
        """One augmented RGB view of ``img`` at ``size × size``."""
        source = self.rng if rng is None else rng
        if img.mode != "RGB":
            img = img.convert("RGB")
        for transform in self.transforms:
            img = transform(img, source)
        return img

    def view(self, img: Image.Image, rng: Rng | None = None) -> torch.Tensor:
        """One augmented view as a normalised model input ``(3, size, size)``."""
        assert self.prep is not None  # set in __post_init__
        return to_tensor(self(img, rng), self.prep)

    def two_views(self, img: Image.Image, rng: Rng | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent views of one image, each ``(3, size, size)``: a self-supervised pair."""
        return self.view(img, rng), self.view(img, rng)
