"""Capacity plan for a corpus of N images, from throughputs measured by the benchmarks.

``visearch plan --images 2e11`` answers, on paper, what running visearch at 100–200 billion images
takes: how many index shards of which layout, the memory of a shard and how many serving hosts
hold them, the bytes in object storage, the GPU-hours to embed everything, the hours of a full
index build on N Spark executors, the nightly incremental volume and its time, and a cost when
prices are given.

The arithmetic is pure (:func:`plan_capacity` on frozen dataclasses, no I/O); the throughputs come
from the benchmark JSON files (:func:`load_throughputs`), and every number says whether it was
measured (file and key) or is a documented conservative default (``DEFAULT_*`` below).

What the benchmark files are read for (the first key found wins; a top-level ``"planner"`` object
is the explicit contract, the other keys are looked up in the result rows):

- ``embed.json`` — full-pipeline (decode + preprocess + model) images/s: ``planner.
  pipeline_images_per_sec_per_gpu`` and ``planner.pipeline_images_per_sec_per_cpu_core``; else
  rows whose mode/case/name says "pipeline" with ``images_per_sec`` (a row on ``cuda`` counts per
  GPU, a CPU row is divided by its ``threads``/``cores`` or the machine's ``cpus``). The slowest
  matching row is taken (ResNet-50 rather than the small demo model): conservative.
- ``index.json`` — ``planner.add_vectors_per_sec_per_core``, ``planner.train_dim_products_per_sec``
  (training sample × nlist × dim / train seconds) with ``planner.train_device`` ("cpu" or "cuda";
  a CPU figure is per core), ``planner.bytes_per_vector``, ``planner.recall_at_10``; else rows with
  ``add_vectors_per_sec``, ``train_seconds`` + ``nlist`` + ``train_size`` + ``dim``,
  ``bytes_per_vector``, ``recall_at_10`` (autofaiss and baseline rows are skipped).
- ``ingest.json`` — ``planner.images_per_sec_per_core``; else the optimised (non-baseline) row's
  ``images_per_sec`` (or ``images_per_s``), divided by its ``threads``/``cores``/``workers`` when
  given — the validation loop of ``bench ingest`` runs on one core.

Model of the work (each assumption is printed with the plan):

- Index: one quantizer trained once, shared by every shard (:mod:`visearch.index.build`); the layout
  comes from :func:`visearch.index.faiss_index.choose_index` for the vectors of one shard and a memory budget of
  ``--bytes-per-vector`` code bytes a vector (e.g. ``OPQ64,IVF262144_HNSW32,PQ64`` at 5e8 a shard).
- Shard memory = codes + 8-byte ids + per-list overhead (two ``std::vector`` headers and their
  allocations, ``LIST_OVERHEAD_BYTES``) + coarse quantizer (centroids + HNSW graph) + PQ codebooks and
  OPQ rotation. Lists are read back exactly sized, so no growth slack at serving time.
- Hosts: ``floor(host memory × usable share / shard memory)`` shards a host, ``replicas`` copies.
- Training k-means costs ``train_size × nlist × dim`` products (all iterations in the rate), on one
  GPU when ``--gpus`` > 0, else on one executor's cores. Adding runs on every executor core in
  parallel. Embedding runs on the GPUs (CPU cores when ``--gpus 0``); ingest on executor cores.
- Nightly: ``images × daily-new-share`` new images go through ingest, embed and a delta-shard add,
  one after the other; the quantizer is not retrained.
- Costs are work-hours × price (idle allocation is not counted); storage per decimal GB-month;
  serving hosts for 730 hours a month.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visearch.index.faiss_index import ID_BYTES, choose_index, choose_nlist, quantizer_bytes

log = logging.getLogger(__name__)

LIST_OVERHEAD_BYTES = 80
"""Per inverted list: two ``std::vector`` headers (2 × 24 B) and two heap allocations (~2 × 16 B)."""
HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 30.0
GB = 1e9

DEFAULT_SHARD_VECTORS = 500_000_000
DEFAULT_HOST_MEMORY_GB = 512.0
DEFAULT_MODEL_VERSION_BYTES = 100e6
"""A ResNet-50 state dict (~100 MB) plus its TorchScript export is of this order."""

# Conservative defaults, used when a benchmark file (or the key in it) is missing.
DEFAULT_EMBED_IMAGES_PER_SEC_PER_GPU = 800.0
"""ResNet-50 at 224 in bf16 runs ~2-3k images/s model-only on one datacenter GPU; JPEG decoding on
the host's CPU cores usually caps the full pipeline well below that. 800 is a conservative floor."""
DEFAULT_EMBED_IMAGES_PER_SEC_PER_CPU_CORE = 4.0
"""ResNet-50 at 224 is ~4 GMAC a forward pass; at ~30-40 effective GFLOP/s a core plus decoding."""
DEFAULT_INGEST_IMAGES_PER_SEC_PER_CORE = 100.0
"""Read ~200 KB, sha256, header parse, draft-mode decode for the perceptual hash: ~10 ms an image."""
DEFAULT_ADD_VECTORS_PER_SEC_PER_CORE = 5_000.0
"""OPQ rotation (d²), HNSW coarse assignment (~1k distances × d), PQ encoding (256 × d) ≈ 0.4 MFLOP
a vector; 5k/s a core assumes only ~2 GFLOP/s of it is achieved."""
DEFAULT_TRAIN_DIM_PRODUCTS_PER_SEC_GPU = 4e11
"""k-means as GEMM at ~1e13 products/s on one GPU, divided by 25 iterations."""
DEFAULT_TRAIN_DIM_PRODUCTS_PER_SEC_PER_CORE = 1e9
"""k-means as BLAS GEMM at ~2.5e10 products/s a core (~50 GFLOP/s), divided by 25 iterations."""


# ---------------------------------------------------------------------------------------------
# Inputs


def parse_count(text: str | float | int) -> float:
    """Parse a positive count such as ``2e11``, ``200e9``, ``1_000_000``, ``1,000`` or ``5M``.

    Suffixes: ``k`` (1e3), ``M`` (1e6), ``G``/``B`` (1e9), ``T`` (1e12).

    Raises:
        ValueError: for text that is not a finite positive number.
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        cleaned = text.strip().replace("_", "").replace(",", "")
        scale = 1.0
        suffixes = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}
        if cleaned and cleaned[-1] in suffixes:
            scale = suffixes[cleaned[-1]]
            cleaned = cleaned[:-1]
        try:
            value = float(cleaned) * scale
        except ValueError as exc:
            raise ValueError(f"not a number: {text!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a finite positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class PlanInputs:
    """What the plan is for: the corpus, the hardware and the prices (``None``: no cost line)."""

    images: int
    dim: int = 256
    bytes_per_vector: int = 64
    gpus: int = 64
    executors: int = 50
    executor_cores: int = 16
    shard_vectors: int | None = DEFAULT_SHARD_VECTORS
    """Vectors a shard holds at most; ``None``: as many as fill one host's usable memory."""
    host_memory_gb: float = DEFAULT_HOST_MEMORY_GB
    usable_memory_share: float = 0.8
    replicas: int = 2
    daily_new_share: float = 0.005
    image_bytes: float = 200e3
    keep_builds: int = 2
    models_kept: int = 10
    model_version_bytes: float = DEFAULT_MODEL_VERSION_BYTES
    gpu_hour_usd: float | None = None
    cpu_core_hour_usd: float | None = None
    storage_gb_month_usd: float | None = None
    host_hour_usd: float | None = None

    def validate(self) -> None:
        """Check every number makes sense.

        Raises:
            ValueError: naming the first bad input and its value.
        """
        positive_ints = {"images": self.images, "dim": self.dim, "bytes_per_vector": self.bytes_per_vector,
                         "executors": self.executors, "executor_cores": self.executor_cores,
                         "replicas": self.replicas, "keep_builds": self.keep_builds,
                         "models_kept": self.models_kept}
        for name, value in positive_ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.gpus, int) or self.gpus < 0:
            raise ValueError(f"gpus must be an integer >= 0, got {self.gpus!r}")
        sv = self.shard_vectors
        if sv is not None and (not isinstance(sv, int) or sv < 1):
            raise ValueError(f"shard_vectors must be a positive integer or None, got {self.shard_vectors!r}")
        positive_floats = {"host_memory_gb": self.host_memory_gb, "image_bytes": self.image_bytes,
                           "model_version_bytes": self.model_version_bytes}
        for name, fvalue in positive_floats.items():
            if not (math.isfinite(fvalue) and fvalue > 0):
                raise ValueError(f"{name} must be a finite positive number, got {fvalue!r}")
        if not 0 < self.usable_memory_share <= 1:
            raise ValueError(f"usable_memory_share must be in (0, 1], got {self.usable_memory_share!r}")
        if not 0 <= self.daily_new_share <= 1:
            raise ValueError(f"daily_new_share must be in [0, 1], got {self.daily_new_share!r}")
        for name in ("gpu_hour_usd", "cpu_core_hour_usd", "storage_gb_month_usd", "host_hour_usd"):
            price = getattr(self, name)
            if price is not None and not (math.isfinite(price) and price >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {price!r}")


@dataclass(frozen=True)
class Measure:
    """One throughput figure and where it came from."""

    value: float
    source: str
    """``"default"`` or ``"<file>: <key>"``."""

    @property
    def measured(self) -> bool:
        """Whether the figure was read from a benchmark file."""
        return self.source != "default"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"a throughput must be finite and positive, got {self.value!r} ({self.source})")


def _default(value: float) -> Measure:
    return Measure(value, "default")


@dataclass(frozen=True)
class Throughputs:
    """The measured (or default) rates the plan scales up."""

    embed_images_per_sec_per_gpu: Measure = field(
        default_factory=lambda: _default(DEFAULT_EMBED_IMAGES_PER_SEC_PER_GPU))
    embed_images_per_sec_per_cpu_core: Measure = field(
        default_factory=lambda: _default(DEFAULT_EMBED_IMAGES_PER_SEC_PER_CPU_CORE))
    ingest_images_per_sec_per_core: Measure = field(
        default_factory=lambda: _default(DEFAULT_INGEST_IMAGES_PER_SEC_PER_CORE))
    add_vectors_per_sec_per_core: Measure = field(
        default_factory=lambda: _default(DEFAULT_ADD_VECTORS_PER_SEC_PER_CORE))
    train_dim_products_per_sec_gpu: Measure = field(
        default_factory=lambda: _default(DEFAULT_TRAIN_DIM_PRODUCTS_PER_SEC_GPU))
    train_dim_products_per_sec_per_core: Measure = field(
        default_factory=lambda: _default(DEFAULT_TRAIN_DIM_PRODUCTS_PER_SEC_PER_CORE))
    measured_bytes_per_vector: Measure | None = None
    """Informational: bytes a vector of the benchmarked index (codes + ids + overhead)."""
    measured_recall_at_10: Measure | None = None
    """Informational: recall@10 against exact search of the benchmarked index."""

    def items(self) -> Iterator[tuple[str, Measure]]:
        """``(name, measure)`` for every figure present."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class Costs:
    """Dollar figures; a line is ``None`` when its price was not given."""

    embed_full_usd: float | None
    build_full_usd: float | None
    ingest_full_usd: float | None
    nightly_usd: float | None
    nightly_month_usd: float | None
    storage_month_usd: float | None
    serving_month_usd: float | None


@dataclass(frozen=True)
class Plan:
    """Everything :func:`plan_capacity` derives (bytes in bytes, times in hours)."""

    # index layout
    index_factory: str
    index_kind: str
    nlist: int
    pq_m: int
    code_bytes: int
    train_size: int
    default_nprobe: int
    shards: int
    max_vectors_per_shard: int
    vectors_per_shard: int
    # memory of one shard
    shard_codes_bytes: int
    shard_ids_bytes: int
    shard_lists_overhead_bytes: int
    shard_quantizer_bytes: int
    shard_bytes: int
    # serving hosts
    host_usable_bytes: int
    shards_per_host: int
    hosts: int
    index_bytes: int
    serving_memory_bytes: int
    # object storage
    images_storage_bytes: int
    embeddings_fp16_bytes: int
    embeddings_fp32_bytes: int
    index_storage_bytes: int
    models_storage_bytes: int
    storage_bytes: int
    # compute, full corpus
    embed_on_gpu: bool
    embed_gpu_hours: float
    embed_cpu_core_hours: float
    embed_wall_hours: float
    ingest_core_hours: float
    ingest_wall_hours: float
    train_on_gpu: bool
    train_hours: float
    add_core_hours: float
    add_wall_hours: float
    build_wall_hours: float
    # nightly
    nightly_images: int
    nightly_delta_shards: int
    nightly_ingest_hours: float
    nightly_embed_hours: float
    nightly_add_hours: float
    nightly_hours: float
    nightly_storage_bytes: int
    costs: Costs
    notes: tuple[str, ...] = ()


def _codec_bytes(dim: int, pq_m: int, nbits: int, opq: bool) -> int:
    """PQ codebooks (2^nbits centroids of dim/m floats, m times) and the OPQ rotation matrix."""
    codebooks = (1 << nbits) * dim * 4 if pq_m else 0
    rotation = dim * dim * 4 if opq else 0
    return codebooks + rotation


@dataclass(frozen=True)
class ShardLayout:
    """The index of one shard and its memory."""

    factory: str
    kind: str
    nlist: int
    pq_m: int
    code_bytes: int
    train_size: int
    default_nprobe: int
    codes_bytes: int
    ids_bytes: int
    lists_overhead_bytes: int
    quantizer_bytes: int

    @property
    def total_bytes(self) -> int:
        """Memory of the shard when loaded."""
        return self.codes_bytes + self.ids_bytes + self.lists_overhead_bytes + self.quantizer_bytes


def shard_layout(n: int, dim: int, bytes_per_vector: int) -> ShardLayout:
    """The index for one shard of ``n`` vectors with ``bytes_per_vector`` code bytes a vector.

    Delegates the choice to :func:`visearch.index.faiss_index.choose_index` (Faiss's guidelines: nlist a power
    of two in [4√n, 16√n], OPQ + HNSW quantizer + PQ from a million vectors) with a memory budget of
    exactly ``n × (bytes_per_vector + 8)`` plus the quantizer and codebooks.

    Raises:
        ValueError: for non-positive arguments.
    """
    if n < 1 or dim < 1 or bytes_per_vector < 1:
        raise ValueError(f"need n, dim, bytes_per_vector >= 1, got {n}, {dim}, {bytes_per_vector}")
    large = n >= 1_000_000
    nlist_guess = choose_nlist(n, hnsw_quantizer=large)
    fixed = quantizer_bytes(nlist_guess, dim, large) + _codec_bytes(dim, 1, 8, large)
    budget = n * (bytes_per_vector + ID_BYTES) + fixed
    choice = choose_index(n, dim, budget)
    hnsw = "_HNSW" in choice.factory
    if choice.kind in ("flat", "ivf_flat"):
        code = 4 * dim
    elif choice.kind == "ivf_sq8":
        code = dim
    else:
        code = math.ceil(choice.m * choice.nbits / 8)
    quantizer = quantizer_bytes(choice.nlist, dim, hnsw) + _codec_bytes(
        dim, choice.m, choice.nbits, choice.factory.startswith("OPQ"))
    if choice.kind == "ivf_sq8":
        quantizer += 2 * dim * 4  # per-dimension min and range
    return ShardLayout(
        factory=choice.factory, kind=choice.kind, nlist=choice.nlist, pq_m=choice.m, code_bytes=code,
        train_size=choice.train_size, default_nprobe=choice.default_nprobe,
        codes_bytes=n * code, ids_bytes=n * ID_BYTES, lists_overhead_bytes=choice.nlist * LIST_OVERHEAD_BYTES,
        quantizer_bytes=quantizer,
    )


def shard_vectors_for_memory(usable_bytes: float, dim: int, bytes_per_vector: int) -> int:
    """The largest shard (rounded down to a million vectors) whose layout fits ``usable_bytes``.

    Raises:
        ValueError: when not even a million vectors fit.
    """
    per_vector = bytes_per_vector + ID_BYTES
    n = int(usable_bytes // per_vector)
    for _ in range(8):  # the quantizer grows with nlist (a step function of n): settle in a few rounds
        if n < 1_000_000:
            break
        layout = shard_layout(n, dim, bytes_per_vector)
        fixed = layout.lists_overhead_bytes + layout.quantizer_bytes
        per_vector = layout.code_bytes + ID_BYTES
        fitted = int((usable_bytes - fixed) // per_vector) // 1_000_000 * 1_000_000
        if fitted == n:
            break
        n = fitted
    if n < 1_000_000 or shard_layout(n, dim, bytes_per_vector).total_bytes > usable_bytes:
        raise ValueError(f"usable host memory {usable_bytes / GB:.1f} GB does not hold a shard of a million "
                         f"vectors at {bytes_per_vector} bytes each")
    return n


def _cost(hours: float, price: float | None) -> float | None:
    return None if price is None else hours * price


def _sum_costs(*parts: float | None) -> float | None:
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def plan_capacity(inputs: PlanInputs, measured: Throughputs) -> Plan:
    """Derive the whole plan from the inputs and throughputs (pure arithmetic, see the module doc).

    Raises:
        ValueError: for nonsense inputs (the field and value are in the message), or a shard that
            does not fit in one host's usable memory.
    """
    inputs.validate()
    n = inputs.images
    notes: list[str] = []
    usable = inputs.host_memory_gb * GB * inputs.usable_memory_share
    if inputs.shard_vectors is None:
        shard_cap = shard_vectors_for_memory(usable, inputs.dim, inputs.bytes_per_vector)
        notes.append(f"shard size chosen to fill one host: {shard_cap:,} vectors")
    else:
        shard_cap = inputs.shard_vectors
    shards = math.ceil(n / shard_cap)  # e.g. 2e11 / 5e8 = 400
    per_shard = math.ceil(n / shards)  # hash sharding balances to within ~sqrt(n)
    layout = shard_layout(per_shard, inputs.dim, inputs.bytes_per_vector)
    if layout.code_bytes != inputs.bytes_per_vector:
        notes.append(f"--bytes-per-vector {inputs.bytes_per_vector} is not a code size of {layout.factory}; "
                     f"planned with {layout.code_bytes} bytes a vector")
    shard_bytes = layout.total_bytes
    shards_per_host = int(usable // shard_bytes)
    if shards_per_host < 1:
        raise ValueError(f"a shard needs {shard_bytes / GB:.1f} GB but a host has {usable / GB:.1f} GB "
                         f"usable ({inputs.host_memory_gb} GB × {inputs.usable_memory_share}); "
                         "lower shard_vectors")
    hosts = math.ceil(shards * inputs.replicas / shards_per_host)
    index_bytes = shards * shard_bytes

    # Object storage. The id map (faiss id -> image_id, parquet) is counted at 8 B + a ~16 B id string.
    images_storage = math.ceil(n * inputs.image_bytes)
    emb16, emb32 = n * inputs.dim * 2, n * inputs.dim * 4
    index_storage = inputs.keep_builds * (index_bytes + n * 24)
    models_storage = math.ceil(inputs.models_kept * inputs.model_version_bytes)
    storage = images_storage + emb32 + index_storage + models_storage

    # Compute for the whole corpus.
    cores = inputs.executors * inputs.executor_cores
    embed_on_gpu = inputs.gpus > 0
    embed_gpu_hours = n / (measured.embed_images_per_sec_per_gpu.value * 3600)
    embed_cpu_core_hours = n / (measured.embed_images_per_sec_per_cpu_core.value * 3600)
    embed_wall = embed_gpu_hours / inputs.gpus if embed_on_gpu else embed_cpu_core_hours / cores
    ingest_core_hours = n / (measured.ingest_images_per_sec_per_core.value * 3600)
    ingest_wall = ingest_core_hours / cores
    products = layout.train_size * layout.nlist * inputs.dim  # k-means work: sample × centroids × dim
    train_on_gpu = inputs.gpus > 0
    if train_on_gpu:
        train_hours = products / (measured.train_dim_products_per_sec_gpu.value * 3600)
    else:
        train_hours = products / (measured.train_dim_products_per_sec_per_core.value
                                  * inputs.executor_cores * 3600)
    add_core_hours = n / (measured.add_vectors_per_sec_per_core.value * 3600)
    add_wall = add_core_hours / cores
    build_wall = train_hours + add_wall

    # Nightly increment: ingest -> embed -> delta-shard add, with the trained quantizer.
    new = math.ceil(n * inputs.daily_new_share)
    frac = new / n
    nightly_ingest = ingest_wall * frac
    nightly_embed = embed_wall * frac
    nightly_add = add_wall * frac
    nightly = nightly_ingest + nightly_embed + nightly_add
    if nightly > 24:
        notes.append(f"the nightly increment takes {nightly:.1f} h, longer than a day: add GPUs or executors")
    nightly_storage = math.ceil(new * (inputs.image_bytes + inputs.dim * 4
                                       + inputs.keep_builds * (layout.code_bytes + ID_BYTES + 24)))

    cpu, gpu = inputs.cpu_core_hour_usd, inputs.gpu_hour_usd
    embed_cost = _cost(embed_gpu_hours, gpu) if embed_on_gpu else _cost(embed_cpu_core_hours, cpu)
    train_cost = (_cost(train_hours, gpu) if train_on_gpu
                  else _cost(train_hours * inputs.executor_cores, cpu))
    build_cost = _sum_costs(train_cost, _cost(add_core_hours, cpu))
    ingest_cost = _cost(ingest_core_hours, cpu)
    nightly_cost = _sum_costs(_cost(ingest_core_hours * frac, cpu),
                              None if embed_cost is None else embed_cost * frac,
                              _cost(add_core_hours * frac, cpu))
    costs = Costs(
        embed_full_usd=embed_cost, build_full_usd=build_cost, ingest_full_usd=ingest_cost,
        nightly_usd=nightly_cost,
        nightly_month_usd=None if nightly_cost is None else nightly_cost * DAYS_PER_MONTH,
        storage_month_usd=_cost(storage / GB, inputs.storage_gb_month_usd),
        serving_month_usd=_cost(hosts * HOURS_PER_MONTH, inputs.host_hour_usd),
    )
    return Plan(
        index_factory=layout.factory, index_kind=layout.kind, nlist=layout.nlist, pq_m=layout.pq_m,
        code_bytes=layout.code_bytes, train_size=layout.train_size, default_nprobe=layout.default_nprobe,
        shards=shards, max_vectors_per_shard=shard_cap, vectors_per_shard=per_shard,
        shard_codes_bytes=layout.codes_bytes, shard_ids_bytes=layout.ids_bytes,
        shard_lists_overhead_bytes=layout.lists_overhead_bytes, shard_quantizer_bytes=layout.quantizer_bytes,
        shard_bytes=shard_bytes, host_usable_bytes=int(usable), shards_per_host=shards_per_host, hosts=hosts,
        index_bytes=index_bytes, serving_memory_bytes=index_bytes * inputs.replicas,
        images_storage_bytes=images_storage, embeddings_fp16_bytes=emb16, embeddings_fp32_bytes=emb32,
        index_storage_bytes=index_storage, models_storage_bytes=models_storage, storage_bytes=storage,
        embed_on_gpu=embed_on_gpu, embed_gpu_hours=embed_gpu_hours, embed_cpu_core_hours=embed_cpu_core_hours,
        embed_wall_hours=embed_wall, ingest_core_hours=ingest_core_hours, ingest_wall_hours=ingest_wall,
        train_on_gpu=train_on_gpu, train_hours=train_hours, add_core_hours=add_core_hours,
        add_wall_hours=add_wall,
        build_wall_hours=build_wall, nightly_images=new, nightly_delta_shards=math.ceil(new / shard_cap),
        nightly_ingest_hours=nightly_ingest, nightly_embed_hours=nightly_embed, nightly_add_hours=nightly_add,
        nightly_hours=nightly, nightly_storage_bytes=nightly_storage, costs=costs, notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------
# Reading the benchmark files

_BASELINE_WORDS = ("autofaiss", "naive", "baseline", "full_decode", "full-decode")


def _walk_dicts(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict in a JSON document with its dotted path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk_dicts(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk_dicts(value, f"{path}[{i}]")


def _is_baseline(row: Mapping[str, Any]) -> bool:
    return any(isinstance(v, str) and any(w in v.lower() for w in _BASELINE_WORDS) for v in row.values())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _rate(row: Mapping[str, Any], name: str) -> tuple[float | None, str]:
    """``(value, key)`` of ``<name>_per_sec`` or of its short spelling ``<name>_per_s``."""
    key = f"{name}_per_sec" if f"{name}_per_sec" in row else f"{name}_per_s"
    return _number(row.get(key)), key


def _row_cores(row: Mapping[str, Any], doc: Mapping[str, Any], *, single_threaded: bool = False) -> float:
    for key in ("threads", "cores", "cpu_cores", "workers", "num_threads"):
        value = _number(row.get(key))
        if value is not None:
            return value
    if single_threaded:
        return 1.0
    machine = doc.get("machine")
    cpus = _number(machine.get("cpus")) if isinstance(machine, dict) else None
    return cpus if cpus is not None else 1.0


def _is_gpu_row(row: Mapping[str, Any]) -> bool:
    device = str(row.get("device", "")).lower()
    return "cuda" in device or "gpu" in device


def _planner_value(doc: Mapping[str, Any], key: str, label: str) -> Measure | None:
    block = doc.get("planner")
    value = _number(block.get(key)) if isinstance(block, dict) else None
    return None if value is None else Measure(value, f"{label}: planner.{key}")


def _embed_measures(doc: Mapping[str, Any], label: str) -> dict[str, Measure]:
    out: dict[str, Measure] = {}
    for field_name, key in (("embed_images_per_sec_per_gpu", "pipeline_images_per_sec_per_gpu"),
                            ("embed_images_per_sec_per_cpu_core", "pipeline_images_per_sec_per_cpu_core")):
        found = _planner_value(doc, key, label)
        if found:
            out[field_name] = found
    gpu: list[Measure] = []
    cpu: list[Measure] = []
    for path, row in _walk_dicts(doc):
        rate, key = _rate(row, "images")
        kind = " ".join(str(row.get(k, "")) for k in ("mode", "case", "name", "variant")).lower()
        if rate is None or "pipeline" not in kind or _is_baseline(row):
            continue
        if _is_gpu_row(row):
            gpu.append(Measure(rate, f"{label}: {path}.{key}"))
        else:
            cores = _row_cores(row, doc)
            cpu.append(Measure(rate / cores, f"{label}: {path}.{key} / {cores:g} cores"))
    if gpu and "embed_images_per_sec_per_gpu" not in out:
        out["embed_images_per_sec_per_gpu"] = min(gpu, key=lambda m: m.value)
    if cpu and "embed_images_per_sec_per_cpu_core" not in out:
        out["embed_images_per_sec_per_cpu_core"] = min(cpu, key=lambda m: m.value)
    return out


def _index_measures(doc: Mapping[str, Any], label: str) -> dict[str, Measure]:
    out: dict[str, Measure] = {}
    for field_name, key in (("add_vectors_per_sec_per_core", "add_vectors_per_sec_per_core"),
                            ("measured_bytes_per_vector", "bytes_per_vector"),
                            ("measured_recall_at_10", "recall_at_10")):
        found = _planner_value(doc, key, label)
        if found:
            out[field_name] = found
    block = doc.get("planner")
    train = _planner_value(doc, "train_dim_products_per_sec", label)
    if train is not None and isinstance(block, dict):
        on_gpu = "cuda" in str(block.get("train_device", "cpu")).lower()
        out["train_dim_products_per_sec_gpu" if on_gpu else "train_dim_products_per_sec_per_core"] = train
    rows = [(p, r) for p, r in _walk_dicts(doc) if not _is_baseline(r) and p != "planner"]
    for path, row in rows:
        add, add_key = _rate(row, "add_vectors")
        if add is not None and "add_vectors_per_sec_per_core" not in out and not _is_gpu_row(row):
            cores = _row_cores(row, doc)  # adds run on executor cores in the plan: CPU rows only
            out["add_vectors_per_sec_per_core"] = Measure(
                add / cores, f"{label}: {path}.{add_key} / {cores:g} cores")
        seconds, nlist = _number(row.get("train_seconds")), _number(row.get("nlist"))
        size, dim = _number(row.get("train_size")), _number(row.get("dim") or doc.get("dim"))
        if seconds and nlist and size and dim:
            rate = size * nlist * dim / seconds
            if _is_gpu_row(row):
                out.setdefault("train_dim_products_per_sec_gpu", Measure(
                    rate, f"{label}: {path} train_size×nlist×dim/train_seconds"))
            else:
                cores = _row_cores(row, doc)
                out.setdefault("train_dim_products_per_sec_per_core", Measure(
                    rate / cores, f"{label}: {path} train_size×nlist×dim/train_seconds / {cores:g} cores"))
        for field_name, key in (("measured_bytes_per_vector", "bytes_per_vector"),
                                ("measured_recall_at_10", "recall_at_10")):
            value = _number(row.get(key))
            if value is not None and field_name not in out:
                out[field_name] = Measure(value, f"{label}: {path}.{key}")
    return out


def _ingest_measures(doc: Mapping[str, Any], label: str) -> dict[str, Measure]:
    found = _planner_value(doc, "images_per_sec_per_core", label)
    if found:
        return {"ingest_images_per_sec_per_core": found}
    rates = []
    for path, row in _walk_dicts(doc):
        rate, key = _rate(row, "images")
        if rate is not None and not _is_baseline(row):
            # `bench ingest` validates in one loop in one process: one core unless the row says more.
            cores = _row_cores(row, doc, single_threaded=True)
            rates.append(Measure(rate / cores, f"{label}: {path}.{key} / {cores:g} cores"))
    return {"ingest_images_per_sec_per_core": min(rates, key=lambda m: m.value)} if rates else {}


def load_throughputs(bench_dir: str | Path) -> Throughputs:
    """Read embed.json, index.json and ingest.json from ``bench_dir``; defaults fill what is missing.

    Raises:
        ValueError: when a file exists but is not valid JSON (a broken measurement is not
            silently replaced by a default).
    """
    bench = Path(bench_dir)
    found: dict[str, Measure] = {}
    readers = {"embed.json": _embed_measures, "index.json": _index_measures, "ingest.json": _ingest_measures}
    for name, reader in readers.items():
        path = bench / name
        if not path.is_file():
            log.info("%s not found: using defaults for its figures", path)
            continue
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(doc).__name__}")
        got = reader(doc, str(path))
        if not got:
            log.warning("%s holds none of the figures the planner reads; using defaults", path)
        found.update(got)
    return Throughputs(**found)


# ---------------------------------------------------------------------------------------------
# Output


def human_bytes(n: float) -> str:
    """Decimal units: ``64.0 GB``, ``12.8 TB``, ``1.20 PB``."""
    for unit, scale in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.3g} {unit}" if n / scale < 100 else f"{n / scale:,.0f} {unit}"
    return f"{n:,.0f} B"


def human_hours(h: float) -> str:
    """``3.5 h``, ``1,234 h (51.4 days)``, ``42 s``."""
    if h < 1 / 60:
        return f"{h * 3600:.1f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h" if h < 48 else f"{h:,.0f} h ({h / 24:,.1f} days)"


def _usd(x: float) -> str:
    return f"${x:,.0f}" if x >= 100 else f"${x:,.2f}"


def format_plan(inputs: PlanInputs, measured: Throughputs, plan: Plan) -> str:
    """The plan as a three-column text table: quantity, value, basis."""
    rows: list[tuple[str, str, str]] = []

    def section(title: str) -> None:
        rows.append((f"[{title}]", "", ""))

    def row(name: str, value: str, basis: str = "") -> None:
        rows.append((name, value, basis))

    cores = inputs.executors * inputs.executor_cores
    section("inputs")
    row("images", f"{inputs.images:,} ({inputs.images:.3g})")
    row("embedding", f"dim {inputs.dim}, {inputs.bytes_per_vector} code bytes a vector")
    row("compute", f"{inputs.gpus} GPUs, {inputs.executors} executors × {inputs.executor_cores} cores "
                   f"= {cores:,}")
    row("serving", f"{inputs.host_memory_gb:g} GB hosts, {inputs.usable_memory_share:.0%} usable, "
                   f"{inputs.replicas} replicas")
    section("throughputs (measured = read from the bench JSON; default = assumed, see visearch/plan/capacity.py)")
    units = {"embed_images_per_sec_per_gpu": "images/s/GPU",
             "embed_images_per_sec_per_cpu_core": "images/s/core",
             "ingest_images_per_sec_per_core": "images/s/core",
             "add_vectors_per_sec_per_core": "vectors/s/core",
             "train_dim_products_per_sec_gpu": "n·nlist·d/s/GPU",
             "train_dim_products_per_sec_per_core": "n·nlist·d/s/core",
             "measured_bytes_per_vector": "B/vector (bench index)",
             "measured_recall_at_10": "recall@10 (bench)"}
    for name, m in measured.items():
        tag = "MEASURED" if m.measured else "DEFAULT"
        row(name, f"{m.value:,.4g} {units.get(name, '')}", f"{tag}: {m.source}" if m.measured else tag)
    section("index")
    row("layout a shard", plan.index_factory, f"nlist {plan.nlist:,}, nprobe {plan.default_nprobe} to start")
    row("shards", f"{plan.shards:,}",
        f"ceil({inputs.images:.3g} / {plan.max_vectors_per_shard:,} a shard at most)")
    row("vectors a shard", f"{plan.vectors_per_shard:,}")
    row("quantizer training", f"{plan.train_size:,} vectors", "once, shared by all shards")
    section("memory of one shard")
    row("codes", human_bytes(plan.shard_codes_bytes), f"{plan.vectors_per_shard:,} × {plan.code_bytes} B")
    row("ids", human_bytes(plan.shard_ids_bytes), f"{plan.vectors_per_shard:,} × {ID_BYTES} B")
    row("inverted-list overhead", human_bytes(plan.shard_lists_overhead_bytes),
        f"{plan.nlist:,} lists × {LIST_OVERHEAD_BYTES} B")
    row("quantizer + codebooks", human_bytes(plan.shard_quantizer_bytes), "centroids, HNSW graph, PQ/OPQ")
    row("shard total", human_bytes(plan.shard_bytes))
    section("serving hosts")
    row("shards a host", f"{plan.shards_per_host}", f"floor({human_bytes(plan.host_usable_bytes)} / shard)")
    row("hosts", f"{plan.hosts:,}",
        f"ceil({plan.shards} shards × {inputs.replicas} replicas / {plan.shards_per_host})")
    row("index (one copy)", human_bytes(plan.index_bytes))
    row("serving memory (all replicas)", human_bytes(plan.serving_memory_bytes))
    section("object storage")
    row("images", human_bytes(plan.images_storage_bytes), f"{inputs.image_bytes:,.0f} B an image")
    row("embeddings fp32", human_bytes(plan.embeddings_fp32_bytes), "counted in the total")
    row("embeddings fp16", human_bytes(plan.embeddings_fp16_bytes), "if stored as half floats")
    row("index builds", human_bytes(plan.index_storage_bytes), f"{inputs.keep_builds} builds + id maps")
    row("models", human_bytes(plan.models_storage_bytes), f"{inputs.models_kept} versions")
    row("total", human_bytes(plan.storage_bytes))
    section("full corpus")
    row("embed GPU-hours", f"{plan.embed_gpu_hours:,.0f}", "images / (images/s/GPU × 3600)")
    row("embed CPU core-hours", f"{plan.embed_cpu_core_hours:,.0f}", "the CPU-only alternative")
    row("embed wall time", human_hours(plan.embed_wall_hours),
        f"on {inputs.gpus} GPUs" if plan.embed_on_gpu else f"on {cores:,} cores")
    row("ingest wall time", human_hours(plan.ingest_wall_hours), f"{plan.ingest_core_hours:,.0f} core-hours")
    row("index train", human_hours(plan.train_hours),
        "one GPU" if plan.train_on_gpu else f"one executor ({inputs.executor_cores} cores)")
    row("index add", human_hours(plan.add_wall_hours),
        f"{plan.add_core_hours:,.0f} core-hours on {cores:,} cores")
    row("index build wall time", human_hours(plan.build_wall_hours), "train + add")
    section("nightly increment")
    row("new images a day", f"{plan.nightly_images:,}", f"{inputs.daily_new_share:.2%} of the corpus")
    row("delta shards a day", f"{plan.nightly_delta_shards}")
    row("ingest", human_hours(plan.nightly_ingest_hours))
    row("embed", human_hours(plan.nightly_embed_hours))
    row("delta-shard add", human_hours(plan.nightly_add_hours))
    row("nightly total", human_hours(plan.nightly_hours), "ingest + embed + add, in sequence")
    row("storage growth a day", human_bytes(plan.nightly_storage_bytes))
    cost_lines = [(label, value) for label, value in (
        ("embed everything", plan.costs.embed_full_usd),
        ("full index build", plan.costs.build_full_usd),
        ("ingest everything", plan.costs.ingest_full_usd),
        ("nightly run", plan.costs.nightly_usd),
        ("nightly runs a month", plan.costs.nightly_month_usd),
        ("object storage a month", plan.costs.storage_month_usd),
        ("serving hosts a month", plan.costs.serving_month_usd),
    ) if value is not None]
    if cost_lines:
        section("cost (work-hours × the prices given)")
        for label, value in cost_lines:
            row(label, _usd(value))
    if plan.notes:
        section("notes")
        for note in plan.notes:
            row("note", "", note)
    data = [r for r in rows if not r[0].startswith("[")]
    w0 = max(len(r[0]) for r in data)
    w1 = max(len(r[1]) for r in data)
    lines = [a if a.startswith("[") else f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def plan_to_json(inputs: PlanInputs, measured: Throughputs, plan: Plan) -> dict[str, Any]:
    """Plain-data form of the whole plan (inputs, throughputs with sources, derived figures)."""
    return {
        "inputs": dataclasses.asdict(inputs),
        "throughputs": {name: {"value": m.value, "source": m.source, "measured": m.measured}
                        for name, m in measured.items()},
        "plan": dataclasses.asdict(plan),
    }


# ---------------------------------------------------------------------------------------------
# Command line


def _count_arg(text: str) -> float:
    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _int_count_arg(text: str) -> int:
    return round(_count_arg(text))


def _cmd(args: argparse.Namespace) -> int:
    shard_vectors: int | None = args.shard_vectors
    if shard_vectors is None and args.host_memory_gb is None:
        shard_vectors = DEFAULT_SHARD_VECTORS
    inputs = PlanInputs(
        images=args.images, dim=args.dim, bytes_per_vector=args.bytes_per_vector, gpus=args.gpus,
        executors=args.executors, executor_cores=args.executor_cores, shard_vectors=shard_vectors,
        host_memory_gb=args.host_memory_gb or DEFAULT_HOST_MEMORY_GB,
        usable_memory_share=args.usable_memory_share, replicas=args.replicas,
        daily_new_share=args.daily_new_share, image_bytes=args.image_bytes, keep_builds=args.keep_builds,
        gpu_hour_usd=args.gpu_hour_usd, cpu_core_hour_usd=args.cpu_core_hour_usd,
        storage_gb_month_usd=args.storage_gb_month_usd, host_hour_usd=args.host_hour_usd,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every SIMD variant it tries
    measured = load_throughputs(args.bench_dir)
    plan = plan_capacity(inputs, measured)
    print(format_plan(inputs, measured, plan), flush=True)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(plan_to_json(inputs, measured, plan), indent=2, sort_keys=True))
        tmp.replace(out)
        log.info("wrote %s", out)
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``visearch plan``."""
    p = subparsers.add_parser(
        "plan", help="capacity plan for a corpus of N images",
        description="Capacity plan from measured throughputs (bench JSON) for N images. "
                    "Try: visearch plan --images 2e11 --gpu-hour-usd 2.5 --cpu-core-hour-usd 0.04 "
                    "--storage-gb-month-usd 0.021",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--images", type=_int_count_arg, required=True, help="corpus size, e.g. 2e11")
    p.add_argument("--dim", type=int, default=256, help="embedding dimension")
    p.add_argument("--bytes-per-vector", type=int, default=64, help="index code bytes a vector (PQ64 = 64)")
    p.add_argument("--gpus", type=int, default=64, help="GPUs for embedding and quantizer training (0: CPU)")
    p.add_argument("--executors", type=int, default=50, help="Spark executors for ingest and index add")
    p.add_argument("--executor-cores", type=int, default=16, help="cores an executor")
    p.add_argument("--shard-vectors", type=_int_count_arg, default=None,
                   help=f"vectors a shard (default {DEFAULT_SHARD_VECTORS:.0e}; with only --host-memory-gb "
                        "given: as many as fill one host)")
    p.add_argument("--host-memory-gb", type=float, default=None,
                   help=f"memory of a serving host (default {DEFAULT_HOST_MEMORY_GB:g})")
    p.add_argument("--usable-memory-share", type=float, default=0.8, help="share of host memory for shards")
    p.add_argument("--replicas", type=int, default=2, help="copies of every shard in serving")
    p.add_argument("--daily-new-share", type=float, default=0.005, help="new images a day / corpus")
    p.add_argument("--image-bytes", type=_count_arg, default=200e3, help="mean stored image size")
    p.add_argument("--keep-builds", type=int, default=2, help="index builds kept in object storage")
    p.add_argument("--bench-dir", default="bench-results", help="folder with embed/index/ingest.json")
    p.add_argument("--gpu-hour-usd", type=float, default=None, help="price of a GPU-hour")
    p.add_argument("--cpu-core-hour-usd", type=float, default=None, help="price of a core-hour")
    p.add_argument("--storage-gb-month-usd", type=float, default=None, help="object storage price")
    p.add_argument("--host-hour-usd", type=float, default=None, help="price of a serving host-hour")
    p.add_argument("--json", default=None, help="also write the plan as JSON here")
    p.set_defaults(func=_cmd)
