"""`visearch embeddings export` and the index bench's loader of real vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visearch.bench.index import load_vectors


@pytest.mark.spark
def test_export__writes_one_versions_rows_in_id_order_with_their_ids(spark: Any, settings: Any,
                                                                      tmp_path: Path) -> None:
    from visearch.core import tables as T
    from visearch.embed.export import export_embeddings

    rows = [("v1", "img-b", [0.0, 1.0, 0.0], "2026-01-01", "s1"),
            ("v1", "img-a", [1.0, 0.0, 0.0], "2026-01-01", "s2"),
            ("v2", "img-a", [0.0, 0.0, 1.0], "2026-01-01", "s2")]
    df = spark.createDataFrame(rows, T.GOLD_EMBEDDINGS.schema)
    T.merge(spark, settings, T.GOLD_EMBEDDINGS, df)
    result = export_embeddings(spark, settings, tmp_path / "v1.npy", model_version="v1")
    matrix = np.load(tmp_path / "v1.npy")
    assert matrix.dtype == np.float32 and matrix.shape == (2, 3) == (result["rows"], result["dim"])
    np.testing.assert_array_equal(matrix, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert (tmp_path / "v1.npy.ids.txt").read_text().split() == ["img-a", "img-b"]
    with pytest.raises(ValueError, match="no rows for model version 'v9'"):
        export_embeddings(spark, settings, tmp_path / "v9.npy", model_version="v9")


def test_load_vectors__normalises_shuffles_and_checks_the_shape(tmp_path: Path) -> None:
    data = np.arange(1, 31, dtype=np.float32).reshape(10, 3)
    np.save(tmp_path / "e.npy", data)
    out = load_vectors(tmp_path / "e.npy", queries=2, seed=0)
    assert out.shape == (10, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    expected = {tuple(np.round(r / np.linalg.norm(r), 5)) for r in data}
    assert {tuple(np.round(r, 5)) for r in out} == expected
    with pytest.raises(ValueError, match="need more than --queries 10"):
        load_vectors(tmp_path / "e.npy", queries=10, seed=0)
    np.save(tmp_path / "flat.npy", np.ones(5, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        load_vectors(tmp_path / "flat.npy", queries=1, seed=0)


def test_embed_folder__random_init_embeds_every_image_file_and_names_it(tmp_path: Path) -> None:
    from tests.support.images import encode, photo
    from visearch.core.config import load_settings
    from visearch.embed.export import embed_folder

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for i in range(5):
        (tmp_path / "imgs" / "a" / f"{i}.jpg").write_bytes(encode(photo(i, 40, 40), "JPEG"))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    settings = load_settings(env={"VISEARCH_MODEL__IMAGE_SIZE": "32", "VISEARCH_MODEL__SMALL_STEM": "true",
                                  "VISEARCH_MODEL__WIDTH": "8", "VISEARCH_MODEL__EMBED_DIM": "16",
                                  "VISEARCH_ARTIFACTS": str(tmp_path / "artifacts")})
    result = embed_folder(settings, tmp_path / "imgs", tmp_path / "e.npy", random_init=True)
    matrix = np.load(tmp_path / "e.npy")
    assert matrix.shape == (5, 16) and result["failed"] == 0
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert (tmp_path / "e.npy.ids.txt").read_text().split() == [f"a/{i}.jpg" for i in range(5)]
    embed_folder(settings, tmp_path / "imgs", tmp_path / "f.npy", random_init=True)
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), matrix, atol=1e-6)  # seeded weights
    with pytest.raises(ValueError, match="CHAMPION"):
        embed_folder(settings, tmp_path / "imgs", tmp_path / "g.npy")
