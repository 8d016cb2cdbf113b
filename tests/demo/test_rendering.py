"""Rendering the demo's files: the decompression-bomb PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from visearch.demo.rendering import png_bomb


def test_png_bomb__declares_the_size_with_valid_crcs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb())
    with Image.open(path) as im:
        assert im.size == (100_000, 100_000)
        im.verify()  # chunk CRCs are checked here
