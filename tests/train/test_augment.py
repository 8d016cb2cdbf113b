"""Augmentations keep shape, mode and value range, and are reproducible from their random source."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from visearch.train.augment import (
    ColorJitter,
    GaussianBlur,
    HorizontalFlip,
    RandomGrayscale,
    RandomResizedCrop,
    Rng,
    SimCLRAugment,
)
from visearch.train.preprocess import Preprocessing


def photo(width: int = 48, height: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(arr)


@pytest.mark.parametrize("rng", [random.Random(1), torch.Generator().manual_seed(1)])
@pytest.mark.parametrize(
    "transform",
    [HorizontalFlip(1.0), ColorJitter(p=1.0), RandomGrayscale(1.0), GaussianBlur(sigma=(0.05, 0.1), p=1.0)],
)
def test_transform__keeps_size_and_mode(transform: object, rng: Rng) -> None:
    img = photo()
    out = transform(img, rng)  # type: ignore[operator]
    assert out.size == img.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(img))  # with p=1 it changed the image


@pytest.mark.parametrize("width", [1, 7, 32, 100])
@pytest.mark.parametrize("height", [1, 9, 32, 300])
def test_random_resized_crop__box_stays_inside_and_output_is_square(width: int, height: int) -> None:
    crop = RandomResizedCrop(16)
    rng = random.Random(width * 1000 + height)
    for _ in range(20):
        x, y, w, h = crop.box(width, height, rng)
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1
        assert x + w <= width and y + h <= height
    assert crop(Image.new("RGB", (width, height)), rng).size == (16, 16)


def test_random_resized_crop__area_share_follows_scale() -> None:
    crop = RandomResizedCrop(16, scale=(0.5, 0.5), ratio=(1.0, 1.0))
    rng = random.Random(0)
    for _ in range(10):
        _, _, w, h = crop.box(100, 100, rng)
        assert abs(w * h - 5000) <= 150 and w == h


def test_horizontal_flip__mirrors_exactly() -> None:
    img = photo()
    out = HorizontalFlip(1.0)(img, random.Random(0))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img)[:, ::-1])
    assert HorizontalFlip(0.0)(img, random.Random(0)) is img


def test_random_grayscale__gives_equal_channels() -> None:
    arr = np.asarray(RandomGrayscale(1.0)(photo(), random.Random(0)))
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])


def test_color_jitter__zero_strength_is_identity() -> None:
    img = photo()
    out = ColorJitter(0.0, 0.0, 0.0, 0.0, p=1.0)(img, random.Random(0))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img))


@pytest.mark.parametrize("size", [32, 64])
def test_simclr_augment__views_have_model_shape_and_range(size: int) -> None:
    prep = Preprocessing(size=size)
    augment = SimCLRAugment(size, strength=1.0, prep=prep, blur=0.5)
    low = (0 - torch.tensor(prep.mean)) / torch.tensor(prep.std)  # (3,)
    high = (1 - torch.tensor(prep.mean)) / torch.tensor(prep.std)  # (3,)
    rng = random.Random(3)
    for seed in range(5):
        a, b = augment.two_views(photo(seed=seed), rng)
        for view in (a, b):
            assert view.shape == (3, size, size) and view.dtype == torch.float32
            per_channel = view.flatten(1)  # (3, S*S)
            assert bool((per_channel.min(1).values >= low - 1e-5).all())
            assert bool((per_channel.max(1).values <= high + 1e-5).all())
        assert not torch.equal(a, b)  # two different views


def test_simclr_augment__same_seed_same_views_for_both_random_sources() -> None:
    augment = SimCLRAugment(32, strength=1.0, blur=0.5)
    img = photo(64, 64)
    for make in (lambda: random.Random(42), lambda: torch.Generator().manual_seed(42)):
        first = augment.two_views(img, make())
        second = augment.two_views(img, make())
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = augment.two_views(img, random.Random(43))
    assert not torch.equal(other[0], augment.two_views(img, random.Random(42))[0])


def test_simclr_augment__rejects_size_mismatch_and_negative_strength() -> None:
    with pytest.raises(ValueError, match="differs"):
        SimCLRAugment(32, prep=Preprocessing(size=64))
    with pytest.raises(ValueError, match="strength"):
        SimCLRAugment(32, strength=-1.0)
    with pytest.raises(ValueError, match="probability"):
        HorizontalFlip(1.5)


def test_simclr_augment__converts_non_rgb_input() -> None:
    view = SimCLRAugment(32, strength=1.0, blur=0.5).view(Image.new("L", (40, 40), 128), random.Random(0))
    assert view.shape == (3, 32, 32)
