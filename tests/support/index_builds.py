"""Small index builds in a store without Spark (what :mod:`visearch.index.build` writes, in one process),
and the artifact-store fixture the index tests share (registered by ``tests/index/conftest.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from visearch.core.storage import ObjectStore, open_store
from visearch.index.faiss_index import ShardBuilder, choose_index, serialize, train_index
from visearch.index.manifest import (
    TOMBSTONES_FILE,
    TRAINED_FILE,
    IndexManifest,
    ShardEntry,
    build_prefix,
    ids_key_for,
    shard_key,
    write_ids_table,
    write_manifest,
    write_tombstones,
)
from visearch.index.shards import assign_ids, shards_of


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """An empty ``file://`` artifacts store in the test's temporary folder."""
    return open_store("file://" + str(tmp_path / "artifacts"))


def clustered(n: int, dim: int, seed: int, clusters: int = 20, spread: float = 0.5) -> np.ndarray:
    """(n, dim) L2-normalised float32 vectors drawn around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_build(
    store: ObjectStore,
    name: str,
    build_id: str,
    image_ids: list[str],
    vectors: np.ndarray,
    *,
    ds: str = "2026-01-01",
    num_shards: int = 2,
    tombstoned: tuple[str, ...] = (),
    memory_budget: int = 1 << 30,
) -> IndexManifest:
    """Build, upload and describe a build (manifest written last); ``tombstoned`` images are dropped
    at query time through the tombstone list."""
    n, dim = vectors.shape
    plan = choose_index(n, dim, memory_budget)
    trained = train_index(plan, vectors)
    prefix = build_prefix(name, build_id)
    trained_key = f"{prefix}/{TRAINED_FILE}"
    trained_sha = store.put_bytes(trained_key, serialize(trained))
    ids = assign_ids(image_ids)
    shard_numbers = shards_of(image_ids, num_shards)
    entries = []
    where: dict[str, tuple[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(num_shards):
            rows = [i for i in range(n) if shard_numbers[i] == number]
            rows.sort(key=lambda i: ids[image_ids[i]])
            if not rows:
                continue
            fids = np.array([ids[image_ids[i]] for i in rows], dtype=np.int64)
            builder = ShardBuilder(trained)
            builder.add(vectors[rows], fids)
            key = shard_key(name, build_id, number)
            path = Path(tmp) / f"{number}.faiss"
            faiss.write_index(builder.finish(), str(path))
            sha = store.put_file(key, path)
            ids_path = Path(tmp) / f"{number}.ids.parquet"
            write_ids_table(ids_path, fids, [image_ids[i] for i in rows], np.zeros(len(rows), np.int64))
            ids_sha = store.put_file(ids_key_for(key), ids_path)
            entries.append(ShardEntry(key=key, ids_key=ids_key_for(key), count=len(rows),
                                      bytes=path.stat().st_size, sha256=sha, ids_sha256=ids_sha,
                                      ids_bytes=ids_path.stat().st_size))
            for i in rows:
                where[image_ids[i]] = (key, ids[image_ids[i]])
    tomb_key = tomb_sha = None
    if tombstoned:
        table = pa.table({"shard_key": [where[i][0] for i in tombstoned],
                          "id": [where[i][1] for i in tombstoned], "image_id": list(tombstoned)})
        tomb_key = f"{prefix}/{TOMBSTONES_FILE}"
        tomb_sha = write_tombstones(store, tomb_key, table)
    manifest = IndexManifest(
        build_id=build_id, index_name=name, build_kind="full", model_version="m1", dim=dim,
        metric=plan.metric, factory=plan.factory, default_nprobe=plan.default_nprobe, default_ef_search=0,
        embeddings_table_version=0, created_ds=ds, git_sha="test", shards=tuple(entries),
        vector_count=n - len(tombstoned), tombstone_count=len(tombstoned), validation_recall=1.0,
        validation_k=10, tune={}, plan=plan.to_dict(), trained_key=trained_key, trained_sha256=trained_sha,
        input_fingerprint=build_id, tombstones_key=tomb_key, tombstones_sha256=tomb_sha,
        created_at=f"{ds}T00:00:00+00:00",
    )
    write_manifest(store, manifest)
    return manifest
