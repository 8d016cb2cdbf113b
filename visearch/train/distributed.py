"""Data-parallel training through Spark's ``TorchDistributor``: the worker and what it is sent.

A training run (:func:`visearch.train.train_day.run` is the driver, once
:func:`visearch.train.cadence.decide` said the day trains):

1. The driver collects the day's pairs with their image URIs (ids and URIs only: small) and turns
   them into :class:`~visearch.train.trainer.PairRecord` s with :func:`assemble_records`.
2. It packs them with the settings into a :class:`TrainSpec` and calls :func:`run_distributed`,
   which runs :func:`train_worker` through
   ``TorchDistributor(num_processes, local_mode=True, use_gpu=...)``.
3. In local mode pyspark 4.2 cloudpickles ``(train_worker, spec)`` to a temporary file and starts
   ``python -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=N script``
   (``train_worker`` is pickled by reference to this module, which each process imports); every
   process finds ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
   environment (:func:`world_from_env`). ``train_worker`` joins the process group (gloo on CPU,
   nccl on GPU), builds the model, wraps it in ``DistributedDataParallel`` when there is more than
   one process, and runs :func:`visearch.train.trainer.train` with checkpoints under the spec's prefix
   of the artifacts store, resuming from the newest one (a killed job continues where it stopped).
4. Rank 0 returns the weights (CPU tensors), the loss curve and the run summary.

Two things about ``TorchDistributor`` that shape this module (checked in pyspark 4.2's
``ml/torch/distributor.py`` and ``ml/dl_util.py``):

- **Only rank 0 may return.** The generated script makes *every* process pickle its return value
  to the same output file, so the last process to finish wins: a rank that returns ``None``
  after rank 0 replaces rank 0's result (measured: two processes returning their rank gave
  rank 1's value). :func:`leave_worker` therefore ends ranks other than 0 with ``SystemExit(0)``
  — a clean exit, which torchrun counts as success — before they reach that write.
- **``use_gpu`` in local mode needs Spark to know the driver's GPUs**
  (``spark.driver.resource.gpu.amount`` and a discovery script). Without them TorchDistributor
  refuses to start, so :func:`run_distributed` passes ``use_gpu`` to it only when the driver
  has GPU resources; either way the worker itself places rank ``r`` on ``cuda:LOCAL_RANK``.

Shipping the pairs. Up to :data:`INLINE_RECORDS_MAX` records travel inside the spec, pickled with
the function into TorchDistributor's temporary file (about 200 bytes a record, so at most ~10 MB
read once by each process). Larger sets are written by the driver as
``<checkpoint prefix>/pairs.parquet`` in the artifacts store and read by each worker from there
(so it also works when the store is S3 and the workers are elsewhere); the file goes with the
checkpoints once the model is saved. Every worker holds the full list: the data stream of
:func:`visearch.train.trainer.batch_keys` indexes the whole set and each rank draws its own slice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from visearch.core.config import S3Settings, Settings, TrainSettings, settings_from_json
from visearch.core.storage import ObjectStore, open_store, split_uri
from visearch.train.trainer import PairRecord, TrainConfig

if TYPE_CHECKING:
    import torch
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Defaults of :class:`TrainSpec`'s knobs: the ``train`` settings' (their one source).
_TRAIN_DEFAULTS = TrainSettings()
#: At most this many pair records travel pickled inside the spec; more go through a parquet file.
INLINE_RECORDS_MAX = 50_000
PAIRS_FILE = "pairs.parquet"
CHECKPOINTS = "checkpoints"


# ------------------------------------------------------------------------------------ world


@dataclass(frozen=True)
class World:
    """Where this process sits among the processes training together.

    Attributes:
        rank: global rank, 0 … world_size − 1; rank 0 writes checkpoints and returns the result.
        local_rank: rank on this machine; picks the GPU (``cuda:local_rank``).
        world_size: number of processes.
        master_addr: rendezvous host of the process group (empty for a single process).
        master_port: rendezvous port (0 for a single process).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str = ""
    master_port: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process (a process group is needed)."""
        return self.world_size > 1


def _env_int(env: Mapping[str, str], name: str, default: int | None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        if default is None:
            raise ValueError(f"{name} is not set")
        return default
    try:
        return int(raw.strip())
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The :class:`World` that torchrun (and so TorchDistributor) describes in the environment.

    No ``WORLD_SIZE`` means a single process (rank 0 of 1), e.g. the worker called directly.

    Raises:
        ValueError: for a non-integer value, ``WORLD_SIZE`` < 1, a rank outside
            ``[0, WORLD_SIZE)``, a negative ``LOCAL_RANK``, ``RANK`` without ``WORLD_SIZE``, or a
            multi-process world without ``MASTER_ADDR`` / a valid ``MASTER_PORT``.
    """
    env = os.environ if env is None else env
    if not env.get("WORLD_SIZE", "").strip():
        if env.get("RANK", "").strip() not in ("", "0"):
            raise ValueError(f"RANK={env['RANK']!r} is set but WORLD_SIZE is not")
        return World()
    world_size = _env_int(env, "WORLD_SIZE", None)
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {world_size}")
    rank = _env_int(env, "RANK", 0 if world_size == 1 else None)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} is outside a world of size {world_size}")
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    if local_rank < 0:
        raise ValueError(f"LOCAL_RANK must be >= 0, got {local_rank}")
    addr = env.get("MASTER_ADDR", "").strip()
    port = _env_int(env, "MASTER_PORT", 0)
    if world_size > 1:
        if not addr:
            raise ValueError(f"MASTER_ADDR is not set for a world of size {world_size}")
        if not 0 < port < 65536:
            raise ValueError(
                f"MASTER_PORT must be a port number for a world of size {world_size}, got {port}"
            )
    return World(rank=rank, local_rank=local_rank, world_size=world_size, master_addr=addr, master_port=port)


def backend_for(use_gpu: bool) -> str:
    """The ``torch.distributed`` backend: ``nccl`` between GPUs, ``gloo`` on CPU."""
    return "nccl" if use_gpu else "gloo"


def device_for(world: World, use_gpu: bool, cuda_devices: int) -> str:
    """The torch device of this process: ``cuda:<local_rank>`` on GPU, else ``cpu``.

    Args:
        world: this process's place.
        use_gpu: train on GPUs.
        cuda_devices: GPUs this process can see (``torch.cuda.device_count()``).

    Raises:
        ValueError: when GPUs are asked for and ``local_rank`` has none to use.
    """
    if not use_gpu:
        return "cpu"
    if world.local_rank >= cuda_devices:
        raise ValueError(
            f"use_gpu is set but local rank {world.local_rank} has no GPU ({cuda_devices} visible); "
            "lower train.num_processes or set train.use_gpu=false"
        )
    return f"cuda:{world.local_rank}"


def leave_worker(world: World, output: WorkerOutput) -> WorkerOutput:
    """Rank 0's return value; other ranks exit cleanly instead of returning.

    TorchDistributor's generated script pickles every process's return value to one file (the last
    writer wins), so ranks other than 0 must not return at all (see the module docstring).

    Raises:
        SystemExit: with code 0 on every rank but 0.
    """
    if world.is_main:
        return output
    _exit_quietly()


def _exit_quietly() -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    raise SystemExit(0)


# ------------------------------------------------------------------------------------ pairs


@dataclass(frozen=True)
class PairRow:
    """One row of ``gold.training_pairs`` as the driver collects it."""

    query_image_id: str
    positive_image_id: str
    source: str
    weight: float
    hard_negative_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssembledPairs:
    """Training records with the source of each, and what was left out.

    Attributes:
        records: sorted by (source, query, positive); ``group_id`` is the query image's index
            among the sorted distinct query ids.
        sources: ``sources[i]`` is the source of ``records[i]``.
        dropped: pairs left out because the query or the positive has no usable image.
        dropped_negatives: hard-negative ids left out (no usable image, or the pair's own images).
    """

    records: list[PairRecord]
    sources: list[str]
    dropped: int = 0
    dropped_negatives: int = 0

    def by_source(self) -> dict[str, int]:
        """Record count per source, sorted by source."""
        return dict(sorted(Counter(self.sources).items()))


def assemble_records(rows: Iterable[PairRow], uris: Mapping[str, str]) -> AssembledPairs:
    """Pair rows plus image URIs → :class:`~visearch.train.trainer.PairRecord` s (pure; runs on the driver).

    A pair whose query or positive has no URI in ``uris`` (deleted, quarantined, unknown) is
    dropped; so are hard negatives without one, and a negative that is the pair's own query or
    positive. The result is sorted, so the records (and the training data stream built on their
    order) do not depend on the order Spark returned the rows in.

    Groups: pairs of one query image share a group (``PairRecord.group_id``), so that two
    positives clicked for one query are not each other's negatives in a batch. Groups are not
    merged transitively over shared positives: with noisy clicks that would chain most of the
    corpus into one group and leave the loss without negatives.

    Raises:
        ValueError: for a pair with a non-finite or non-positive weight.
    """
    kept: list[tuple[str, str, str, float, tuple[str, ...]]] = []
    dropped = dropped_negatives = 0
    for row in rows:
        weight = float(row.weight)
        if not weight > 0 or weight == float("inf"):
            raise ValueError(
                f"pair {row.query_image_id}->{row.positive_image_id} ({row.source}) has weight "
                f"{row.weight!r}; weights must be positive and finite"
            )
        if row.query_image_id not in uris or row.positive_image_id not in uris:
            dropped += 1
            continue
        own = {row.query_image_id, row.positive_image_id}
        negatives = tuple(n for n in row.hard_negative_ids if n in uris and n not in own)
        dropped_negatives += len(row.hard_negative_ids) - len(negatives)
        kept.append((row.source, row.query_image_id, row.positive_image_id, weight, negatives))
    kept.sort(key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
    group_of = {q: i for i, q in enumerate(sorted({r[1] for r in kept}))}
    records = [
        PairRecord(uris[q], uris[p], w, group_of[q], tuple(uris[n] for n in negs))
        for _, q, p, w, negs in kept
    ]
    return AssembledPairs(records, [r[0] for r in kept], dropped, dropped_negatives)


def records_digest(records: Sequence[PairRecord]) -> str:
    """sha256 over the records in order (URIs, weights, groups, negatives)."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(
            json.dumps(
                [r.query_uri, r.positive_uri, repr(float(r.weight)), r.group_id, list(r.hard_negative_uris)]
            ).encode()
        )
        digest.update(b"\n")
    return digest.hexdigest()


def records_to_parquet(records: Sequence[PairRecord]) -> bytes:
    """The records as a Parquet file (columns as :class:`PairRecord`'s fields)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "query_uri": pa.array([r.query_uri for r in records], pa.string()),
            "positive_uri": pa.array([r.positive_uri for r in records], pa.string()),
            "weight": pa.array([float(r.weight) for r in records], pa.float64()),
            "group_id": pa.array([int(r.group_id) for r in records], pa.int64()),
            "hard_negative_uris": pa.array(
                [list(r.hard_negative_uris) for r in records], pa.list_(pa.string())
            ),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def records_from_parquet(data: bytes) -> list[PairRecord]:
    """Inverse of :func:`records_to_parquet`.

    Raises:
        ValueError: when a column is missing.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    needed = ("query_uri", "positive_uri", "weight", "group_id", "hard_negative_uris")
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise ValueError(f"pairs file lacks columns {missing}; has {table.column_names}")
    cols = {c: table.column(c).to_pylist() for c in needed}
    return [
        PairRecord(q, p, float(w), int(g), tuple(negs or ()))
        for q, p, w, g, negs in zip(*(cols[c] for c in needed), strict=True)
    ]


# ------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class TrainSpec:
    """Everything a worker needs, pickled once by TorchDistributor and read by every process.

    Attributes:
        settings_json: :meth:`visearch.core.config.Settings.to_json` (storage roots, model, S3).
        ds: the day being trained for.
        train: the trainer's run configuration (its ``device`` is set per process).
        checkpoint_prefix: key prefix of this run's checkpoints in the artifacts store.
        num_records: how many pair records there are.
        records: the records themselves, or empty when ``records_key`` is set.
        records_key: key of a Parquet file of the records in the artifacts store.
        num_hard_negatives: hard-negative slots per pair (0: none).
        augment_strength: colour-jitter strength of the SimCLR views.
        augment_blur: probability of the Gaussian blur of the views.
        use_gpu: train on ``cuda:<local rank>`` with nccl.
        resume: continue from the newest checkpoint under the prefix.
    """

    settings_json: str
    ds: str
    train: TrainConfig
    checkpoint_prefix: str
    num_records: int
    records: tuple[PairRecord, ...] = ()
    records_key: str | None = None
    num_hard_negatives: int = 0
    augment_strength: float = _TRAIN_DEFAULTS.augment_strength
    augment_blur: float = _TRAIN_DEFAULTS.augment_blur
    use_gpu: bool = _TRAIN_DEFAULTS.use_gpu
    resume: bool = True

    def __post_init__(self) -> None:
        if self.num_records < 1:
            raise ValueError(f"a training run needs at least one pair, got {self.num_records}")
        if self.records_key is None and len(self.records) != self.num_records:
            raise ValueError(f"spec says {self.num_records} records but carries {len(self.records)}")
        if self.records_key is not None and self.records:
            raise ValueError("give the records inline or as records_key, not both")
        if self.num_hard_negatives < 0:
            raise ValueError(f"num_hard_negatives must be >= 0, got {self.num_hard_negatives}")

    def load_records(self, store: ObjectStore) -> list[PairRecord]:
        """The pair records, from the spec or from the Parquet file in ``store``.

        Raises:
            ValueError: when the file does not hold ``num_records`` records.
        """
        if self.records_key is None:
            return list(self.records)
        records = records_from_parquet(store.get_bytes(self.records_key))
        if len(records) != self.num_records:
            raise ValueError(
                f"{store.uri(self.records_key)} holds {len(records)} records, expected {self.num_records}"
            )
        return records


def checkpoint_root(ds: str) -> str:
    """Key prefix of every training run's checkpoints for ``ds`` (deleted after a successful save)."""
    return f"{CHECKPOINTS}/{ds}/"


def run_id(
    settings: Settings,
    train: TrainConfig,
    world_size: int,
    records: Sequence[PairRecord],
    num_hard_negatives: int,
) -> str:
    """12 hex digits naming a run: model, training knobs, world size and data.

    A checkpoint is only resumed by the run that wrote it: a changed configuration or data set
    starts under a fresh prefix instead of loading weights of another run.
    """
    described = {
        "model": dataclasses.asdict(settings.model),
        "train": dataclasses.asdict(train),
        "augment": [settings.train.augment_strength, settings.train.augment_blur],
        "world_size": world_size,
        "hard_negatives": num_hard_negatives,
        "records": records_digest(records),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:12]


def make_spec(
    settings: Settings,
    ds: str,
    records: Sequence[PairRecord],
    *,
    store: ObjectStore,
    train: TrainConfig | None = None,
    inline_max: int | None = None,
) -> TrainSpec:
    """The spec of a training run of ``records`` for ``ds``; writes the Parquet file when needed.

    Args:
        settings: pipeline settings (model, train, storage roots).
        ds: the day.
        records: the pairs (from :func:`assemble_records`).
        store: the artifacts store (checkpoints and, for big sets, the pairs file).
        train: run configuration; default :meth:`TrainConfig.from_settings` of ``settings.train``.
        inline_max: ship at most this many records inline (default :data:`INLINE_RECORDS_MAX`).

    Raises:
        ValueError: for no records or ``train.num_processes`` < 1.
    """
    if not records:
        raise ValueError(f"no training pairs for {ds}")
    world_size = settings.train.num_processes
    if world_size < 1:
        raise ValueError(f"train.num_processes must be >= 1, got {world_size}")
    cfg = train or TrainConfig.from_settings(settings.train)
    longest = max(len(r.hard_negative_uris) for r in records)
    hard = min(settings.train.hard_negatives, longest)
    prefix = f"{checkpoint_root(ds)}run-{run_id(settings, cfg, world_size, records, hard)}"
    limit = INLINE_RECORDS_MAX if inline_max is None else inline_max
    inline = len(records) <= limit
    key = None
    if not inline:
        key = f"{prefix}/{PAIRS_FILE}"
        store.put_bytes(key, records_to_parquet(records))
        log.info("%d pairs (> %d) shipped to the workers as %s", len(records), limit, store.uri(key))
    return TrainSpec(
        settings_json=settings.to_json(),
        ds=ds,
        train=cfg,
        checkpoint_prefix=prefix,
        num_records=len(records),
        records=tuple(records) if inline else (),
        records_key=key,
        num_hard_negatives=hard,
        augment_strength=settings.train.augment_strength,
        augment_blur=settings.train.augment_blur,
        use_gpu=settings.train.use_gpu,
    )


# ----------------------------------------------------------------------------------- worker


@dataclass
class WorkerOutput:
    """What rank 0 hands back to the driver.

    Attributes:
        state_dict: the trained weights, CPU tensors (of the unwrapped model).
        losses: loss of every step, resumed steps included (all ranks' mean).
        result: :meth:`visearch.train.trainer.TrainResult.to_dict`.
        world_size: processes that trained.
        backend: the process-group backend (``gloo``/``nccl``; ``none`` for one process).
        device: rank 0's device.
    """

    state_dict: dict[str, torch.Tensor]
    losses: list[float]
    result: dict[str, Any]
    world_size: int
    backend: str
    device: str


class UriReader:
    """Reads image URIs (``file://``, ``s3://`` or paths), keeping one store per S3 bucket prefix.

    Picklable (the stores are opened lazily per process), so DataLoader workers can use it.
    """

    def __init__(self, s3: S3Settings | None = None) -> None:
        self.s3 = s3
        self._stores: dict[str, ObjectStore] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"s3": self.s3, "_stores": {}}

    def __call__(self, uri: str) -> bytes:
        """The object's bytes.

        Raises:
            FileNotFoundError: when it does not exist.
            ValueError: for an unsupported URI.
        """
        if not uri.startswith("s3://"):
            from visearch.core.storage import read_uri

            return read_uri(uri)
        root, key = split_uri(uri)
        store = self._stores.get(root)
        if store is None:
            store = self._stores[root] = open_store(root, self.s3)
        return store.get_bytes(key)


def _ensure_logging() -> None:
    """A fresh worker process logs to stderr (TorchDistributor streams it to the driver's stdout)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )


def train_worker(spec: TrainSpec) -> WorkerOutput:
    """Train on this process's share; the function each TorchDistributor process runs.

    Called directly (no ``WORLD_SIZE`` in the environment) it trains as a single process.

    Returns:
        Rank 0's :class:`WorkerOutput`; other ranks leave with ``SystemExit(0)`` once all are done.

    Raises:
        ValueError: for an invalid environment or spec, or GPUs asked for but missing.
        visearch.train.trainer.NonFiniteLossError: when the loss stops being finite (on every rank).
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from visearch.train.augment import SimCLRAugment
    from visearch.train.model import build_model, unwrap
    from visearch.train.preprocess import Preprocessing
    from visearch.train.trainer import PairDataset, train

    _ensure_logging()
    world = world_from_env()
    settings = settings_from_json(spec.settings_json)
    device = torch.device(device_for(world, spec.use_gpu, torch.cuda.device_count() if spec.use_gpu else 0))
    backend = backend_for(spec.use_gpu)
    joined = False
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=world.rank, world_size=world.world_size)
        joined = True
    log.info(
        "rank %d/%d on %s (backend %s): %d pairs, %d steps of %d",
        world.rank,
        world.world_size,
        device,
        backend if world.distributed else "none",
        spec.num_records,
        spec.train.steps,
        spec.train.batch_size,
    )
    try:
        torch.manual_seed(spec.train.seed)  # same initial weights everywhere (DDP broadcasts rank 0's anyway)
        model = build_model(settings.model).to(device)
        wrapped: torch.nn.Module = model
        if world.distributed:
            wrapped = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        store = open_store(settings.artifacts, settings.s3)
        prep = Preprocessing.from_settings(settings.model)
        augment = SimCLRAugment(prep.size, strength=spec.augment_strength, prep=prep, blur=spec.augment_blur)
        dataset = PairDataset(
            spec.load_records(store),
            UriReader(settings.s3),
            prep,
            augment,
            num_hard_negatives=spec.num_hard_negatives,
            seed=spec.train.seed,
        )
        cfg = dataclasses.replace(spec.train, device=str(device))
        result = train(
            wrapped,
            dataset,
            cfg,
            checkpoint_store=store,
            checkpoint_prefix=spec.checkpoint_prefix,
            resume=spec.resume,
            rank=world.rank,
            world_size=world.world_size,
            progress=False,
        )
        state = {k: v.detach().cpu().clone() for k, v in unwrap(wrapped).state_dict().items()}
        if world.distributed:
            dist.barrier()  # every rank done before any leaves
    finally:
        if joined:
            dist.destroy_process_group()
    output = WorkerOutput(
        state_dict=state,
        losses=list(result.losses),
        result=result.to_dict(),
        world_size=world.world_size,
        backend=backend if world.distributed else "none",
        device=str(device),
    )
    return leave_worker(world, output)


# ----------------------------------------------------------------------------------- driver


def driver_has_gpus(spark: SparkSession) -> bool:
    """Whether Spark knows GPUs on the driver (what TorchDistributor's local ``use_gpu`` needs)."""
    try:
        return "gpu" in spark.sparkContext.resources
    except Exception:  # Spark Connect has no SparkContext; TorchDistributor then uses the client's GPUs
        return False


def run_distributed(spark: SparkSession, spec: TrainSpec, num_processes: int) -> WorkerOutput:
    """Run :func:`train_worker` in ``num_processes`` local processes through TorchDistributor.

    Raises:
        ValueError: for ``num_processes`` < 1, or GPUs asked for but fewer than ``num_processes``.
        RuntimeError: when training fails in a worker (its last output lines are in the message)
            or rank 0 returned nothing.
    """
    import torch
    from pyspark.ml.torch.distributor import TorchDistributor

    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if spec.use_gpu and torch.cuda.device_count() < num_processes:
        raise ValueError(
            f"train.use_gpu with {num_processes} processes needs {num_processes} GPUs; "
            f"{torch.cuda.device_count()} visible"
        )
    spark_gpus = spec.use_gpu and driver_has_gpus(spark)
    if spec.use_gpu and not spark_gpus:
        log.info("Spark has no driver GPU resources configured; workers pick cuda:<local rank> themselves")
    distributor = TorchDistributor(num_processes=num_processes, local_mode=True, use_gpu=spark_gpus)
    output = distributor.run(train_worker, spec)
    if not isinstance(output, WorkerOutput):
        raise RuntimeError(f"TorchDistributor returned {type(output).__name__}, not rank 0's WorkerOutput")
    return output
