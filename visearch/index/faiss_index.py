"""Choosing, training, filling and tuning Faiss indexes.

The choice follows Faiss's own guidelines ("Guidelines to choose an index" on the Faiss wiki):

- exact search (``Flat``) for small collections that fit the memory budget;
- ``IVF{nlist},Flat`` when the raw vectors fit, ``IVF{nlist},SQ8`` (d bytes a vector) next;
- ``IVF{nlist},PQ{m}`` when only a product-quantised code fits, ``OPQ{m},IVF{nlist},PQ{m}`` when
  the vectors are anisotropic (a few directions carry most of the variance, as CNN features do:
  plain PQ then spends most sub-quantizers on noise; see :func:`wants_rotation`), and from a
  million vectors on always ``OPQ{m},IVF{nlist}_HNSW32,PQ{m}`` (rotation for better codes, an
  HNSW coarse quantizer so that assigning a query to its lists stays cheap with many lists;
  there ``m`` need not divide the dimension: OPQ rotates into ``m * ceil(d / m)`` dimensions,
  ``OPQ{m}_{d'}``);
- ``nlist`` a power of two in ``[4 sqrt(N), 16 sqrt(N)]``; 30 to 256 training points a centroid.

Embeddings are L2-normalised, so every index uses ``METRIC_INNER_PRODUCT`` (= cosine). Every index
takes caller-chosen int64 ids (``add_with_ids``): IVF indexes natively, ``Flat`` through ``IDMap``.
Training and adding run on a GPU when Faiss sees one, on the CPU otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import faiss
import numpy as np

from visearch.index.shards import batch_ranges

log = logging.getLogger(__name__)

METRIC = faiss.METRIC_INNER_PRODUCT
METRIC_NAME = "inner_product"

FLAT_MAX_N = 50_000
"""Below this many vectors exact search is fast enough (and IVF would have too few points a list)."""
LARGE_N = 1_000_000
"""From here on PQ codes get an OPQ rotation and IVF gets an HNSW coarse quantizer."""
TRAIN_PER_CENTROID = 64
MIN_TRAIN_PER_CENTROID = 30
MAX_TRAIN_PER_CENTROID = 256
TRAIN_SOFT_CAP = 262_144
"""Training points beyond ``TRAIN_PER_CENTROID`` a centroid are not drawn past this total."""
PQ_TRAIN_PER_CODE = 39
"""Faiss's k-means asks for 39 points per centroid; a PQ sub-quantizer has 2**nbits centroids."""
HNSW_M = 32
"""Neighbours a node of an HNSW coarse quantizer keeps (``IVF{nlist}_HNSW32``)."""
MIN_EFFECTIVE_DIM_SHARE = 0.25
"""Below this effective dimension (participation ratio of the covariance spectrum) per dimension,
PQ codes get an OPQ rotation at any size. Isotropic or clustered-isotropic data is near 1 and
gains nothing from OPQ (measured: recall@10 0.684 without, 0.677 with, 6x the training time);
random-weight CNN features of CIFAR-10 are at 0.04 and gain 0.15 -> 0.36; the benchmark's clustered
synthetic vectors are at 0.87 (0.42 with 100 clusters)."""
ID_BYTES = 8
"""Faiss ids in the inverted lists (and the ``IDMap`` of a flat index) are int64."""
ROTATION_MODES = ("auto", "always", "never")
ADD_BATCH = 65_536


@dataclass(frozen=True)
class IndexPlan:
    """What to build: the Faiss factory string and the numbers behind it."""

    kind: str
    factory: str
    n: int
    dim: int
    nlist: int
    m: int
    nbits: int
    train_size: int
    default_nprobe: int
    estimated_bytes: int
    memory_budget_bytes: int
    metric: str = METRIC_NAME

    @property
    def is_ivf(self) -> bool:
        """Whether the index has inverted lists (and so an ``nprobe`` to tune)."""
        return self.nlist > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for manifests and logs."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def _pow2_floor(x: float) -> int:
    return 1 << max(0, math.floor(math.log2(max(x, 1.0))))


def choose_nlist(n: int, hnsw_quantizer: bool = False) -> int:
    """The number of inverted lists for ``n`` vectors: a power of two in ``[4 sqrt(n), 16 sqrt(n)]``.

    The largest power of two <= 8 sqrt(n) (16 sqrt(n) with an HNSW quantizer, whose cost grows
    only logarithmically with the lists), capped so that every list gets at least
    ``MIN_TRAIN_PER_CENTROID`` training points.

    Raises:
        ValueError: when ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    target = (16.0 if hnsw_quantizer else 8.0) * math.sqrt(n)
    return max(1, min(_pow2_floor(target), _pow2_floor(n / MIN_TRAIN_PER_CENTROID)))


def _train_size(n: int, nlist: int, pq_centroids: int) -> int:
    per_centroid = min(TRAIN_PER_CENTROID * nlist, max(MIN_TRAIN_PER_CENTROID * nlist, TRAIN_SOFT_CAP))
    size = max(per_centroid, PQ_TRAIN_PER_CODE * pq_centroids)
    size = min(size, MAX_TRAIN_PER_CENTROID * nlist) if pq_centroids == 0 else size
    return min(n, size)


def quantizer_bytes(nlist: int, dim: int, hnsw: bool) -> int:
    """Coarse quantizer memory: ``nlist`` float32 centroids of ``dim``, plus the HNSW graph when present.

    HNSW keeps 2·``HNSW_M`` int32 neighbours a node on level 0 (and ~1/M of that on the levels
    above: the factor 1.1), rounded down to whole bytes. :func:`choose_index` budgets with it and
    :mod:`visearch.plan.capacity` sizes shards with it.
    """
    centroids = nlist * dim * 4
    graph = nlist * 2 * HNSW_M * 4 * 11 // 10 if hnsw else 0  # integer arithmetic: one exact rounding
    return centroids + graph


def effective_dim_share(sample: np.ndarray) -> float:
    """The participation ratio ``(sum λ)² / sum λ²`` of the sample's covariance eigenvalues, over
    the dimension: 1 when the variance is spread evenly over every direction, ``1/d`` when one
    direction carries it all.

    Raises:
        ValueError: for fewer than two rows or a non-2-D array.
    """
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a (n >= 2, d) sample, got shape {x.shape}")
    x = x - x.mean(axis=0)
    eig = np.clip(np.linalg.eigvalsh(x.T @ x / (x.shape[0] - 1)), 0.0, None)
    total = float(eig.sum())
    if total <= 0.0:
        return 1.0  # all rows equal: nothing to rotate
    return float(total * total / float((eig * eig).sum()) / x.shape[1])


def wants_rotation(sample: np.ndarray, mode: str = "auto") -> bool:
    """Whether PQ codes for vectors like ``sample`` should get an OPQ rotation.

    ``mode``: ``"auto"`` (when :func:`effective_dim_share` < ``MIN_EFFECTIVE_DIM_SHARE``),
    ``"always"`` or ``"never"`` (the setting ``index.rotation``).

    Raises:
        ValueError: for an unknown mode.
    """
    if mode not in ROTATION_MODES:
        raise ValueError(f"rotation mode must be one of {ROTATION_MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    if sample.shape[0] < 2:
        return False
    share = effective_dim_share(sample[:20_000])
    log.info("effective dimension share of the training sample %.3f (OPQ below %.2f)", share,
             MIN_EFFECTIVE_DIM_SHARE)
    return share < MIN_EFFECTIVE_DIM_SHARE


def choose_index(n: int, dim: int, memory_budget_bytes: int, *, rotate: bool = False) -> IndexPlan:
    """Pick an index for ``n`` vectors of dimension ``dim`` that fits ``memory_budget_bytes``.

    ``rotate``: give PQ codes an OPQ rotation below ``LARGE_N`` too (from :func:`wants_rotation`
    on the training sample); exact, IVF-Flat and SQ8 plans ignore it.

    Raises:
        ValueError: for non-positive arguments, or a budget too small even for the smallest
            product-quantised code (the message says how much would fit).
    """
    if n < 1 or dim < 1 or memory_budget_bytes < 1:
        raise ValueError(f"need n, dim, memory_budget_bytes >= 1, got {n}, {dim}, {memory_budget_bytes}")
    flat_bytes = n * (4 * dim + ID_BYTES)
    common: dict[str, Any] = {"n": n, "dim": dim, "memory_budget_bytes": memory_budget_bytes}
    if n < FLAT_MAX_N and flat_bytes <= memory_budget_bytes:
        return IndexPlan(kind="flat", factory="IDMap,Flat", nlist=0, m=0, nbits=0, train_size=0,
                         default_nprobe=0, estimated_bytes=flat_bytes, **common)
    large = n >= LARGE_N
    nlist = choose_nlist(n, hnsw_quantizer=large)
    ivf = f"IVF{nlist}_HNSW{HNSW_M}" if large else f"IVF{nlist}"
    qbytes = quantizer_bytes(nlist, dim, large)
    nprobe = min(nlist, 16)
    ivf_flat = n * (4 * dim + ID_BYTES) + qbytes
    if ivf_flat <= memory_budget_bytes:
        return IndexPlan(kind="ivf_flat", factory=f"{ivf},Flat", nlist=nlist, m=0, nbits=0,
                         train_size=_train_size(n, nlist, 0), default_nprobe=nprobe,
                         estimated_bytes=ivf_flat, **common)
    ivf_sq8 = n * (dim + ID_BYTES) + qbytes + 2 * dim * 4
    if ivf_sq8 <= memory_budget_bytes:
        return IndexPlan(kind="ivf_sq8", factory=f"{ivf},SQ8", nlist=nlist, m=0, nbits=8,
                         train_size=_train_size(n, nlist, 0), default_nprobe=nprobe,
                         estimated_bytes=ivf_sq8, **common)
    nbits = 8 if n >= PQ_TRAIN_PER_CODE * 256 else max(4, int(math.log2(max(n / PQ_TRAIN_PER_CODE, 16))))

    def cost(m: int) -> tuple[int, int, bool]:
        """(bytes, rotated dim, needs OPQ) of PQ{m}; m not dividing dim rotates into m * ceil(dim / m)."""
        dim2 = m * math.ceil(dim / m)
        opq = large or rotate or dim2 != dim
        codebooks = (1 << nbits) * dim2 * 4
        fixed = quantizer_bytes(nlist, dim2, large) + codebooks + (dim * dim2 * 4 if opq else 0)
        return n * (math.ceil(m * nbits / 8) + ID_BYTES) + fixed, dim2, opq

    # Divisors of dim need no rotation. Where OPQ is trained anyway (from LARGE_N on, or anisotropic
    # vectors), multiples of 8 may use OPQ's output dimension to fit the budget more closely.
    # Otherwise they are not offered: OPQ training costs far more than the IVF-PQ it feeds.
    options = {m for m in range(1, dim // 2 + 1) if dim % m == 0}
    if large or rotate:
        options |= set(range(8, dim // 2 + 1, 8))
    fitting = [m for m in sorted(options) if cost(m)[0] <= memory_budget_bytes]
    if not fitting:
        raise ValueError(
            f"memory budget {memory_budget_bytes} bytes is too small for {n} vectors of dim {dim}: "
            f"even PQ1 needs about {cost(1)[0]} bytes"
        )
    m = max(fitting)
    estimated, dim2, opq = cost(m)
    code = f"PQ{m}" if nbits == 8 else f"PQ{m}x{nbits}"
    rotation = (f"OPQ{m}" if dim2 == dim else f"OPQ{m}_{dim2}") + "," if opq else ""
    kind = "opq_ivf_hnsw_pq" if large else ("opq_ivf_pq" if opq else "ivf_pq")
    return IndexPlan(kind=kind, factory=f"{rotation}{ivf},{code}", nlist=nlist, m=m, nbits=nbits,
                     train_size=_train_size(n, nlist, 1 << nbits), default_nprobe=nprobe,
                     estimated_bytes=estimated, **common)


def _as_matrix(x: np.ndarray, dim: int | None = None, name: str = "vectors") -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        raise ValueError(f"{name} must have shape (n, {dim or 'd'}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain non-finite values")
    return arr


def _gpu_resources() -> Any | None:
    if faiss.get_num_gpus() < 1 or not hasattr(faiss, "StandardGpuResources"):
        return None
    return faiss.StandardGpuResources()


def new_index(plan: IndexPlan) -> faiss.Index:
    """The untrained index for ``plan``.

    The factory switches on polysemous training for PQ codes; it only serves Hamming-distance
    pre-filtering, which we do not use, and costs minutes, so it is switched off.
    """
    index = faiss.index_factory(plan.dim, plan.factory, METRIC)
    if _is_ivf(index):
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False
    return index


def train_index(plan: IndexPlan, sample: np.ndarray) -> faiss.Index:
    """An empty index for ``plan``, trained on ``sample`` (n, dim), on a GPU when one is present.

    On a GPU the whole index is cloned there for training and copied back; indexes the GPU cloner
    does not support (HNSW coarse quantizer, OPQ) train their k-means on a GPU flat index instead.

    Raises:
        ValueError: for a sample of the wrong shape, with non-finite values, or too small for
            ``plan.nlist`` lists (fewer than 30 points a list).
    """
    index = new_index(plan)
    if index.is_trained:
        return index
    sample = _as_matrix(sample, plan.dim, "training sample")
    if sample.shape[0] < MIN_TRAIN_PER_CENTROID * plan.nlist:
        raise ValueError(
            f"training sample of {sample.shape[0]} is too small for {plan.nlist} lists "
            f"(need >= {MIN_TRAIN_PER_CENTROID * plan.nlist})"
        )
    start = time.perf_counter()
    res = _gpu_resources()
    trained = None
    if res is not None:
        try:
            gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
            gpu_index.train(sample)
            trained = faiss.index_gpu_to_cpu(gpu_index)
            log.info("trained %s on GPU", plan.factory)
        except RuntimeError as exc:  # the GPU cloner does not support this index type
            log.info("GPU clone of %s unsupported (%s); training k-means on GPU only", plan.factory, exc)
            ivf = faiss.extract_index_ivf(index)
            clustering = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatL2(ivf.d))
            ivf.clustering_index = clustering
            index.train(sample)
            setattr(ivf, "clustering_index", None)  # noqa: B010 - SWIG attribute, not a Python one
            trained = index
    else:
        index.train(sample)
        trained = index
    log.info("trained %s on %d points in %.2fs", plan.factory, sample.shape[0], time.perf_counter() - start)
    return trained


def serialize(index: faiss.Index) -> bytes:
    """The index as bytes (``faiss.serialize_index``)."""
    return bytes(faiss.serialize_index(index).tobytes())


def deserialize(data: bytes) -> faiss.Index:
    """Inverse of :func:`serialize`."""
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


class ShardBuilder:
    """Adds vectors with ids to a copy of a trained empty index (GPU for IVF when present)."""

    def __init__(self, trained: faiss.Index | bytes, *, use_gpu: bool | None = None) -> None:
        index = deserialize(trained) if isinstance(trained, bytes) else faiss.clone_index(trained)
        if not index.is_trained:
            raise ValueError("ShardBuilder needs a trained index")
        if index.ntotal:
            raise ValueError(f"ShardBuilder needs an empty index, this one holds {index.ntotal}")
        self.dim = int(index.d)
        self._cpu = index
        self._gpu: Any | None = None
        self._res: Any | None = None
        want_gpu = faiss.get_num_gpus() > 0 if use_gpu is None else use_gpu
        if want_gpu and _is_ivf(index):
            self._res = _gpu_resources()
            if self._res is not None:
                try:
                    options = faiss.GpuClonerOptions()
                    options.indicesOptions = getattr(faiss, "INDICES_64_BIT")  # noqa: B009 - GPU builds only
                    self._gpu = faiss.index_cpu_to_gpu(self._res, 0, index, options)
                except RuntimeError as exc:
                    log.info("adding on CPU: GPU clone unsupported (%s)", exc)
        self.count = 0

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add (n, dim) vectors with their int64 ids, in batches.

        Raises:
            ValueError: for mismatched shapes, non-finite values or negative ids.
        """
        vectors = _as_matrix(vectors, self.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (vectors.shape[0],):
            raise ValueError(f"ids shape {ids.shape} does not match {vectors.shape[0]} vectors")
        if ids.size and int(ids.min()) < 0:
            raise ValueError(f"ids must be >= 0, got {int(ids.min())}")
        target = self._gpu if self._gpu is not None else self._cpu
        for start, end in batch_ranges(vectors.shape[0], ADD_BATCH):
            target.add_with_ids(vectors[start:end], ids[start:end])
        self.count += vectors.shape[0]

    def finish(self) -> faiss.Index:
        """The filled CPU index."""
        if self._gpu is not None:
            self._cpu = faiss.index_gpu_to_cpu(self._gpu)
            self._gpu = None
        return self._cpu


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class IvfInfo:
    """The search knobs an index has: lists (0 for exact) and whether its quantizer is HNSW."""

    nlist: int
    hnsw_quantizer: bool


def ivf_info(index: faiss.Index) -> IvfInfo:
    """What can be tuned on ``index``."""
    if not _is_ivf(index):
        return IvfInfo(0, False)
    ivf = faiss.extract_index_ivf(index)
    quantizer = faiss.downcast_index(ivf.quantizer)
    return IvfInfo(int(ivf.nlist), isinstance(quantizer, faiss.IndexHNSW))


class IdExcluder:
    """A reusable Faiss selector that rejects a fixed set of ids (tombstones).

    Built once per shard (hashing the ids costs O(n)); shared by every search on that shard.
    """

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = np.ascontiguousarray(np.unique(ids), dtype=np.int64)
        self._batch = faiss.IDSelectorBatch(self.ids) if self.ids.size else None
        self.selector = faiss.IDSelectorNot(self._batch) if self._batch is not None else None

    def __len__(self) -> int:
        return int(self.ids.size)


class SearchParams:
    """Per-call Faiss search parameters (nprobe, efSearch, an id filter) for one index.

    Search parameters leave the index untouched, so concurrent searches with different settings
    are safe. Faiss's parameter objects hold raw pointers: this object keeps them alive.
    """

    def __init__(
        self,
        index: faiss.Index,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exclude: IdExcluder | None = None,
    ) -> None:
        self._keep: list[Any] = [exclude]
        sel = exclude.selector if exclude is not None else None
        info = ivf_info(index)
        params: Any
        if info.nlist:
            params = faiss.SearchParametersIVF()
            params.nprobe = int(nprobe or faiss.extract_index_ivf(index).nprobe)
            if info.hnsw_quantizer:
                qparams = getattr(faiss, "SearchParametersHNSW")()  # noqa: B009 - missing from the stubs
                qparams.efSearch = int(max(ef_search or 0, params.nprobe, 16))
                params.quantizer_params = qparams
                self._keep.append(qparams)
            if sel is not None:
                params.sel = sel
            if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
                outer = faiss.SearchParametersPreTransform()
                outer.index_params = params
                self._keep.append(params)
                params = outer
        elif sel is not None:
            params = faiss.SearchParameters()
            params.sel = sel
        else:
            params = None
        self.params = params


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    *,
    nprobe: int | None = None,
    ef_search: int | None = None,
    exclude: IdExcluder | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Search one index: (nq, k) similarities and ids (-1 where fewer than k were found).

    ``exclude`` drops ids inside Faiss (so k results still come back when some are excluded).

    Raises:
        ValueError: for queries of the wrong shape or ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    queries = _as_matrix(queries, int(index.d), "queries")
    holder = SearchParams(index, nprobe=nprobe, ef_search=ef_search, exclude=exclude)
    scores, ids = index.search(queries, k, params=holder.params)
    return scores, ids


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k: (nq, k) similarities and row positions into ``vectors``.

    Raises:
        ValueError: for mismatched dimensions or ``k`` < 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    vectors = _as_matrix(vectors)
    queries = _as_matrix(queries, vectors.shape[1], "queries")
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    scores, rows = flat.search(queries, min(k, max(1, vectors.shape[0])))  # (nq, d) @ (d, n) -> top-k
    if rows.shape[1] < k:
        pad = k - rows.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return scores, rows


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top-``k`` that appears in its found top-``k``.

    Ids may be integers (-1 = empty) or strings (``""`` / ``None`` = empty). Queries with fewer
    than ``k`` exact neighbours are scored against the ones they have; queries with none are skipped.

    Raises:
        ValueError: for ``k`` < 1, a different number of queries, or no query with an exact neighbour.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(found) != len(exact):
        raise ValueError(f"found has {len(found)} queries, exact has {len(exact)}")

    def valid(row: Any) -> set[Any]:
        def real(x: Any) -> bool:
            if isinstance(x, (int, np.integer)):
                return int(x) >= 0
            return x is not None and x != ""

        return {x for x in list(row)[:k] if real(x)}

    total = 0.0
    counted = 0
    for got, truth in zip(found, exact, strict=True):
        want = valid(truth)
        if not want:
            continue
        total += len(valid(got) & want) / len(want)
        counted += 1
    if not counted:
        raise ValueError("no query has an exact neighbour")
    return total / counted


@runtime_checkable
class SearchTarget(Protocol):
    """Anything searchable with IVF knobs: a single index or a loaded sharded build."""

    @property
    def tunable(self) -> IvfInfo:
        """The knobs the target has."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(nq, k) similarities and ids."""
        ...


class IndexTarget:
    """A plain Faiss index as a :class:`SearchTarget`."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index
        self.tunable = ivf_info(index)

    def search(
        self, queries: np.ndarray, k: int, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(nq, k) similarities and ids."""
        return search(self.index, queries, k, nprobe=nprobe, ef_search=ef_search)


@dataclass(frozen=True)
class TunePoint:
    """One measured setting: recall@k against exact and single-query latency."""

    nprobe: int
    ef_search: int
    recall: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class TuneResult:
    """The chosen search setting and the curve it was chosen from."""

    nprobe: int
    ef_search: int
    recall: float
    p50_ms: float
    reached: bool
    target_recall: float
    latency_budget_ms: float
    k: int
    curve: tuple[TunePoint, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for manifests and benchmark output."""
        data = asdict(self)
        data["curve"] = [asdict(p) for p in self.curve]
        return data


def measure_latency(
    target: SearchTarget, queries: np.ndarray, k: int, *, nprobe: int | None, ef_search: int | None
) -> tuple[float, float]:
    """Median and p99 wall time in ms of single-query searches (one warm-up query first)."""
    target.search(queries[:1], k, nprobe=nprobe, ef_search=ef_search)
    times = []
    for i in range(queries.shape[0]):
        start = time.perf_counter()
        target.search(queries[i : i + 1], k, nprobe=nprobe, ef_search=ef_search)  # (1, d)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times)), float(np.percentile(times, 99))


def tune_nprobe(
    index: faiss.Index | SearchTarget,
    queries: np.ndarray,
    exact_ids: np.ndarray,
    target_recall: float,
    latency_budget_ms: float,
    *,
    k: int = 10,
    latency_queries: int = 100,
) -> TuneResult:
    """Sweep ``nprobe`` (powers of two) and, for an HNSW quantizer, ``efSearch``; pick the cheapest.

    Recall@k is measured against ``exact_ids`` (nq, >=k) in the id space the index returns;
    latency is the median of single-query searches over the first ``latency_queries`` queries.
    The choice is the smallest ``nprobe`` (then ``efSearch``) reaching ``target_recall`` with a
    median latency within ``latency_budget_ms``; when none does, the best recall within the
    budget (or the fastest point) with ``reached=False``. Exact indexes get one point.

    Raises:
        ValueError: for a target recall outside (0, 1], a non-positive budget, or queries and
            exact results of different lengths.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    if latency_budget_ms <= 0:
        raise ValueError(f"latency_budget_ms must be > 0, got {latency_budget_ms}")
    if len(queries) != len(exact_ids):
        raise ValueError(f"{len(queries)} queries but {len(exact_ids)} exact results")
    target: SearchTarget = index if isinstance(index, SearchTarget) else IndexTarget(index)
    queries = _as_matrix(queries, name="queries")
    timed = queries[:latency_queries]
    info = target.tunable

    def measure(nprobe: int, ef: int) -> TunePoint:
        _, found = target.search(queries, k, nprobe=nprobe or None, ef_search=ef or None)
        recall = recall_at_k(found, exact_ids, k)
        p50, p99 = measure_latency(target, timed, k, nprobe=nprobe or None, ef_search=ef or None)
        point = TunePoint(nprobe=nprobe, ef_search=ef, recall=recall, p50_ms=p50, p99_ms=p99)
        log.info("tune nprobe=%d efSearch=%d: recall@%d=%.4f p50=%.3fms", nprobe, ef, k, recall, p50)
        return point

    curve: list[TunePoint] = []
    chosen: TunePoint | None = None
    if not info.nlist:
        chosen = measure(0, 0)
        curve.append(chosen)
    else:
        nprobes = [1 << i for i in range(int(math.log2(info.nlist)) + 1)]
        for nprobe in nprobes:
            efs = sorted({max(16, nprobe), max(16, 2 * nprobe), max(16, 4 * nprobe)}) if info.hnsw_quantizer \
                else [0]
            over_budget = True
            for ef in efs:
                point = measure(nprobe, ef)
                curve.append(point)
                over_budget = over_budget and point.p50_ms > latency_budget_ms
                if point.recall >= target_recall and point.p50_ms <= latency_budget_ms:
                    chosen = point
                    break
            if chosen is not None or over_budget:
                break
    if chosen is not None and chosen.recall >= target_recall and chosen.p50_ms <= latency_budget_ms:
        reached = True
    else:
        reached = False
        within = [p for p in curve if p.p50_ms <= latency_budget_ms]
        best_within = max(within, key=lambda p: (p.recall, -p.p50_ms)) if within else None
        chosen = best_within or min(curve, key=lambda p: p.p50_ms)
        log.warning("target recall@%d %.3f not reached within %.2fms; chose nprobe=%d (recall %.4f)",
                    k, target_recall, latency_budget_ms, chosen.nprobe, chosen.recall)
    return TuneResult(nprobe=chosen.nprobe, ef_search=chosen.ef_search, recall=chosen.recall,
                      p50_ms=chosen.p50_ms, reached=reached, target_recall=target_recall,
                      latency_budget_ms=latency_budget_ms, k=k, curve=tuple(curve))


def index_bytes(index: faiss.Index) -> int:
    """Serialized size of an index (what it costs on disk and, roughly, in memory)."""
    return int(faiss.serialize_index(index).size)
