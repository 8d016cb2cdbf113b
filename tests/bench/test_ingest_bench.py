"""``visearch bench ingest``: a tiny real run writes its JSON; the corpus helpers behave."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from visearch.bench.ingest import add_arguments, generate_corpus, load_folder, run, synthetic_photo


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bench_ingest__tiny_run_writes_json(tmp_path: Path) -> None:
    result = run(_args("--out", str(tmp_path), "--count", "6", "--min-side", "160", "--max-side", "320",
                       "--repeats", "1"))
    saved = json.loads((tmp_path / "ingest.json").read_text())
    assert saved["bench"] == "ingest" and saved["images"] == 6
    assert [r["path"] for r in result["rows"]] == ["optimised", "baseline"]
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    assert result["quality"]["same_verdict"] == 6 and result["quality"]["hashed_pairs"] == 6
    assert result["quality"]["hamming_max"] <= 8


def test_bench_ingest__real_folder(tmp_path: Path, cifar_dir: Path) -> None:
    result = run(_args("--out", str(tmp_path), "--images", str(cifar_dir / "cat"), "--count", "5",
                       "--repeats", "1"))
    assert result["images"] == 5 and result["quality"]["same_verdict"] == 5


def test_generate_corpus__seeded_and_sized() -> None:
    first, again = generate_corpus(3, 64, 96, seed=7), generate_corpus(3, 64, 96, seed=7)
    assert first == again and generate_corpus(3, 64, 96, seed=8) != first
    with pytest.raises(ValueError, match="count=0"):
        generate_corpus(0, 64, 96, seed=0)


def test_synthetic_photo__shape_and_texture() -> None:
    img = synthetic_photo(np.random.default_rng(0), 40, 30)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    assert float(img.std()) > 10  # not a flat field


def test_load_folder__empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_folder(tmp_path, 5, seed=0)
