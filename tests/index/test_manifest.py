"""The build manifest and the checksum-verifying reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.index_builds import clustered, make_build
from visearch.core.storage import ObjectStore, open_store
from visearch.index.faiss_index import exact_search
from visearch.index.manifest import (
    BuildNotFoundError,
    ChecksumError,
    IndexManifest,
    ShardEntry,
    list_build_ids,
    load_build,
    read_manifest,
)

IDS = [f"img-{i:04d}" for i in range(600)]
DIM = 16


@pytest.fixture
def vectors() -> np.ndarray:
    return clustered(len(IDS), DIM, seed=0)


def test_manifest__json_round_trip_is_identical(store: ObjectStore, vectors: np.ndarray) -> None:
    manifest = make_build(store, "main", "b-1", IDS, vectors, tombstoned=("img-0001",))
    text = manifest.to_json()
    assert IndexManifest.from_json(text) == manifest
    assert IndexManifest.from_json(text).to_json() == text
    assert read_manifest(store, "main", "b-1") == manifest
    assert list_build_ids(store, "main") == ["b-1"]


def test_manifest__unknown_field_or_version_is_rejected(store: ObjectStore, vectors: np.ndarray) -> None:
    data = make_build(store, "main", "b-1", IDS, vectors).to_dict()
    with pytest.raises(ValueError, match="unknown manifest fields: \\['surprise'\\]"):
        IndexManifest.from_json(json.dumps({**data, "surprise": 1}))
    with pytest.raises(ValueError, match="format_version 99"):
        IndexManifest.from_json(json.dumps({**data, "format_version": 99}))


def test_manifest__vector_count_must_match_shards_minus_tombstones(store: ObjectStore,
                                                                   vectors: np.ndarray) -> None:
    manifest = make_build(store, "main", "b-1", IDS, vectors)
    with pytest.raises(ValueError, match="vector_count 5"):
        manifest.with_changes(vector_count=5)


def test_shard_entry__kind_is_checked() -> None:
    with pytest.raises(ValueError, match="'other'"):
        ShardEntry(key="k", ids_key="i", count=1, bytes=1, sha256="a", ids_sha256="b", ids_bytes=1,
                   kind="other")


def test_stable_dict__ignores_timestamps_timings_and_latencies(store: ObjectStore,
                                                               vectors: np.ndarray) -> None:
    manifest = make_build(store, "main", "b-1", IDS, vectors)
    tune = {"nprobe": 4, "p50_ms": 1.0, "curve": [{"nprobe": 4, "recall": 0.9, "p50_ms": 1.0, "p99_ms": 2.0}]}
    a = manifest.with_changes(created_at="2026-01-01T00:00:00+00:00", timings={"x": 1.0}, tune=tune)
    b = manifest.with_changes(created_at="2026-01-02T09:00:00+00:00", timings={"x": 7.0},
                              tune={**tune, "p50_ms": 3.0, "curve": [{**tune["curve"][0], "p50_ms": 5.0}]})
    assert a.stable_dict() == b.stable_dict()
    assert a.stable_dict() != a.with_changes(tune={**tune, "nprobe": 8}).stable_dict()


def test_load_build__sharded_search_matches_exact_and_maps_image_ids(store: ObjectStore,
                                                                     vectors: np.ndarray) -> None:
    make_build(store, "main", "b-1", IDS, vectors, num_shards=3)
    store.write_pointer("indexes/main/CURRENT", "b-1")
    queries = clustered(20, DIM, seed=9)
    _, rows = exact_search(vectors, queries, 10)
    with load_build(store, "main") as build:
        assert build.build_id == "b-1"
        assert len(build.shards) == 3
        _, ids = build.search(queries, 10)
        assert (build.image_ids(ids) == np.array(IDS, dtype=object)[rows]).all()
        assert build.ids_of(["img-0003", "nope"])[1] == -1


def test_load_build__without_current_is_a_clear_error(store: ObjectStore) -> None:
    with pytest.raises(BuildNotFoundError, match="no CURRENT build"):
        load_build(store, "main")


def test_load_build__shard_with_wrong_checksum_is_refused(store: ObjectStore, vectors: np.ndarray) -> None:
    manifest = make_build(store, "main", "b-1", IDS, vectors)
    path = store.local_path(manifest.shards[1].key)
    assert path is not None
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"shard-00001\.faiss"):
        load_build(store, "main", "b-1")


def test_load_build__id_map_or_tombstones_with_wrong_checksum_is_refused(store: ObjectStore,
                                                                          vectors: np.ndarray) -> None:
    manifest = make_build(store, "main", "b-1", IDS, vectors, tombstoned=("img-0002",))
    assert manifest.tombstones_key is not None
    store.put_bytes(manifest.tombstones_key, b"not the tombstones")
    with pytest.raises(ChecksumError, match=r"tombstones\.parquet"):
        load_build(store, "main", "b-1")
    manifest = make_build(store, "main", "b-2", IDS, vectors)
    store.put_bytes(manifest.shards[0].ids_key, b"x")
    with pytest.raises(ChecksumError, match=r"ids\.parquet"):
        load_build(store, "main", "b-2")


def test_load_build__missing_shard_is_a_clear_error(store: ObjectStore, vectors: np.ndarray) -> None:
    manifest = make_build(store, "main", "b-1", IDS, vectors)
    store.delete(manifest.shards[0].key)
    with pytest.raises(BuildNotFoundError, match="missing object"):
        load_build(store, "main", "b-1")


def test_load_build__tombstoned_images_are_never_returned(store: ObjectStore, vectors: np.ndarray) -> None:
    dead = tuple(IDS[:30])
    make_build(store, "main", "b-1", IDS, vectors, tombstoned=dead)
    with load_build(store, "main", "b-1") as build:
        scores, ids = build.search(vectors[:30], 10)  # the dead images' own vectors as queries
        found = set(build.image_ids(ids).ravel())
        assert not found & set(dead)
        assert (ids >= 0).all()  # still k results each
        assert (scores[:, 0] < 0.9999).all()


@pytest.mark.s3
def test_load_build__from_s3_downloads_verifies_and_cleans_up(s3_server: object, vectors: np.ndarray) -> None:
    server = s3_server
    server.create_bucket("idx")  # type: ignore[attr-defined]
    store = open_store("s3://idx/artifacts")
    make_build(store, "main", "b-1", IDS, vectors)
    store.write_pointer("indexes/main/CURRENT", "b-1")
    build = load_build(store, "main")
    cache = build._cache_dir
    assert cache is not None and any(cache.iterdir())
    _, ids = build.search(vectors[:5], 1)
    assert build.image_ids(ids)[:, 0].tolist() == IDS[:5]
    build.close()
    assert not cache.exists()


def test_load_build__ivf_shards_memory_mapped_with_tombstones(store: ObjectStore) -> None:
    ids = [f"v-{i:05d}" for i in range(3000)]
    vectors = clustered(3000, DIM, seed=3)
    manifest = make_build(store, "main", "b-ivf", ids, vectors, memory_budget=150_000,
                          tombstoned=tuple(ids[:5]))
    assert manifest.factory.startswith("IVF")
    with load_build(store, "main", "b-ivf", mmap=True) as build:
        _, found = build.search(vectors[:40], 10, nprobe=manifest.plan["nlist"])  # every list: exact order
        got = build.image_ids(found)
    alive = np.array(ids[5:], dtype=object)
    _, rows = exact_search(vectors[5:], vectors[:40], 10)
    overlap = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, alive[rows], strict=True)])
    assert overlap > 0.9  # SQ8 codes: near-exact
    assert not set(got.ravel()) & set(ids[:5])
