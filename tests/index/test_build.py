"""The index build and publish (:func:`visearch.index.build.run`, :func:`visearch.index.publish.run`)
on a real Spark session, Delta tables and a file:// store."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

import visearch.index.build as build_index
import visearch.index.publish as publish_index
from tests.support.index_builds import clustered
from visearch.core import tables
from visearch.core.config import Settings
from visearch.core.storage import LocalStore, open_store
from visearch.index.faiss_index import exact_search
from visearch.index.manifest import current_build_id, load_build, read_manifest
from visearch.index.publish import ValidationError, publish_build, rollback

pytestmark = pytest.mark.spark

MV = "m1"
DIM = 16


def write_images(spark: Any, settings: Settings, ids: list[str], *, status: dict[str, str] | None = None,
                 private: set[str] | None = None, ds: str = "2026-01-01") -> None:
    """Upsert silver.images rows (status 'ok' unless given; public unless listed)."""
    status = status or {}
    private = private or set()
    rows = pd.DataFrame({
        "image_id": ids, "uri": [f"file:///img/{i}.jpg" for i in ids], "owner_id": "u",
        "upload_ts": pd.Timestamp("2026-01-01", tz="UTC"), "tags": [[] for _ in ids], "sha256": ids,
        "width": 32, "height": 32, "format": "JPEG", "phash": "0", "is_private": [i in private for i in ids],
        "status": [status.get(i, "ok") for i in ids], "updated_ds": ds,
    })
    tables.merge(spark, settings, tables.SILVER_IMAGES, spark.createDataFrame(rows))


def write_embeddings(spark: Any, settings: Settings, ids: list[str], vectors: np.ndarray, *, mv: str = MV,
                     ds: str = "2026-01-01") -> None:
    """Replace the model version's embeddings with exactly these rows."""
    rows = pd.DataFrame({"model_version": mv, "image_id": ids, "embedding": [v.tolist() for v in vectors],
                         "ds": ds, "sha256": ids})
    schema = "model_version STRING, image_id STRING, embedding ARRAY<FLOAT>, ds STRING, sha256 STRING"
    df = spark.createDataFrame(rows, schema)
    tables.replace_partition(spark, settings, tables.GOLD_EMBEDDINGS, df, f"model_version = '{mv}'")


def with_index(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(index=dataclasses.replace(settings.index, **changes))


@pytest.fixture
def corpus(spark: Any, settings: Settings) -> dict[str, Any]:
    """1,200 images with embeddings; 20 private and 20 deleted ones; CHAMPION = m1."""
    n = 1200
    ids = [f"img-{i:05d}" for i in range(n)]
    vectors = clustered(n, DIM, seed=1)
    private = set(ids[:20])
    deleted = set(ids[20:40])
    write_images(spark, settings, ids, status={i: "deleted" for i in deleted}, private=private)
    write_embeddings(spark, settings, ids, vectors)
    open_store(settings.artifacts).write_pointer("models/CHAMPION", MV)
    return {"ids": ids, "vectors": vectors, "hidden": private | deleted}


def test_flat_sharded_build__same_ids_as_one_unsharded_exact_index_then_published(
    spark: Any, settings: Settings, corpus: dict[str, Any]
) -> None:
    settings = with_index(settings, shards=3)
    result = build_index.run(settings, "2026-01-02", spark=spark)
    assert result["factory"] == "IDMap,Flat"
    assert result["shards"] == 3
    store = open_store(settings.artifacts)
    assert current_build_id(store, "main") is None  # building never publishes

    visible = [i for i in corpus["ids"] if i not in corpus["hidden"]]
    rows = np.array([corpus["ids"].index(i) for i in visible])
    vectors = corpus["vectors"][rows]
    queries = clustered(50, DIM, seed=7)
    _, exact_rows = exact_search(vectors, queries, 10)
    expected = np.array(visible, dtype=object)[exact_rows]

    with load_build(store, "main", result["build_id"]) as build:
        assert sum(s.entry.count for s in build.shards) == len(visible)
        _, found = build.search(queries, 10)
        got = build.image_ids(found)
    assert (got == expected).all()
    assert not set(got.ravel()) & corpus["hidden"]

    published = publish_index.run(settings, "2026-01-02", spark=spark)
    assert published["published"] is True
    assert published["recall"] == pytest.approx(1.0)
    assert current_build_id(store, "main") == result["build_id"]
    again = publish_index.run(settings, "2026-01-02", spark=spark)
    assert again["already_live"] is True


def test_rerun_with_same_inputs__same_manifest_apart_from_timestamps(spark: Any, settings: Settings,
                                                                     corpus: dict[str, Any]) -> None:
    first = build_index.run(settings, "2026-01-02", spark=spark)
    store = open_store(settings.artifacts)
    before = read_manifest(store, "main", first["build_id"])
    second = build_index.run(settings, "2026-01-02", spark=spark)
    after = read_manifest(store, "main", second["build_id"])
    assert second["build_id"] == first["build_id"]
    assert after.stable_dict() == before.stable_dict()
    assert [s.sha256 for s in after.shards] == [s.sha256 for s in before.shards]


def test_crash_between_shard_upload_and_current__old_build_stays_live(
    spark: Any, settings: Settings, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_index.run(settings, "2026-01-02", spark=spark)
    store = open_store(settings.artifacts)
    publish_build(store, "main", first["build_id"], ds="2026-01-02")
    new_ids = [f"new-{i:04d}" for i in range(100)]
    write_images(spark, settings, new_ids, ds="2026-01-03")
    write_embeddings(spark, settings, corpus["ids"] + new_ids,
                     np.vstack([corpus["vectors"], clustered(100, DIM, seed=3)]))
    second = build_index.run(settings, "2026-01-03", spark=spark)
    assert second["build_id"] != first["build_id"]

    def crash(self: LocalStore, key: str, value: str, expected: str | None) -> None:
        raise RuntimeError("simulated crash before the pointer write")

    monkeypatch.setattr(LocalStore, "swap_pointer", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        publish_index.run(settings, "2026-01-03", spark=spark)
    monkeypatch.undo()
    assert current_build_id(store, "main") == first["build_id"]
    with load_build(store, "main") as live:
        assert live.build_id == first["build_id"]


def test_publish__count_mismatch_fails_and_current_is_untouched(spark: Any, settings: Settings,
                                                                corpus: dict[str, Any]) -> None:
    build_index.run(settings, "2026-01-02", spark=spark)
    # An image is deleted after the build: the build no longer matches the tables.
    victim = corpus["ids"][100]
    write_images(spark, settings, [victim], status={victim: "deleted"}, ds="2026-01-03")
    with pytest.raises(ValidationError, match="1 that should not be in it"):
        publish_index.run(settings, "2026-01-02", spark=spark)
    assert current_build_id(open_store(settings.artifacts), "main") is None


def test_incremental__delta_shard_tombstones_never_returned_then_compaction(
    spark: Any, settings: Settings, corpus: dict[str, Any]
) -> None:
    settings = with_index(settings, shards=2, compact_tombstone_share=0.5)
    store = open_store(settings.artifacts)
    base = build_index.run(settings, "2026-01-02", spark=spark)
    publish_index.run(settings, "2026-01-02", spark=spark)

    ids, vectors = list(corpus["ids"]), corpus["vectors"].copy()
    new_ids = [f"new-{i:04d}" for i in range(60)]
    gone = ids[100:110]  # deleted on day 3
    hidden = ids[110:115]  # made private on day 3
    changed = ids[200]  # re-embedded with a different vector
    vectors[200] = clustered(1, DIM, seed=99)[0]
    write_images(spark, settings, new_ids, ds="2026-01-03")
    write_images(spark, settings, gone + hidden, status={i: "deleted" for i in gone}, private=set(hidden),
                 ds="2026-01-03")
    write_embeddings(spark, settings, ids + new_ids, np.vstack([vectors, clustered(60, DIM, seed=5)]))

    inc = build_index.run(settings, "2026-01-03", spark=spark)
    assert inc["build_kind"] == "incremental"
    assert inc["delta_shards"] == 1
    assert inc["tombstones"] == len(gone) + len(hidden) + 1
    manifest = read_manifest(store, "main", inc["build_id"])
    assert manifest.parent_build_id == base["build_id"]
    parent = read_manifest(store, "main", base["build_id"])
    assert manifest.trained_key == parent.trained_key
    assert manifest.shards[: len(parent.shards)] == parent.shards
    assert manifest.shards[-1].count == len(new_ids) + 1
    publish_index.run(settings, "2026-01-03", spark=spark)

    dead_rows = [ids.index(i) for i in gone + hidden]
    with load_build(store, "main") as build:
        assert build.build_id == inc["build_id"]
        _, found = build.search(corpus["vectors"][dead_rows], 10)  # query with the dead vectors themselves
        returned = set(build.image_ids(found).ravel())
        assert not returned & set(gone + hidden)
        _, top = build.search(vectors[200:201], 1)  # the changed image's new vector finds itself
        assert build.image_ids(top)[0, 0] == changed
        scores, _ = build.search(corpus["vectors"][200:201], 10)
        assert scores[0, 0] < 0.999  # the old vector of the changed image is gone

    # Day 4: many deletions push the tombstone share past the threshold -> compaction.
    settings = with_index(settings, compact_tombstone_share=0.02)
    more_gone = ids[300:340]
    write_images(spark, settings, more_gone, status={i: "deleted" for i in more_gone}, ds="2026-01-04")
    comp = build_index.run(settings, "2026-01-04", spark=spark)
    assert comp["build_kind"] == "compaction"
    compacted = read_manifest(store, "main", comp["build_id"])
    assert compacted.tombstone_count == 0
    assert compacted.delta_shards == 0
    assert compacted.trained_key == parent.trained_key
    publish_index.run(settings, "2026-01-04", spark=spark)
    with load_build(store, "main") as build:
        _, found = build.search(corpus["vectors"][[ids.index(i) for i in more_gone]], 10)
        assert not set(build.image_ids(found).ravel()) & set(more_gone + gone + hidden)

    assert rollback(store, "main") == inc["build_id"]
    assert current_build_id(store, "main") == inc["build_id"]


def test_anisotropic_embeddings__pq_codes_get_an_opq_rotation_and_the_next_day_extends_it(
    spark: Any, settings: Settings
) -> None:
    n, dim = 6_000, DIM
    rng = np.random.default_rng(8)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = (rng.standard_normal((n, dim)) * 0.7 ** np.arange(dim)) @ basis.T  # a few directions dominate
    vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"img-{i:05d}" for i in range(n)]
    write_images(spark, settings, ids)
    write_embeddings(spark, settings, ids, vectors)
    open_store(settings.artifacts).write_pointer("models/CHAMPION", MV)
    # Room for 4-byte PQ codes only; their recall is far from exact search, so publishing accepts it.
    settings = with_index(settings, memory_budget_mb=0.1, min_publish_recall=0.0)

    plain = build_index.run(with_index(settings, rotation="never"), "2026-01-02", spark=spark)
    assert plain["factory"].startswith("IVF") and ",PQ4" in plain["factory"]
    result = build_index.run(settings, "2026-01-02", spark=spark)
    assert result["factory"] == "OPQ4," + plain["factory"]
    publish_index.run(settings, "2026-01-02", spark=spark)

    store = open_store(settings.artifacts)
    queries = vectors[:200]
    _, exact_rows = exact_search(vectors, queries, 10)
    recall = {}
    for build_id in (plain["build_id"], result["build_id"]):
        with load_build(store, "main", build_id) as build:
            _, found = build.search(queries, 10)
            got = build.image_ids(found)
        pairs = zip(got, exact_rows, strict=True)
        recall[build_id] = np.mean([len(set(g) & {ids[r] for r in e}) / 10 for g, e in pairs])
    assert recall[result["build_id"]] > recall[plain["build_id"]], recall

    more = [f"new-{i:03d}" for i in range(50)]
    write_images(spark, settings, more, ds="2026-01-03")
    write_embeddings(spark, settings, ids + more, np.vstack([vectors, vectors[:50]]))
    nxt = build_index.run(settings, "2026-01-03", spark=spark)  # the rotated quantizer is reused
    assert nxt["build_kind"] == "incremental" and nxt["factory"] == result["factory"]


def test_new_model_version__full_build(spark: Any, settings: Settings, corpus: dict[str, Any]) -> None:
    first = build_index.run(settings, "2026-01-02", spark=spark)
    publish_build(open_store(settings.artifacts), "main", first["build_id"], ds="2026-01-02")
    write_embeddings(spark, settings, corpus["ids"], clustered(len(corpus["ids"]), DIM, seed=4), mv="m2")
    open_store(settings.artifacts).write_pointer("models/CHAMPION", "m2")
    result = build_index.run(settings, "2026-01-03", spark=spark)
    assert result["build_kind"] == "full"
    assert result["model_version"] == "m2"
    with pytest.raises(ValueError, match="model version changed"):
        build_index.run(settings, "2026-01-03", spark=spark, mode="incremental")


@pytest.mark.parametrize("model_version", [None, "CHAMPION"])
def test_no_champion__clear_error(spark: Any, settings: Settings, model_version: str | None) -> None:
    with pytest.raises(LookupError, match="CHAMPION"):
        build_index.run(settings, "2026-01-02", spark=spark, model_version=model_version)


def test_unknown_model_version__clear_error(spark: Any, settings: Settings) -> None:
    with pytest.raises(ValueError, match="'m9' does not exist"):
        build_index.run(settings, "2026-01-02", spark=spark, model_version="m9")


def test_job_parser__model_version_champion_and_mode() -> None:
    from jobs.build_index import build_parser

    args = build_parser().parse_args(["--ds", "2026-01-01", "--model-version", "CHAMPION", "--mode", "full"])
    assert (args.ds, args.model_version, args.mode) == ("2026-01-01", "CHAMPION", "full")
    assert build_parser().parse_args(["--ds", "2026-01-01"]).model_version is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--ds", "2026-01-01", "--model", "m1"])  # no abbreviations
