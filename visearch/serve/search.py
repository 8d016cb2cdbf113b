"""The serving side: load the published index and answer "images that look like this (crop)".

:class:`Searcher` follows ``indexes/<name>/CURRENT`` in the artifacts store:

- loading (:meth:`Searcher.from_published`): the build's manifest, every object checked against
  its sha256 (:func:`visearch.index.manifest.load_build`), shards memory-mapped where the store is local,
  the re-rank metadata of every shard (``uri``, ``sha256``, ``phash`` columns of the id maps,
  checked again against the manifest), and the TorchScript export of the model version the build
  was made with (``models/<manifest.model_version>/``, not necessarily today's champion: a query
  must be embedded by the model that embedded the corpus);
- a query (:meth:`Searcher.search`): the image (bytes, a path or a PIL image) and an optional
  crop box in pixels go through the shared preprocessing (:func:`visearch.train.preprocess.preprocess`),
  the model embeds it, every shard is searched in parallel threads and the per-shard top lists
  are merged (:meth:`visearch.index.manifest.LoadedBuild.search`, over-fetching ``k * overfetch``),
  then :func:`visearch.serve.rerank.rerank` drops hits without a live row in the build (tombstoned)
  and the query itself (same file sha256), and collapses near-duplicates; when the rules leave
  fewer than ``k`` and the index has more, the query is searched again deeper. Each response
  carries per-stage timings in ms;
- private and deleted images: ``build_index`` only indexes images whose ``silver.images`` row is
  ``ok`` and public; an image deleted or made private later is tombstoned (incremental build) or
  left out (full build) by the next nightly build, so once that build is live it cannot come
  back: Faiss skips tombstoned ids inside the search, and the live-row check above drops any
  that would slip through;
- hot reload (:meth:`Searcher.maybe_reload`, or a watcher thread from
  :meth:`Searcher.start_watching`): when ``CURRENT`` names another build, the new build (and its
  model, when the version changed) is loaded completely *beside* the live one, then swapped in
  under a lock. Requests already running finish on the build they started with; the old build
  is closed when the last of them is done. A build that fails to load (checksum, missing
  object) is logged and reported by :meth:`Searcher.health`, and the old build keeps serving.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from visearch.core.config import S3Settings, SearchSettings, Settings
from visearch.core.storage import ObjectStore, open_store, sha256_bytes
from visearch.index.manifest import (
    IDS_METADATA_COLUMNS,
    ChecksumError,
    LoadedBuild,
    LoadedShard,
    current_build_id,
    load_build,
)
from visearch.serve.rerank import Candidate, DuplicateRule, rerank
from visearch.train.preprocess import ImageDecodeError, preprocess
from visearch.train.registry import LoadedModel, ModelRegistry

log = logging.getLogger(__name__)

#: What a query image may be: encoded bytes, a path to a file, or an opened PIL image.
QueryImage = bytes | bytearray | memoryview | str | Path | Image.Image
#: A crop box ``(x, y, width, height)`` in pixels of the (EXIF-oriented) query image.
Crop = Sequence[int]

STAGES = ("decode", "embed", "search", "rerank", "total")
_RETRY_FAILED_FACTOR = 10
_REFETCH_GROWTH = 4


class ImageTooLargeError(ValueError):
    """The query image has more pixels than the serving limit (``search.max_pixels``)."""


class SearchResult(NamedTuple):
    """One result: the image, its similarity to the query (cosine) and where its file is."""

    image_id: str
    score: float
    uri: str


@dataclass(frozen=True)
class SearchResponse:
    """Results (most similar first) and what produced them.

    Attributes:
        results: at most ``k`` results after re-ranking.
        build_id: the index build that answered.
        model_version: the model that embedded the query (the one the build was made with).
        timings: milliseconds per stage (``decode``, ``embed``, ``search``, ``rerank``,
            ``total``); for a batch, the figures of the whole batch.
        dropped: candidates removed by each re-ranking rule (``private``, ``status``,
            ``tombstoned``, ``query``, ``near_duplicate``, ``beyond_k``).
        fetched: how many candidates the index was asked for (after any deeper re-search).
    """

    results: tuple[SearchResult, ...]
    build_id: str
    model_version: str
    timings: dict[str, float]
    dropped: dict[str, int] = field(default_factory=dict)
    fetched: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``POST /search`` returns)."""
        return {
            "results": [{"rank": i + 1, "image_id": r.image_id, "score": round(r.score, 6), "uri": r.uri}
                        for i, r in enumerate(self.results)],
            "build_id": self.build_id,
            "model_version": self.model_version,
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
            "dropped": dict(self.dropped),
            "fetched": self.fetched,
        }


# ----------------------------------------------------------------------------- per-build state


class Reconstructor:
    """Gets stored vectors back from one shard's index by Faiss id (for the cosine duplicate rule).

    ``IDMap,Flat`` shards map ids to rows through the id map; IVF shards (also under an OPQ
    ``IndexPreTransform``) get a hash-table direct map, built once at load time, before the shard
    is shared with request threads. Compressed codes (PQ, SQ) give approximate vectors, which is
    enough to recognise duplicates. Other index types return ``None`` (the hash rule still works).
    """

    def __init__(self, index: faiss.Index) -> None:
        self.index = index
        self._inner: faiss.Index | None = None
        self._sorted_ids = np.zeros(0, dtype=np.int64)
        self._rows = np.zeros(0, dtype=np.int64)
        self.kind = "none"
        outer = faiss.downcast_index(index)
        if isinstance(outer, faiss.IndexIDMap):
            id_map = faiss.vector_to_array(outer.id_map).astype(np.int64)  # (n,) row -> id
            order = np.argsort(id_map, kind="stable")
            self._sorted_ids, self._rows = id_map[order], order.astype(np.int64)
            self._inner = faiss.downcast_index(outer.index)
            self.kind = "idmap"
            return
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            log.info("no vector reconstruction for %s: near-duplicates by perceptual hash only",
                     type(outer).__name__)
            return
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        self.kind = "ivf"

    def vectors(self, ids: np.ndarray) -> np.ndarray | None:
        """(n, d) stored vectors of ``ids`` (each must be in the shard), or None when unsupported."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind == "idmap":
            assert self._inner is not None
            pos = np.searchsorted(self._sorted_ids, ids)  # (n,)
            rows = self._rows[np.clip(pos, 0, max(0, self._rows.size - 1))]
            return np.asarray(self._inner.reconstruct_batch(rows), dtype=np.float32)  # (n, d)
        if self.kind == "ivf":
            return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)  # (n, d)
        return None


@dataclass
class ShardMetadata:
    """Re-rank metadata of one shard, aligned with ``LoadedShard.ids`` (sorted Faiss ids)."""

    live: np.ndarray  # (n,) bool: not tombstoned
    columns: dict[str, pa.Array]  # uri / sha256 / phash (those present in the id map)
    reconstructor: Reconstructor | None


def read_shard_metadata(store: ObjectStore, shard: LoadedShard, *, vectors: bool) -> ShardMetadata:
    """Read a shard's id map again for its metadata columns, checking its sha256 first.

    Raises:
        ChecksumError: when the id map does not match the manifest.
        ValueError: when its ids differ from the loaded shard's.
    """
    key = shard.entry.ids_key
    local = store.local_path(key)
    data = local.read_bytes() if local is not None else store.get_bytes(key)
    actual = sha256_bytes(data)
    if actual != shard.entry.ids_sha256:
        raise ChecksumError(key, shard.entry.ids_sha256, actual)
    table = pq.read_table(pa.BufferReader(data))
    ids = table.column("id").to_numpy().astype(np.int64)
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], shard.ids):
        raise ValueError(f"{key}: ids differ from the loaded shard's id map")
    take = pa.array(order)
    columns = {name: table.column(name).combine_chunks().take(take)
               for name in IDS_METADATA_COLUMNS if name in table.column_names}
    missing = [c for c in IDS_METADATA_COLUMNS if c not in columns]
    if missing and shard.entry.count:
        log.warning("%s has no %s columns (built before they were added): results without uri, "
                    "and no query or duplicate detection by file hash", key, missing)
    live = ~np.isin(shard.ids, shard.tombstoned)  # (n,)
    reconstructor = Reconstructor(shard.index) if vectors and shard.entry.count else None
    return ShardMetadata(live=live, columns=columns, reconstructor=reconstructor)


class LiveBuild:
    """One loaded build with its model and metadata, reference-counted by in-flight requests."""

    def __init__(self, build: LoadedBuild, model: LoadedModel | None, shards: list[ShardMetadata]) -> None:
        self.build = build
        self.model = model
        self.shards = shards
        self.loaded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.refs = 0
        self.retired = False

    @property
    def build_id(self) -> str:
        """The build's id."""
        return self.build.build_id

    @property
    def model_version(self) -> str:
        """The model version the build was embedded with."""
        return self.build.manifest.model_version

    def locate(self, fids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shard and row of each Faiss id's *live* entry: (m,) shard numbers and rows, -1 when none."""
        fids = np.asarray(fids, dtype=np.int64)
        shard_of = np.full(fids.shape, -1, dtype=np.int64)
        row_of = np.full(fids.shape, -1, dtype=np.int64)
        for s, (shard, meta) in enumerate(zip(self.build.shards, self.shards, strict=True)):
            if not shard.ids.size:
                continue
            pos = np.clip(np.searchsorted(shard.ids, fids), 0, shard.ids.size - 1)  # (m,)
            hit = (shard.ids[pos] == fids) & (fids >= 0) & (shard_of < 0) & meta.live[pos]
            shard_of[hit] = s
            row_of[hit] = pos[hit]
        return shard_of, row_of

    def candidates(self, scores: np.ndarray, fids: np.ndarray, *, with_vectors: bool
                   ) -> tuple[list[Candidate], np.ndarray | None]:
        """Candidates of one query's (m,) hits, and (m, d) vectors for the cosine rule (or None)."""
        valid = fids >= 0
        scores, fids = scores[valid], fids[valid]
        shard_of, row_of = self.locate(fids)
        image_ids = self.build.image_ids(fids)  # tombstoned-only ids still map to their image id
        fields: dict[str, list[Any]] = {name: [None] * fids.size for name in IDS_METADATA_COLUMNS}
        vectors: np.ndarray | None = None
        if with_vectors and fids.size:
            vectors = np.zeros((fids.size, self.build.manifest.dim), dtype=np.float32)  # (m, d)
        have_vectors = np.zeros(fids.size, dtype=bool)
        for s, meta in enumerate(self.shards):
            at = np.flatnonzero(shard_of == s)
            if not at.size:
                continue
            rows = pa.array(row_of[at])
            for name, column in meta.columns.items():
                values = column.take(rows).to_pylist()
                for i, value in zip(at.tolist(), values, strict=True):
                    fields[name][i] = value
            if vectors is not None and meta.reconstructor is not None:
                got = meta.reconstructor.vectors(fids[at])
                if got is not None:
                    vectors[at] = got
                    have_vectors[at] = True
        out = [
            Candidate(
                image_id=str(image_ids[i]), score=float(scores[i]), uri=fields["uri"][i] or "",
                sha256=fields["sha256"][i], phash=fields["phash"][i], live=bool(shard_of[i] >= 0),
                row=i if have_vectors[i] else -1,
            )
            for i in range(fids.size)
        ]
        return out, vectors

    def close(self) -> None:
        """Release the build (threads, downloaded shard files)."""
        self.build.close()


# ----------------------------------------------------------------------------- the searcher


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def warm_up(model: LoadedModel, calls: int = 2) -> None:
    """Run the model on a blank batch so the first real query does not pay for TorchScript's
    profiling and optimisation passes (hundreds of ms on the first calls)."""
    size = model.prep.size
    blank = torch.zeros(1, 3, size, size)  # (1, 3, S, S)
    for _ in range(calls):
        model.embed_tensors(blank)


def check_k(k: int, settings: SearchSettings) -> int:
    """``k`` as an int in ``[1, settings.max_k]``.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= settings.max_k:
        raise ValueError(f"k must be an integer between 1 and {settings.max_k}, got {k!r}")
    return int(k)


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """A crop box from ``"x,y,w,h"`` (integers, pixels).

    Raises:
        ValueError: when the text is not four comma-separated integers.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"crop must be x,y,w,h (four integers, pixels), got {text!r}")
    return values[0], values[1], values[2], values[3]


class Searcher:
    """Answers similarity queries on the live index build (see the module docstring).

    Thread-safe: any number of threads may call :meth:`search` while one reloads.
    """

    def __init__(
        self,
        store: ObjectStore,
        index_name: str,
        *,
        settings: SearchSettings | None = None,
        build_id: str | None = None,
        load_model: bool = True,
        device: str | torch.device = "cpu",
        mmap: bool = True,
    ) -> None:
        """Load ``build_id`` (pinned: no hot reload) or the build ``CURRENT`` names.

        Raises:
            visearch.index.manifest.BuildNotFoundError: without a ``CURRENT`` build (or the pinned one).
            visearch.index.manifest.ChecksumError: when an object does not match the manifest.
            FileNotFoundError: when the build's model version is not in ``models/``.
            ValueError: when the model's embedding size differs from the index's.
        """
        self.store = store
        self.index_name = index_name
        self.settings = settings or SearchSettings()
        self.pinned = build_id is not None
        self.load_model = load_model
        self.device = torch.device(device)
        self.mmap = mmap
        self.rule = DuplicateRule(self.settings.phash_max_distance, self.settings.dup_cosine)
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._last_check = time.monotonic()
        self._failed: tuple[str, float] | None = None
        self.last_reload_error: str | None = None
        self.reloads = 0
        self._live = self._load(build_id, None)

    @classmethod
    def from_published(
        cls,
        artifacts_uri: str,
        index_name: str = "main",
        *,
        settings: SearchSettings | None = None,
        s3: S3Settings | None = None,
        build_id: str | None = None,
        load_model: bool = True,
        device: str | torch.device = "cpu",
    ) -> Searcher:
        """A searcher on the published index ``index_name`` under ``artifacts_uri``.

        Raises:
            visearch.index.manifest.BuildNotFoundError: when nothing is published yet.
            visearch.index.manifest.ChecksumError: when an object does not match the manifest.
            FileNotFoundError: when the build's model version is missing.
        """
        return cls(open_store(artifacts_uri, s3), index_name, settings=settings, build_id=build_id,
                   load_model=load_model, device=device)

    @classmethod
    def from_settings(cls, settings: Settings, index_name: str | None = None, **kwargs: Any) -> Searcher:
        """A searcher on ``settings.artifacts`` with the ``search`` and ``s3`` sections."""
        return cls.from_published(settings.artifacts, index_name or settings.index.name,
                                  settings=settings.search, s3=settings.s3, **kwargs)

    # -- loading and hot reload ------------------------------------------------------------

    def _load(self, build_id: str | None, previous: LiveBuild | None) -> LiveBuild:
        started = time.perf_counter()
        build = load_build(self.store, self.index_name, build_id, verify=True, mmap=self.mmap)
        try:
            manifest = build.manifest
            model: LoadedModel | None = None
            if self.load_model:
                if previous is not None and previous.model is not None \
                        and previous.model.version == manifest.model_version:
                    model = previous.model
                else:
                    registry = ModelRegistry(self.store)
                    model = registry.load_exported(manifest.model_version, device=self.device)
                    warm_up(model)
                if model.embed_dim != manifest.dim:
                    raise ValueError(f"model {model.version} embeds in {model.embed_dim} dimensions, "
                                     f"index {manifest.build_id} holds {manifest.dim}")
            with_vectors = self.rule.min_cosine <= 1.0
            shards = [read_shard_metadata(self.store, s, vectors=with_vectors) for s in build.shards]
        except BaseException:
            build.close()
            raise
        live = LiveBuild(build, model, shards)
        log.info("serving %s/%s (model %s, %d vectors, %d shards), loaded in %.2fs", self.index_name,
                 live.build_id, manifest.model_version, manifest.vector_count, len(shards),
                 time.perf_counter() - started)
        return live

    @property
    def live(self) -> LiveBuild:
        """The build serving new requests now (hold it only briefly: a reload may retire it)."""
        return self._live

    @property
    def build_id(self) -> str:
        """The live build."""
        return self._live.build_id

    @property
    def model_version(self) -> str:
        """The model version of the live build."""
        return self._live.model_version

    def maybe_reload(self, *, force: bool = False) -> bool:
        """Swap in the build ``CURRENT`` names when it changed; True when a new build went live.

        Reads the pointer at most every ``reload_interval_s`` seconds unless ``force``. Only one
        thread loads at a time; others return at once. A build that fails to load is logged,
        kept in :attr:`last_reload_error`, and retried only after ten intervals.
        """
        if self.pinned:
            return False
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_check < self.settings.reload_interval_s:
                return False
            self._last_check = now
        if not self._reload_lock.acquire(blocking=False):
            return False
        try:
            target = current_build_id(self.store, self.index_name)
            live = self._live
            if target is None or target == live.build_id:
                return False
            if self._failed is not None and self._failed[0] == target \
                    and now - self._failed[1] < _RETRY_FAILED_FACTOR * self.settings.reload_interval_s:
                return False
            try:
                fresh = self._load(target, live)
            except Exception as exc:  # keep serving the old build; report the failure
                log.exception("could not load %s/%s; still serving %s", self.index_name, target,
                              live.build_id)
                self._failed = (target, now)
                self.last_reload_error = f"{target}: {type(exc).__name__}: {exc}"
                return False
            self._swap(fresh)
            self._failed = None
            self.last_reload_error = None
            return True
        finally:
            self._reload_lock.release()

    def _swap(self, fresh: LiveBuild) -> None:
        with self._lock:
            old = self._live
            self._live = fresh
            old.retired = True
            close_now = old.refs == 0
            self.reloads += 1
        log.info("hot reload: %s -> %s", old.build_id, fresh.build_id)
        if close_now:
            old.close()

    @contextmanager
    def _acquire(self) -> Iterator[LiveBuild]:
        """The live build, kept open until the block ends even if a reload retires it meanwhile."""
        with self._lock:
            live = self._live
            live.refs += 1
        try:
            yield live
        finally:
            with self._lock:
                live.refs -= 1
                close_now = live.retired and live.refs == 0
            if close_now:
                live.close()

    def start_watching(self, interval_s: float | None = None) -> None:
        """Check ``CURRENT`` every ``interval_s`` (default ``reload_interval_s``) in a daemon thread."""
        if self._watcher is not None or self.pinned:
            return
        interval = self.settings.reload_interval_s if interval_s is None else interval_s
        if interval <= 0:
            raise ValueError(f"watch interval must be > 0 seconds, got {interval}")

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.maybe_reload(force=True)
                except Exception:  # e.g. the store is unreachable for a moment
                    log.exception("checking %s/CURRENT failed", self.index_name)

        self._watcher = threading.Thread(target=loop, name="visearch-reload", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stop the watcher and release the live build."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
            self._watcher = None
        with self._lock:
            live = self._live
            live.retired = True
            close_now = live.refs == 0
        if close_now:
            live.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        """What is live: build, model, sizes, load time, reloads and the last reload error."""
        live = self._live
        manifest = live.build.manifest
        return {
            "status": "ok",
            "index": self.index_name,
            "build_id": live.build_id,
            "model_version": live.model_version,
            "vectors": manifest.vector_count,
            "shards": len(manifest.shards),
            "factory": manifest.factory,
            "loaded_at": live.loaded_at,
            "pinned": self.pinned,
            "reloads": self.reloads,
            "last_reload_error": self.last_reload_error,
        }

    # -- queries -----------------------------------------------------------------------------

    def _query_bytes(self, image: QueryImage) -> tuple[bytes | Image.Image, str | None]:
        """The query as bytes (or a PIL image) and the sha256 of its file (None for a PIL image).

        Raises:
            FileNotFoundError: for a path that does not exist.
            ImageTooLargeError: for more than ``max_pixels`` pixels.
            ImageDecodeError: when the data is not an image.
        """
        if isinstance(image, Image.Image):
            data: bytes | Image.Image = image
            sha = None
            size = image.size
        else:
            raw = Path(image).read_bytes() if isinstance(image, str | Path) else bytes(image)
            if not raw:
                raise ImageDecodeError("the query image is empty (0 bytes)")
            data, sha = raw, sha256_bytes(raw)
            try:
                with Image.open(io.BytesIO(raw)) as probe:  # reads the header only
                    size = probe.size
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(f"query image is too large: {exc}") from exc
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageDecodeError(f"the query is not an image Pillow can read ({len(raw)} bytes): "
                                       f"{exc}") from exc
        if size[0] * size[1] > self.settings.max_pixels:
            raise ImageTooLargeError(f"query image has {size[0]}x{size[1]} pixels, more than the limit of "
                                     f"{self.settings.max_pixels}")
        return data, sha

    def _embed(self, live: LiveBuild, images: Sequence[QueryImage], crops: Sequence[Crop | None],
               timings: dict[str, float]) -> tuple[np.ndarray, list[str | None]]:
        if live.model is None:
            raise RuntimeError(f"this searcher was opened without a model (build {live.build_id}); "
                               "search_embeddings() takes vectors")
        start = time.perf_counter()
        tensors, shas = [], []
        for image, crop in zip(images, crops, strict=True):
            data, sha = self._query_bytes(image)
            try:
                tensors.append(preprocess(data, live.model.prep, crop))  # (3, S, S)
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(f"query image is too large: {exc}") from exc
            shas.append(sha)
        timings["decode"] = _elapsed_ms(start)
        start = time.perf_counter()
        vectors = live.model.embed_tensors(torch.stack(tensors))  # (n, 3, S, S) -> (n, D)
        timings["embed"] = _elapsed_ms(start)
        return vectors, shas

    def search(self, image: QueryImage, crop: Crop | None = None, k: int | None = None) -> SearchResponse:
        """The ``k`` images most similar to ``image`` (or to the ``crop`` box of it), re-ranked.

        Args:
            image: encoded bytes, a file path, or a PIL image (a PIL image has no file hash,
                so the query itself cannot be recognised among the results).
            crop: ``(x, y, width, height)`` in pixels of the EXIF-oriented image.
            k: number of results (default ``settings.default_k``, at most ``max_k``).

        Raises:
            ImageDecodeError: (a ValueError) when the query is not a decodable image.
            ImageTooLargeError: (a ValueError) for more pixels than ``max_pixels``.
            ValueError: for a crop box with zero area or outside the image, or a bad ``k``.
            FileNotFoundError: for a path that does not exist.
        """
        return self.search_many([image], [crop], k)[0]

    def search_many(
        self, images: Sequence[QueryImage], crops: Sequence[Crop | None] | None = None, k: int | None = None
    ) -> list[SearchResponse]:
        """:meth:`search` for a batch: one decode pass, one model call, one index search.

        Raises:
            ValueError: as :meth:`search`, for the first bad query; or when ``crops`` does not
                match ``images`` in length.
        """
        k = check_k(self.settings.default_k if k is None else k, self.settings)
        crops = list(crops) if crops is not None else [None] * len(images)
        if len(crops) != len(images):
            raise ValueError(f"{len(crops)} crops for {len(images)} images")
        if not images:
            return []
        start = time.perf_counter()
        timings: dict[str, float] = {}
        with self._acquire() as live:
            vectors, shas = self._embed(live, images, crops, timings)
            return self._answer(live, vectors, shas, k, timings, start)

    def search_embeddings(
        self, vectors: np.ndarray, k: int | None = None, query_sha256: Sequence[str | None] | None = None
    ) -> list[SearchResponse]:
        """The index and re-ranking path for already-embedded queries ``(nq, dim)``.

        Raises:
            ValueError: for vectors of the wrong shape, a bad ``k``, or ``query_sha256`` of
                another length.
        """
        k = check_k(self.settings.default_k if k is None else k, self.settings)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        shas: list[str | None] = list(query_sha256) if query_sha256 is not None else [None] * len(vectors)
        if len(shas) != len(vectors):
            raise ValueError(f"{len(shas)} query hashes for {len(vectors)} vectors")
        start = time.perf_counter()
        timings: dict[str, float] = {"decode": 0.0, "embed": 0.0}
        with self._acquire() as live:
            return self._answer(live, vectors, shas, k, timings, start)

    def _fetch_size(self, live: LiveBuild, k: int) -> int:
        stored = max(1, live.build.manifest.stored_count)
        return max(1, min(max(k, k * self.settings.overfetch), self.settings.max_fetch, stored))

    def _answer(self, live: LiveBuild, vectors: np.ndarray, shas: list[str | None], k: int,
                timings: dict[str, float], start: float) -> list[SearchResponse]:
        dim = live.build.manifest.dim
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"query vectors must have shape (nq, {dim}), got {vectors.shape}")
        fetch = self._fetch_size(live, k)
        nprobe = self.settings.nprobe or None
        t = time.perf_counter()
        scores, fids = live.build.search(vectors, fetch, nprobe=nprobe)  # (nq, fetch) each
        timings["search"] = _elapsed_ms(t)
        timings["rerank"] = 0.0
        limit = min(self.settings.max_fetch, live.build.manifest.stored_count)
        with_vectors = self.rule.min_cosine <= 1.0
        responses = []
        for q in range(vectors.shape[0]):
            row_scores, row_ids, depth = scores[q], fids[q], fetch
            while True:
                t = time.perf_counter()
                cands, cand_vectors = live.candidates(row_scores, row_ids, with_vectors=with_vectors)
                ranked = rerank(cands, k, query_sha256=shas[q], vectors=cand_vectors, rule=self.rule)
                timings["rerank"] += _elapsed_ms(t)
                full = bool((row_ids >= 0).all())
                if len(ranked.kept) >= k or not full or depth >= limit:
                    break
                depth = min(limit, depth * _REFETCH_GROWTH)  # the rules ate too much: look deeper
                t = time.perf_counter()
                deeper_s, deeper_i = live.build.search(vectors[q : q + 1], depth, nprobe=nprobe)  # (1, depth)
                timings["search"] += _elapsed_ms(t)
                row_scores, row_ids = deeper_s[0], deeper_i[0]
            responses.append((ranked, depth))
        timings["total"] = _elapsed_ms(start)
        return [
            SearchResponse(
                results=tuple(SearchResult(c.image_id, c.score, c.uri) for c in ranked.kept),
                build_id=live.build_id, model_version=live.model_version, timings=dict(timings),
                dropped=ranked.dropped, fetched=depth,
            )
            for ranked, depth in responses
        ]
