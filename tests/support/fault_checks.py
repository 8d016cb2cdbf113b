"""What the fault tests share: settings on their own roots, table snapshots read from the Delta log,
a small embedding corpus, and the check that an index build is served."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.support.delta_log import read_rows
from visearch.core import tables as T
from visearch.core.config import Settings, load_settings
from visearch.core.storage import ObjectStore
from visearch.index.manifest import load_build

DEMO_DS = "2026-01-01"
DAY1, DAY2 = "2026-01-01", "2026-01-02"
INDEX = "main"
INGEST_TABLES = (T.BRONZE_IMAGES_RAW, T.SILVER_IMAGES, T.SILVER_QUARANTINE)


def roots(root: Path, landing: Path, **extra: str) -> Settings:
    """Settings on ``landing`` with a lake and artifacts of their own under ``root``."""
    return load_settings(env={"VISEARCH_LANDING": str(landing), "VISEARCH_LAKE": str(root / "lake"),
                              "VISEARCH_ARTIFACTS": str(root / "artifacts"), **extra})


def table_prefix(table: T.Table) -> str:
    """The table's key prefix in the lake store (``silver/images``)."""
    return table.name.replace(".", "/", 1)


def table_rows(lake: ObjectStore, table: T.Table) -> list[str]:
    """The table's committed rows read from its Delta log (no Spark), JSON-encoded and sorted."""
    rows = read_rows(lake, table_prefix(table)).to_pylist()
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def duplicate_keys(rows: list[str], table: T.Table) -> list[tuple[Any, ...]]:
    """Keys that occur on more than one of ``rows`` (as :func:`table_rows` gives them)."""
    keys = [tuple(json.loads(r)[k] for k in table.keys) for r in rows]
    return sorted({k for k in keys if keys.count(k) > 1})


@dataclass(frozen=True)
class CleanIngest:
    """A demo landing zone and the tables one uninterrupted ingest of it gives."""

    landing: Path
    settings: Settings
    rows: dict[str, list[str]]
    result: dict[str, Any]


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) L2-normalised float32 vectors around 12 random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dim)).astype(np.float32)
    x = centres[rng.integers(0, 12, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_corpus(spark: Any, settings: Settings, ids: list[str], vectors: np.ndarray, ds: str) -> None:
    """silver.images rows (ok, public) for ``ids`` and exactly these embeddings for model m1."""
    images = pd.DataFrame({
        "image_id": ids, "uri": [f"file:///img/{i}.jpg" for i in ids], "owner_id": "u",
        "upload_ts": pd.Timestamp(ds, tz="UTC"), "tags": [[] for _ in ids], "sha256": ids, "width": 32,
        "height": 32, "format": "JPEG", "phash": "0", "is_private": False, "status": "ok", "updated_ds": ds,
    })
    T.merge(spark, settings, T.SILVER_IMAGES, spark.createDataFrame(images))
    rows = pd.DataFrame({"model_version": "m1", "image_id": ids, "embedding": [v.tolist() for v in vectors],
                         "ds": ds, "sha256": ids})
    T.replace_partition(spark, settings, T.GOLD_EMBEDDINGS, spark.createDataFrame(rows, T.GOLD_EMBEDDINGS.schema),
                        "model_version = 'm1'")


def assert_serves(store: ObjectStore, build_id: str, ids: list[str], vectors: np.ndarray) -> None:
    """The build verifies (every object's sha256), holds ``len(ids)`` vectors and finds each of 25
    stored images as its own nearest neighbour."""
    sample = np.random.default_rng(7).choice(len(ids), 25, replace=False)
    with load_build(store, INDEX, build_id, verify=True) as build:
        assert build.manifest.vector_count == len(ids)
        _, found = build.search(vectors[sample], 1)  # (25, 1) faiss ids
        assert build.image_ids(found)[:, 0].tolist() == [ids[i] for i in sample]
