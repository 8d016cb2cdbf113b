"""The batch-embedding engine: many images through one model, decoding hidden behind inference.

What :mod:`visearch.embed.embed_day` (the embed job) runs on every Spark executor (and
``visearch bench embed`` measures):

- **One model per process.** :func:`cached_model` loads a version through the registry once per
  Python worker process (key: artifacts root, version, device) and keeps it for the following
  tasks (Spark reuses Python workers, ``spark.python.worker.reuse``). On CPU the model is put in
  channels-last memory format too (oneDNN's fast convolution layout; on CUDA the registry does it)
  and, with ``embed.cpu_optimize`` (the default), frozen for inference (:func:`optimize_for_cpu`:
  batch norms folded into the convolutions, weights prepacked for oneDNN; fp32 throughout, so the
  embeddings stay those of the eager model within float rounding).
- **Decode in threads, overlapped with inference.** :class:`BatchEmbedder` reads, checks and
  preprocesses images in a thread pool (Pillow releases the GIL while decoding and resizing, and
  hashlib while hashing) straight into a channels-last batch buffer, while the calling thread runs
  the model on the previous batch. ``prefetch_batches`` batches are decoded ahead.
- **The one preprocessing path.** Every image goes through :func:`visearch.train.preprocess.preprocess`
  with its defaults (JPEG draft decoding to the size the model needs), exactly as training and the
  query path do, so the embeddings of the job equal those of a query.
- **GPU-aware.** :func:`choose_device` takes the GPU Spark assigned to the task
  (``spark.task.resource.gpu.amount``), else ``cuda:0`` when CUDA is there and allowed, else the
  CPU. Inference runs under ``torch.inference_mode`` (in :meth:`LoadedModel.embed_tensors`), with
  bf16 autocast on CUDA when ``amp`` is set.
- **Bad images do not stop the job.** A file that is gone (``missing_file``), cannot be read
  (``unreadable``), no longer decodes (``decode_error``) or no longer holds the bytes that ingest
  validated (``content_changed``: its sha256 differs from ``silver.images``) comes back as a
  :class:`Failure`; the job quarantines it and goes on. Other errors (network, credentials)
  propagate so that Spark retries the task.

:func:`embed_arrow` is the Spark side: ``mapInArrow`` over ``(image_id, uri, sha256)`` rows,
yielding :data:`RESULT_SCHEMA` record batches.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import torch

from visearch.core.config import EmbedSettings, S3Settings, Settings, settings_from_json
from visearch.core.storage import open_store, sha256_bytes
from visearch.ingest.validation import MISSING_FILE, UNREADABLE, read_image_bytes
from visearch.train.preprocess import ImageDecodeError, preprocess
from visearch.train.registry import LoadedModel, ModelRegistry

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

DECODE_ERROR = "decode_error"
CONTENT_CHANGED = "content_changed"
#: What :func:`embed_arrow` yields: one row per input row; ``embedding`` is null when ``reason`` is set.
RESULT_SCHEMA = (
    "image_id STRING, sha256 STRING, embedding ARRAY<FLOAT>, reason STRING, detail STRING, device STRING"
)
MODEL_CACHE_SIZE = 2  # model versions kept per process (the old and the new champion)
_DETAIL_MAX_CHARS = 1000
#: Defaults of :class:`EmbedTask`: the ``embed`` settings' (their one source).
_EMBED_DEFAULTS = EmbedSettings()

CropBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class EmbedItem:
    """One image to embed.

    Attributes:
        image_id: the key the result carries.
        source: a URI (``file://``, ``s3://`` or a local path) or the encoded bytes.
        sha256: the content hash ingest validated; when given, the bytes read must match it.
        crop: optional ``(x, y, w, h)`` box in pixels of the oriented, full-resolution image.
    """

    image_id: str
    source: str | bytes
    sha256: str | None = None
    crop: CropBox | None = None


@dataclass(frozen=True)
class Failure:
    """An image that could not be embedded, with a quarantine reason and a human-readable detail."""

    image_id: str
    sha256: str | None
    reason: str
    detail: str


@dataclass
class EmbeddedBatch:
    """The outcome of one batch: ``embeddings[i]`` belongs to ``image_ids[i]``; failures apart."""

    image_ids: list[str]
    sha256: list[str | None]
    embeddings: np.ndarray  # (n_ok, D) float32, L2-normalised
    failures: list[Failure]


@dataclass
class EmbedStats:
    """Where a :class:`BatchEmbedder`'s time went (seconds on the calling thread)."""

    batches: int = 0
    images: int = 0
    failed: int = 0
    wait_s: float = 0.0  # waiting for decoded batches (decoding not hidden behind inference)
    infer_s: float = 0.0  # running the model

    def as_dict(self) -> dict[str, float | int]:
        """Plain-data form (for logs and benchmark JSON)."""
        return {"batches": self.batches, "images": self.images, "failed": self.failed,
                "wait_s": round(self.wait_s, 4), "infer_s": round(self.infer_s, 4)}


# --------------------------------------------------------------------------------------------
# Devices and threads (pure decisions first, then the Spark/torch lookups)
# --------------------------------------------------------------------------------------------


def device_for_task(gpu_addresses: Sequence[str] | None, *, use_gpu: bool, cuda_available: bool) -> str:
    """The device a task embeds on: its Spark-assigned GPU, else ``cuda:0``, else ``cpu``.

    Args:
        gpu_addresses: the task's ``gpu`` resource addresses from Spark (``None``: none assigned).
        use_gpu: whether settings allow a GPU that Spark did not assign (``embed.use_gpu``).
        cuda_available: ``torch.cuda.is_available()``.

    Raises:
        ValueError: when Spark assigned a GPU address that is not a device index, or assigned a
            GPU on a host where CUDA is not available.
    """
    if gpu_addresses:
        address = str(gpu_addresses[0]).strip()
        if not re.fullmatch(r"\d+", address):
            raise ValueError(f"Spark assigned GPU address {address!r}; expected a CUDA device index")
        if not cuda_available:
            raise ValueError(f"Spark assigned GPU {address} but torch sees no CUDA device")
        return f"cuda:{address}"
    if use_gpu and cuda_available:
        return "cuda:0"
    return "cpu"


def task_gpu_addresses() -> list[str] | None:
    """The GPU addresses Spark assigned to the running task (``None`` outside a task or without)."""
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    ctx = TaskContext.get()
    if ctx is None:
        return None
    info = ctx.resources().get("gpu")
    return list(info.addresses) if info is not None and info.addresses else None


def choose_device(use_gpu: bool) -> torch.device:
    """The device for the running task (see :func:`device_for_task`)."""
    return torch.device(device_for_task(task_gpu_addresses(), use_gpu=use_gpu,
                                        cuda_available=torch.cuda.is_available()))


def local_cores(master: str, cpu_count: int) -> int | None:
    """Cores of a ``local``/``local[N]``/``local[*]`` master (``None`` for a cluster master).

    Raises:
        ValueError: for a malformed ``local[...]`` master.
    """
    if master == "local":
        return 1
    match = re.fullmatch(r"local\[(\*|\d+)(?:,\s*\d+)?\]", master.strip())
    if match is None:
        if master.startswith("local"):
            raise ValueError(f"cannot parse Spark master {master!r}")
        return None
    return cpu_count if match.group(1) == "*" else max(1, int(match.group(1)))


def cpu_threads_per_task(cores: int, tasks: int) -> int:
    """Torch threads for each of ``tasks`` concurrent tasks sharing ``cores`` cores (at least 1).

    Raises:
        ValueError: for a non-positive ``cores`` or ``tasks``.
    """
    if cores < 1 or tasks < 1:
        raise ValueError(f"cores and tasks must be positive, got {cores} and {tasks}")
    return max(1, cores // min(cores, tasks))


# --------------------------------------------------------------------------------------------
# The per-process model cache
# --------------------------------------------------------------------------------------------

_CACHE: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_LOADS = 0


def optimize_for_cpu(model: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """``model`` traced, frozen and optimised for CPU inference, same fp32 outputs.

    Tracing records the forward pass on a channels-last ``(2, 3, S, S)`` example (the batch size
    stays free); freezing inlines the weights, folds each batch norm into the convolution before it
    and lets :func:`torch.jit.optimize_for_inference` prepack convolution weights for oneDNN. On
    this project's 2-core CPU that doubles ResNet-50's throughput; outputs move by ~1e-6.

    Raises:
        RuntimeError: when the model cannot be traced.
    """
    import warnings

    example = torch.zeros(2, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of compile
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model.eval(), example, check_trace=False)  # type: ignore[no-untyped-call]
            frozen = torch.jit.freeze(traced)
            optimised = torch.jit.optimize_for_inference(frozen)
    return optimised


def cached_model(
    artifacts: str, version: str, device: str | torch.device, s3: S3Settings | None = None,
    *, cpu_optimize: bool = False,
) -> LoadedModel:
    """The model of ``version`` on ``device``, loaded once per process and kept.

    The model is moved to channels-last memory format (on CPU as well as CUDA); on CPU with
    ``cpu_optimize`` it is also frozen for inference (:func:`optimize_for_cpu`). At most
    :data:`MODEL_CACHE_SIZE` versions are kept; the least recently used one is dropped.

    Raises:
        FileNotFoundError: for a version the registry does not hold.
        ValueError: when a model file fails its checksum.
    """
    global _LOADS
    optimise = cpu_optimize and torch.device(device).type == "cpu"
    key = (artifacts, version, str(torch.device(device)) + (":optimised" if optimise else ""))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
        start = time.perf_counter()
        loaded = ModelRegistry(open_store(artifacts, s3)).load(version, device=device)
        loaded.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if optimise:
            loaded = dataclasses.replace(loaded, model=optimize_for_cpu(loaded.model, loaded.prep.size))
        _LOADS += 1
        _CACHE[key] = loaded
        while len(_CACHE) > MODEL_CACHE_SIZE:
            _CACHE.popitem(last=False)
        log.info("pid %d loaded model %s on %s in %.2fs", os.getpid(), version, key[2],
                 time.perf_counter() - start)
        return loaded


def model_loads() -> int:
    """How many times this process has loaded a model into the cache."""
    return _LOADS


def clear_model_cache() -> None:
    """Forget every cached model (tests; freeing GPU memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    items: list[EmbedItem]
    buffer: torch.Tensor  # (n, 3, S, S) channels-last
    futures: list[Future[Failure | None]] = field(default_factory=list)


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 3] + "..."


class BatchEmbedder:
    """Embed a stream of images in batches, decoding ahead in a thread pool.

    Args:
        model: a loaded model version (eager or exported).
        batch_size: images per forward pass.
        decode_workers: threads that read, hash and preprocess images.
        prefetch_batches: batches decoded ahead of the one being embedded (>= 1 overlaps).
        amp: bf16 autocast on CUDA (ignored on CPU, so that CPU embeddings equal the query path's).
        cpu_amp: bf16 autocast on CPU as well (about 2x on CPUs with AVX512-BF16/AMX, but the
            embeddings then differ from fp32 ones by ~1e-2; for benchmarks, never the job's default).
        s3: settings for ``s3://`` sources.

    Raises:
        ValueError: for a non-positive ``batch_size`` or ``decode_workers``, or a negative
            ``prefetch_batches``.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        batch_size: int = 64,
        decode_workers: int = 2,
        prefetch_batches: int = 2,
        amp: bool = False,
        cpu_amp: bool = False,
        s3: S3Settings | None = None,
    ) -> None:
        if batch_size < 1 or decode_workers < 1 or prefetch_batches < 0:
            raise ValueError(
                f"need batch_size >= 1, decode_workers >= 1, prefetch_batches >= 0; got "
                f"{batch_size}, {decode_workers}, {prefetch_batches}"
            )
        self.model = model
        self.batch_size = batch_size
        self.prefetch_batches = prefetch_batches
        self.amp = (amp and model.device.type == "cuda") or (cpu_amp and model.device.type == "cpu")
        self.s3 = s3
        self.stats = EmbedStats()
        self._pin = model.device.type == "cuda"
        self._pool = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="embed-decode")

    def __enter__(self) -> BatchEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the decode threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _read(self, item: EmbedItem) -> bytes | Failure:
        if isinstance(item.source, bytes | bytearray | memoryview):
            return bytes(item.source)
        try:
            return read_image_bytes(item.source, self.s3)
        except FileNotFoundError:
            return Failure(item.image_id, item.sha256, MISSING_FILE, f"no object at {item.source}")
        except (IsADirectoryError, NotADirectoryError, PermissionError, ValueError) as exc:
            return Failure(item.image_id, item.sha256, UNREADABLE,
                           _clip(f"{item.source}: {type(exc).__name__}: {exc}"))

    def _prepare(self, item: EmbedItem, out: torch.Tensor) -> Failure | None:
        """Read, decode and preprocess ``item`` into ``out`` ``(3, S, S)``; a Failure if it can't."""
        data = self._read(item)
        if isinstance(data, Failure):
            return data
        try:
            tensor = preprocess(data, self.model.prep, item.crop)  # (3, S, S) float32
        except ImageDecodeError as exc:
            where = item.source if isinstance(item.source, str) else f"{len(data)} bytes"
            return Failure(item.image_id, item.sha256, DECODE_ERROR, _clip(f"{where}: {exc}"))
        if item.sha256 is not None:
            actual = sha256_bytes(data)
            if actual != item.sha256:
                return Failure(item.image_id, item.sha256, CONTENT_CHANGED, _clip(
                    f"{item.source if isinstance(item.source, str) else 'bytes'} now has sha256 "
                    f"{actual}, ingest validated {item.sha256}"))
        out.copy_(tensor)
        return None

    def _buffer(self, n: int) -> torch.Tensor:
        size = self.model.prep.size
        return torch.empty((n, 3, size, size), dtype=torch.float32,
                           memory_format=torch.channels_last, pin_memory=self._pin)  # (n, 3, S, S)

    def embed(self, items: Iterable[EmbedItem]) -> Iterator[EmbeddedBatch]:
        """Embed ``items`` in order, one :class:`EmbeddedBatch` per ``batch_size`` items.

        Raises:
            ValueError: for an invalid crop box.
            Exception: whatever reading an object raises besides a missing or unreadable file
                (network, credentials), so that the caller's retry sees it.
        """
        source = iter(items)
        pending: deque[_Pending] = deque()

        def submit() -> bool:
            chunk = list(islice(source, self.batch_size))
            if not chunk:
                return False
            job = _Pending(chunk, self._buffer(len(chunk)))
            job.futures = [self._pool.submit(self._prepare, item, job.buffer[i])
                           for i, item in enumerate(chunk)]
            pending.append(job)
            return True

        try:
            while len(pending) <= self.prefetch_batches and submit():
                pass
            while pending:
                job = pending.popleft()
                submit()  # keep the decode threads busy while this batch waits and runs
                start = time.perf_counter()
                outcomes = [f.result() for f in job.futures]
                self.stats.wait_s += time.perf_counter() - start
                yield self._finish(job, outcomes)
        finally:
            for job in pending:
                for future in job.futures:
                    future.cancel()

    def _finish(self, job: _Pending, outcomes: list[Failure | None]) -> EmbeddedBatch:
        failures = [o for o in outcomes if o is not None]
        ok = [i for i, o in enumerate(outcomes) if o is None]
        batch = job.buffer
        if len(ok) < len(outcomes):
            index = torch.tensor(ok, dtype=torch.long)
            batch = batch.index_select(0, index).contiguous(memory_format=torch.channels_last)  # (k, 3, S, S)
        start = time.perf_counter()
        vectors = (self.model.embed_tensors(batch, amp=self.amp) if ok
                   else np.zeros((0, self.model.embed_dim), dtype=np.float32))  # (k, D)
        self.stats.infer_s += time.perf_counter() - start
        self.stats.batches += 1
        self.stats.images += len(outcomes)
        self.stats.failed += len(failures)
        return EmbeddedBatch(
            image_ids=[job.items[i].image_id for i in ok],
            sha256=[job.items[i].sha256 for i in ok],
            embeddings=vectors,
            failures=failures,
        )

    def embed_all(self, items: Iterable[EmbedItem]) -> tuple[list[str], np.ndarray, list[Failure]]:
        """Embed everything; ``(image_ids, embeddings (N, D), failures)``.

        Raises:
            ValueError: for an invalid crop box.
        """
        ids: list[str] = []
        chunks: list[np.ndarray] = []
        failures: list[Failure] = []
        for batch in self.embed(items):
            ids.extend(batch.image_ids)
            chunks.append(batch.embeddings)
            failures.extend(batch.failures)
        vectors = (np.concatenate(chunks) if chunks
                   else np.zeros((0, self.model.embed_dim), dtype=np.float32))  # (N, D)
        return ids, vectors, failures


# --------------------------------------------------------------------------------------------
# The Spark side
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedTask:
    """Everything one Spark task needs (pickled to the executors with the function).

    Built with :meth:`from_settings`; the knobs default to the ``embed`` settings' defaults.

    Attributes:
        settings_json: :meth:`Settings.to_json` of the job (storage roots, S3 endpoint).
        model_version: the version to embed with.
        batch_size: images per forward pass.
        decode_workers: decode threads per task.
        use_gpu: take ``cuda:0`` when CUDA is there but Spark assigned no GPU.
        amp: bf16 autocast on CUDA.
        cpu_threads: torch threads per task on CPU (``None``: leave torch's default).
        cpu_optimize: freeze the model for CPU inference (:func:`optimize_for_cpu`).
    """

    settings_json: str
    model_version: str
    batch_size: int = _EMBED_DEFAULTS.batch_size
    decode_workers: int = _EMBED_DEFAULTS.decode_workers
    use_gpu: bool = _EMBED_DEFAULTS.use_gpu
    amp: bool = _EMBED_DEFAULTS.amp
    cpu_threads: int | None = None
    cpu_optimize: bool = _EMBED_DEFAULTS.cpu_optimize

    @classmethod
    def from_settings(cls, settings: Settings, model_version: str, *, cpu_threads: int | None = None) -> EmbedTask:
        """The task of embedding with ``model_version`` under ``settings`` (its ``embed`` section)."""
        embed = settings.embed
        return cls(
            settings_json=settings.to_json(),
            model_version=model_version,
            batch_size=embed.batch_size,
            decode_workers=embed.decode_workers,
            use_gpu=embed.use_gpu,
            amp=embed.amp,
            cpu_threads=cpu_threads,
            cpu_optimize=embed.cpu_optimize,
        )


def _result_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("image_id", pa.string()),
        ("sha256", pa.string()),
        ("embedding", pa.list_(pa.float32())),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("device", pa.string()),
    ])


def _to_record_batch(batch: EmbeddedBatch, device: str) -> pa.RecordBatch:
    """One engine batch as a :data:`RESULT_SCHEMA` record batch (embeddings first, then failures)."""
    import pyarrow as pa

    n_ok, dim = batch.embeddings.shape
    n = n_ok + len(batch.failures)
    values = pa.array(batch.embeddings.reshape(-1), type=pa.float32())  # (n_ok * D,)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32).clip(max=n_ok) * dim, type=pa.int32())
    mask = pa.array([False] * n_ok + [True] * len(batch.failures))
    embeddings = pa.ListArray.from_arrays(offsets, values, mask=mask)
    f = batch.failures
    return pa.RecordBatch.from_arrays(
        [
            pa.array(batch.image_ids + [x.image_id for x in f], type=pa.string()),
            pa.array(batch.sha256 + [x.sha256 for x in f], type=pa.string()),
            embeddings,
            pa.array([None] * n_ok + [x.reason for x in f], type=pa.string()),
            pa.array([None] * n_ok + [x.detail for x in f], type=pa.string()),
            pa.array([device] * n, type=pa.string()),
        ],
        schema=_result_schema(),
    )


def _items(batches: Iterable[pa.RecordBatch]) -> Iterator[EmbedItem]:
    for record_batch in batches:
        columns = record_batch.to_pydict()
        for image_id, uri, sha in zip(columns["image_id"], columns["uri"], columns["sha256"], strict=True):
            yield EmbedItem(str(image_id), str(uri), sha)


def embed_arrow(batches: Iterator[pa.RecordBatch], task: EmbedTask) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: ``(image_id, uri, sha256)`` rows to :data:`RESULT_SCHEMA` rows.

    Loads the model once per Python worker process (:func:`cached_model`), picks the task's
    device (:func:`choose_device`), and streams the rows through a :class:`BatchEmbedder`.

    Raises:
        FileNotFoundError: when the model version is missing from the registry.
        Exception: storage errors other than a missing or unreadable image (the task is retried).
    """
    settings = settings_from_json(task.settings_json)
    s3 = settings.s3 if settings.uses_s3 else None
    device = choose_device(task.use_gpu)
    if device.type == "cpu" and task.cpu_threads is not None and torch.get_num_threads() != task.cpu_threads:
        torch.set_num_threads(task.cpu_threads)
    model = cached_model(settings.artifacts, task.model_version, device, s3, cpu_optimize=task.cpu_optimize)
    with BatchEmbedder(model, batch_size=task.batch_size, decode_workers=task.decode_workers,
                       amp=task.amp, s3=s3) as engine:
        start = time.perf_counter()
        for batch in engine.embed(_items(batches)):
            yield _to_record_batch(batch, str(device))
        stats = engine.stats
    log.info("pid %d embedded %d images (%d failed) on %s in %.1fs: %s", os.getpid(), stats.images,
             stats.failed, device, time.perf_counter() - start, stats.as_dict())
