"""The index's Spark view of the lake: exact top-k against numpy, the live rows of a build."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support.index_builds import clustered, make_build
from visearch.core.storage import ObjectStore
from visearch.index.faiss_index import exact_search
from visearch.index.lake import exact_topk_spark, live_rows_spark
from visearch.index.manifest import load_build

pytestmark = pytest.mark.spark


def test_exact_topk_spark__matches_numpy_exact(spark: Any) -> None:
    vectors = clustered(700, 8, seed=7)
    ids = [f"i{k:03d}" for k in range(700)]
    df = spark.createDataFrame(pd.DataFrame({"image_id": ids, "embedding": [v.tolist() for v in vectors]}),
                               "image_id STRING, embedding ARRAY<FLOAT>").repartition(3)
    queries = clustered(15, 8, seed=8)
    _, got = exact_topk_spark(df, queries, 5)
    _, rows = exact_search(vectors, queries, 5)
    assert (got == np.array(ids, dtype=object)[rows]).all()


def test_live_rows_spark__every_shards_id_map_minus_the_tombstones(spark: Any, store: ObjectStore) -> None:
    ids = [f"img-{i:03d}" for i in range(120)]
    manifest = make_build(store, "main", "b-1", ids, clustered(120, 8, seed=0), num_shards=3,
                          tombstoned=tuple(ids[:7]))
    rows = live_rows_spark(spark, store, manifest).toPandas()
    assert list(rows.columns) == ["shard_key", "id", "image_id", "vhash"]
    assert sorted(rows["image_id"]) == ids[7:]
    assert set(rows["shard_key"]) == {s.key for s in manifest.shards}
    with load_build(store, "main", "b-1") as build:
        assert (build.ids_of(rows["image_id"].tolist()) == rows["id"].to_numpy()).all()
