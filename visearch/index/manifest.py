"""The index build manifest and the reader that loads a build safely.

A build lives at ``indexes/<name>/<build_id>/`` in the artifacts store::

    manifest.json            what this file's IndexManifest holds (written last by the builder)
    trained.faiss            the trained empty index (reused by incremental builds)
    shard-NNNNN.faiss        one Faiss index per shard, ids = Faiss ids
    shard-NNNNN.ids.parquet  id (int64) -> image_id, plus vhash (xxhash64 of the vector)
    tombstones.parquet       (shard_key, id, image_id) dropped at query time (incremental builds)

An incremental build's manifest lists its parent's shards (by their keys in the parent's folder)
plus a delta shard. ``indexes/<name>/CURRENT`` names the live build; ``load_build`` reads it,
checks every object's sha256 before use and memory-maps shards where the store is local.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visearch.core.provenance import git_sha as git_sha  # re-exported for builders of manifests
from visearch.core.storage import ObjectStore, sha256_bytes, sha256_file
from visearch.index.faiss_index import IdExcluder, IvfInfo, ivf_info
from visearch.index.faiss_index import search as index_search
from visearch.index.shards import merge_topk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
TRAINED_FILE = "trained.faiss"
TOMBSTONES_FILE = "tombstones.parquet"
CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY.json"
"""The single history file of older builds (read-modify-write); read, no longer written."""
HISTORY_DIR = "history"
"""Folder of the publish/rollback events, one object each (see :mod:`visearch.index.publish`)."""
VOLATILE_FIELDS = ("created_at", "timings")
IDS_SCHEMA = pa.schema([("id", pa.int64()), ("image_id", pa.string()), ("vhash", pa.int64())])
TOMBSTONES_SCHEMA = pa.schema([("shard_key", pa.string()), ("id", pa.int64()), ("image_id", pa.string())])


class ChecksumError(Exception):
    """An object's bytes do not match the sha256 the manifest recorded."""

    def __init__(self, key: str, expected: str, actual: str) -> None:
        super().__init__(f"checksum mismatch for {key}: manifest says {expected}, object has {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class BuildNotFoundError(FileNotFoundError):
    """No such build (or no CURRENT pointer yet)."""


def index_prefix(name: str) -> str:
    """The store prefix of an index's builds."""
    if not name or "/" in name:
        raise ValueError(f"index name must be a non-empty word without '/', got {name!r}")
    return f"indexes/{name}"


def build_prefix(name: str, build_id: str) -> str:
    """The store prefix of one build."""
    if not build_id or "/" in build_id:
        raise ValueError(f"build id must be a non-empty word without '/', got {build_id!r}")
    return f"{index_prefix(name)}/{build_id}"


def shard_key(name: str, build_id: str, number: int) -> str:
    """Key of shard ``number``'s Faiss file in a build."""
    return f"{build_prefix(name, build_id)}/shard-{number:05d}.faiss"


def ids_key_for(key: str) -> str:
    """The id-map key that goes with a shard key."""
    if not key.endswith(".faiss"):
        raise ValueError(f"not a shard key: {key!r}")
    return key[: -len(".faiss")] + ".ids.parquet"


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a build: its Faiss file and id map, with sizes and checksums."""

    key: str
    ids_key: str
    count: int
    bytes: int
    sha256: str
    ids_sha256: str
    ids_bytes: int
    kind: str = "base"

    def __post_init__(self) -> None:
        if self.kind not in ("base", "delta"):
            raise ValueError(f"shard kind must be 'base' or 'delta', got {self.kind!r}")
        if self.count < 0:
            raise ValueError(f"shard count must be >= 0, got {self.count}")


@dataclass(frozen=True)
class IndexManifest:
    """Everything a reader needs to load, verify and search one build (``manifest.json``)."""

    build_id: str
    index_name: str
    build_kind: str
    model_version: str
    dim: int
    metric: str
    factory: str
    default_nprobe: int
    default_ef_search: int
    embeddings_table_version: int
    created_ds: str
    git_sha: str
    shards: tuple[ShardEntry, ...]
    vector_count: int
    tombstone_count: int
    validation_recall: float
    validation_k: int
    tune: dict[str, Any]
    plan: dict[str, Any]
    trained_key: str
    trained_sha256: str
    input_fingerprint: str
    tombstones_key: str | None = None
    tombstones_sha256: str | None = None
    parent_build_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.build_kind not in ("full", "incremental", "compaction"):
            raise ValueError(f"build_kind must be full, incremental or compaction, got {self.build_kind!r}")
        if (self.tombstones_key is None) != (self.tombstones_sha256 is None):
            raise ValueError("tombstones_key and tombstones_sha256 go together")
        stored = sum(s.count for s in self.shards)
        if self.vector_count != stored - self.tombstone_count:
            raise ValueError(
                f"vector_count {self.vector_count} != shard vectors {stored} "
                f"- tombstones {self.tombstone_count}"
            )

    @property
    def stored_count(self) -> int:
        """Vectors in the shards, tombstoned ones included."""
        return sum(s.count for s in self.shards)

    @property
    def delta_shards(self) -> int:
        """How many delta shards the build carries."""
        return sum(1 for s in self.shards if s.kind == "delta")

    def object_keys(self) -> list[str]:
        """Every object key the build needs (shards, id maps, trained index, tombstones)."""
        keys = [self.trained_key]
        for shard in self.shards:
            keys += [shard.key, shard.ids_key]
        if self.tombstones_key:
            keys.append(self.tombstones_key)
        return keys

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        data = asdict(self)
        data["shards"] = [asdict(s) for s in self.shards]
        return data

    def to_json(self) -> str:
        """The ``manifest.json`` text (sorted keys, so equal manifests are equal text)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    def stable_dict(self) -> dict[str, Any]:
        """The manifest without what changes from run to run (timestamps, timings, latencies).

        A rerun with the same inputs gives the same ``stable_dict``.
        """
        data = self.to_dict()
        for key in VOLATILE_FIELDS:
            data.pop(key, None)
        tune = dict(data.get("tune") or {})
        tune.pop("p50_ms", None)
        tune["curve"] = [{k: v for k, v in p.items() if not k.endswith("_ms")} for p in tune.get("curve", [])]
        data["tune"] = tune
        return data

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        """Parse ``manifest.json``.

        Raises:
            ValueError: for malformed JSON, unknown fields or an unsupported format version.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest is not valid JSON: {exc}") from exc
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported manifest format_version {version!r} (expected {FORMAT_VERSION})")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown manifest fields: {sorted(unknown)}")
        data["shards"] = tuple(ShardEntry(**s) for s in data["shards"])
        return cls(**data)

    def with_changes(self, **changes: Any) -> IndexManifest:
        """A copy with fields replaced."""
        return replace(self, **changes)


def write_manifest(store: ObjectStore, manifest: IndexManifest) -> str:
    """Write ``manifest.json`` into the build's folder (the builder's last write); return its key."""
    key = f"{build_prefix(manifest.index_name, manifest.build_id)}/{MANIFEST_FILE}"
    store.put_text(key, manifest.to_json())
    return key


def read_manifest(store: ObjectStore, name: str, build_id: str) -> IndexManifest:
    """Read one build's manifest.

    Raises:
        BuildNotFoundError: when the build has no manifest (never built, or unfinished).
        ValueError: for a malformed manifest or one that names another build.
    """
    key = f"{build_prefix(name, build_id)}/{MANIFEST_FILE}"
    if not store.exists(key):
        raise BuildNotFoundError(f"no manifest at {store.uri(key)}")
    manifest = IndexManifest.from_json(store.get_text(key))
    if manifest.build_id != build_id or manifest.index_name != name:
        raise ValueError(f"{store.uri(key)} describes {manifest.index_name}/{manifest.build_id}")
    return manifest


def current_build_id(store: ObjectStore, name: str) -> str | None:
    """The build ``CURRENT`` names, or ``None`` before the first publish."""
    return store.read_pointer(f"{index_prefix(name)}/{CURRENT_FILE}")


def list_build_ids(store: ObjectStore, name: str) -> list[str]:
    """Ids of the builds that have a manifest (finished builds), sorted."""
    prefix = index_prefix(name) + "/"
    ids = set()
    for key in store.list(prefix):
        rest = key[len(prefix):]
        if rest.count("/") == 1 and rest.endswith("/" + MANIFEST_FILE):
            ids.add(rest.split("/", 1)[0])
    return sorted(ids)


IDS_METADATA_COLUMNS = ("uri", "sha256", "phash")
"""Optional string columns of an id map: what the serving tier re-ranks with (visearch.serve.search)."""


def write_ids_table(
    path: str | Path,
    ids: np.ndarray,
    image_ids: list[str],
    vhash: np.ndarray,
    extra: dict[str, list[str | None]] | None = None,
) -> None:
    """Write a shard's id map (``id``, ``image_id``, ``vhash``, then ``extra`` string columns) as Parquet.

    Raises:
        ValueError: when an ``extra`` column is not one of ``IDS_METADATA_COLUMNS`` or has another length.
    """
    table = pa.table({"id": pa.array(ids, pa.int64()), "image_id": pa.array(image_ids, pa.string()),
                      "vhash": pa.array(vhash, pa.int64())}, schema=IDS_SCHEMA)
    for name, values in (extra or {}).items():
        if name not in IDS_METADATA_COLUMNS or len(values) != table.num_rows:
            raise ValueError(f"extra id-map column {name!r} ({len(values)} values) must be one of "
                             f"{IDS_METADATA_COLUMNS} with {table.num_rows} values")
        table = table.append_column(name, pa.array(values, pa.string()))
    pq.write_table(table, str(path), compression="zstd")


def write_tombstones(store: ObjectStore, key: str, rows: pa.Table) -> str:
    """Write a tombstone table (shard_key, id, image_id), sorted for determinism; return its sha256."""
    rows = rows.select(TOMBSTONES_SCHEMA.names).cast(TOMBSTONES_SCHEMA)
    rows = rows.sort_by([("shard_key", "ascending"), ("id", "ascending")])
    buf = io.BytesIO()
    pq.write_table(rows, buf, compression="zstd")
    return store.put_bytes(key, buf.getvalue())


def read_tombstones(store: ObjectStore, manifest: IndexManifest, *, verify: bool = True) -> pa.Table:
    """The build's tombstones (empty table when it has none).

    Raises:
        ChecksumError: when ``verify`` and the object does not match the manifest.
    """
    if not manifest.tombstones_key:
        return TOMBSTONES_SCHEMA.empty_table()
    data = store.get_bytes(manifest.tombstones_key)
    if verify:
        _check(manifest.tombstones_key, manifest.tombstones_sha256 or "", sha256_bytes(data))
    return pq.read_table(io.BytesIO(data)).cast(TOMBSTONES_SCHEMA)


def _check(key: str, expected: str, actual: str) -> None:
    if expected != actual:
        raise ChecksumError(key, expected, actual)


@dataclass
class LoadedShard:
    """A shard ready to search: its index, id map and the ids tombstoned in it."""

    entry: ShardEntry
    index: faiss.Index
    ids: np.ndarray
    image_ids: np.ndarray
    tombstoned: np.ndarray
    excluder: IdExcluder | None = None

    def __post_init__(self) -> None:
        if self.excluder is None and self.tombstoned.size:
            self.excluder = IdExcluder(self.tombstoned)


class LoadedBuild:
    """A verified, loaded build: search all shards, merge, drop tombstones, map ids to image ids."""

    def __init__(self, manifest: IndexManifest, shards: list[LoadedShard], cache_dir: Path | None) -> None:
        self.manifest = manifest
        self.shards = shards
        self._cache_dir = cache_dir
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._image_id_to_id: dict[str, int] | None = None
        infos = [ivf_info(s.index) for s in shards]
        self.tunable = IvfInfo(max((i.nlist for i in infos), default=0), any(i.hnsw_quantizer for i in infos))

    @property
    def build_id(self) -> str:
        """The build's id."""
        return self.manifest.build_id

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over every shard: (nq, k) similarities (desc) and Faiss ids, tombstones excluded.

        Defaults to the build's tuned ``nprobe`` / ``efSearch``. Shards are searched in parallel
        threads (Faiss releases the GIL); the merge is :func:`visearch.index.shards.merge_topk`.

        Raises:
            ValueError: for queries of the wrong shape or ``k`` < 1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            raise ValueError(f"queries must have shape (nq, {self.manifest.dim}), got {queries.shape}")
        nprobe = nprobe or self.manifest.default_nprobe or None
        ef_search = ef_search or self.manifest.default_ef_search or None

        def one(shard: LoadedShard) -> tuple[np.ndarray, np.ndarray]:
            if shard.entry.count == 0:
                return (np.full((queries.shape[0], k), -np.inf, np.float32),
                        np.full((queries.shape[0], k), -1, np.int64))
            return index_search(shard.index, queries, k, nprobe=nprobe, ef_search=ef_search,
                                exclude=shard.excluder)

        if len(self.shards) > 1:
            results = list(self._executor().map(one, self.shards))
        else:
            results = [one(s) for s in self.shards]
        return merge_topk([r[0] for r in results], [r[1] for r in results], k)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(8, len(self.shards)),
                                                thread_name_prefix="visearch-shard")
            return self._pool

    def image_ids(self, ids: np.ndarray) -> np.ndarray:
        """Map Faiss ids (any shape) to image ids; -1 maps to ``""``.

        Raises:
            KeyError: for an id that no shard holds.
        """
        flat = np.asarray(ids, dtype=np.int64).ravel()
        out = np.full(flat.shape, "", dtype=object)
        for shard in self.shards:
            if not shard.ids.size:
                continue
            pos = np.searchsorted(shard.ids, flat)
            pos = np.clip(pos, 0, shard.ids.size - 1)
            hit = (shard.ids[pos] == flat) & (flat >= 0) & (out == "")
            out[hit] = shard.image_ids[pos[hit]]
        missing = (flat >= 0) & (out == "")
        if missing.any():
            raise KeyError(f"faiss id {int(flat[missing][0])} is in no shard of {self.build_id}")
        return out.reshape(np.shape(ids))

    def ids_of(self, image_ids: list[str]) -> np.ndarray:
        """The live Faiss id of each image id (-1 for one not live in this build)."""
        with self._lock:
            if self._image_id_to_id is None:
                mapping: dict[str, int] = {}
                for shard in self.shards:
                    dead = set(shard.tombstoned.tolist())
                    for fid, image_id in zip(shard.ids.tolist(), shard.image_ids.tolist(), strict=True):
                        if fid not in dead:
                            mapping[image_id] = fid
                self._image_id_to_id = mapping
        return np.array([self._image_id_to_id.get(i, -1) for i in image_ids], dtype=np.int64)

    def close(self) -> None:
        """Stop the search threads and remove downloaded shard files."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None

    def __enter__(self) -> LoadedBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _local_verified_path(
    store: ObjectStore, key: str, expected: str, cache_dir: Path | None, verify: bool
) -> tuple[Path, Path | None]:
    """A local path for ``key`` (the store's own file, or a download), checked against ``expected``."""
    path = store.local_path(key)
    if path is None:
        if cache_dir is None:
            cache_dir = Path(tempfile.mkdtemp(prefix="visearch-index-"))
        path = store.get_file(key, cache_dir / key.replace("/", "__"))
    elif not path.is_file():
        raise BuildNotFoundError(f"missing object {store.uri(key)}")
    if verify:
        _check(key, expected, sha256_file(path))
    return path, cache_dir


def _read_ids(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(str(path), columns=["id", "image_id"])
    ids = table.column("id").to_numpy().astype(np.int64)
    image_ids = np.array(table.column("image_id").to_pylist(), dtype=object)
    order = np.argsort(ids, kind="stable")
    return ids[order], image_ids[order]


def load_build(
    store: ObjectStore,
    name: str,
    build_id: str | None = None,
    *,
    verify: bool = True,
    mmap: bool = True,
    cache_dir: str | Path | None = None,
) -> LoadedBuild:
    """Load a build (``CURRENT`` by default) for searching, checking every object's sha256 first.

    Shards are memory-mapped (``IO_FLAG_MMAP``) straight from a local store, or from a local
    download (into ``cache_dir`` or a temporary folder removed by ``close()``) for S3.

    Raises:
        BuildNotFoundError: when there is no ``CURRENT`` (and no ``build_id``), no manifest, or
            a listed object is missing.
        ChecksumError: when any object does not match its recorded sha256.
    """
    if build_id is None:
        build_id = current_build_id(store, name)
        if build_id is None:
            raise BuildNotFoundError(f"{store.uri(index_prefix(name))} has no CURRENT build")
    manifest = read_manifest(store, name, build_id)
    return open_build(store, manifest, verify=verify, mmap=mmap, cache_dir=cache_dir)


def open_build(
    store: ObjectStore,
    manifest: IndexManifest,
    *,
    verify: bool = True,
    mmap: bool = True,
    cache_dir: str | Path | None = None,
) -> LoadedBuild:
    """Load the build a manifest describes (also before that manifest is written, for tuning).

    Raises:
        BuildNotFoundError: for a missing object.
        ChecksumError: when any object does not match its recorded sha256.
        ValueError: when a shard's vector or id count differs from the manifest.
    """
    tomb = read_tombstones(store, manifest, verify=verify)
    by_shard: dict[str, list[int]] = {}
    for key, fid in zip(tomb.column("shard_key").to_pylist(), tomb.column("id").to_pylist(), strict=True):
        by_shard.setdefault(key, []).append(int(fid))
    cache = Path(cache_dir) if cache_dir is not None else None
    owned_cache = cache is None
    shards: list[LoadedShard] = []
    try:
        for entry in manifest.shards:
            path, cache = _local_verified_path(store, entry.key, entry.sha256, cache, verify)
            ids_path, cache = _local_verified_path(store, entry.ids_key, entry.ids_sha256, cache, verify)
            flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
            index = faiss.read_index(str(path), flags)
            if index.ntotal != entry.count:
                raise ValueError(f"{entry.key} holds {index.ntotal} vectors, manifest says {entry.count}")
            ids, image_ids = _read_ids(ids_path)
            if ids.size != entry.count:
                raise ValueError(f"{entry.ids_key} maps {ids.size} ids, manifest says {entry.count}")
            dead = np.array(sorted(by_shard.get(entry.key, [])), dtype=np.int64)
            shards.append(LoadedShard(entry, index, ids, image_ids, dead))
    except BaseException:
        if owned_cache and cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
        raise
    unknown = set(by_shard) - {s.key for s in manifest.shards}
    if unknown:
        raise ValueError(f"tombstones name shards not in the build: {sorted(unknown)[:3]}")
    log.info("loaded %s/%s: %d shards, %d vectors (%d tombstoned)", manifest.index_name, manifest.build_id,
             len(shards),
             manifest.stored_count, manifest.tombstone_count)
    return LoadedBuild(manifest, shards, cache if owned_cache else None)


def verify_build(store: ObjectStore, manifest: IndexManifest) -> None:
    """Check that every object of a build exists and matches its sha256 (without loading Faiss).

    Raises:
        BuildNotFoundError: for a missing object.
        ChecksumError: for a mismatch.
    """
    expected = {manifest.trained_key: manifest.trained_sha256}
    for shard in manifest.shards:
        expected[shard.key] = shard.sha256
        expected[shard.ids_key] = shard.ids_sha256
    if manifest.tombstones_key:
        expected[manifest.tombstones_key] = manifest.tombstones_sha256 or ""
    for key, sha in expected.items():
        if not store.exists(key):
            raise BuildNotFoundError(f"missing object {store.uri(key)}")
        local = store.local_path(key)
        actual = sha256_file(local) if local is not None else sha256_bytes(store.get_bytes(key))
        _check(key, sha, actual)
