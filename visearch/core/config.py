"""One typed settings object for every job, command and test.

Values come, lowest precedence first, from the dataclass defaults, an optional YAML file
(``VISEARCH_CONFIG`` or an explicit path) and environment variables:

- ``VISEARCH_LANDING``, ``VISEARCH_LAKE``, ``VISEARCH_ARTIFACTS``: the three storage roots as URIs
  (``file:///abs/path`` or ``s3://bucket/prefix``); a bare path is made absolute as ``file://``.
- ``VISEARCH_SPARK_MASTER`` and ``VISEARCH_SPARK_CONF`` (``key=value,key=value``).
- ``VISEARCH_S3_ENDPOINT``, ``VISEARCH_S3_REGION``; credentials from ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` or the AWS default chain.
- any nested knob as ``VISEARCH_<SECTION>__<FIELD>``, e.g. ``VISEARCH_TRAIN__STEPS=200``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

DEFAULT_ROOT = Path(".visearch")


def to_uri(value: str) -> str:
    """Normalise a storage root: ``s3://`` and ``file://`` pass through, a path becomes ``file://``.

    Raises:
        ValueError: for an unsupported scheme.
    """
    value = value.strip()
    if value.startswith("s3a://"):
        value = "s3://" + value[len("s3a://") :]
    if value.startswith(("s3://", "file://")):
        return value.rstrip("/")
    if "://" in value:
        raise ValueError(f"unsupported storage URI {value!r}: use file:// or s3://")
    return "file://" + str(Path(value).expanduser().resolve())


# What ``spark.fast_start`` can switch on for local masters (visearch.core.spark / visearch.core.jvm):
# cds: the driver JVM maps the AppCDS archive of `make setup`; jit: C1 only, serial GC;
# tiny_sql: Spark SQL settings for small inputs (no generated code, one shuffle partition per core).
FAST_START_PARTS: tuple[str, ...] = ("cds", "jit", "tiny_sql")


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark runs and with which extra configuration.

    ``fast_start``: the start-up and small-data measures for local masters (a subset of
    :data:`FAST_START_PARTS`; ``on``/``all`` is all of them, ``off``/``none`` none). A cluster
    master never gets them. ``VISEARCH_SPARK__FAST_START=off`` turns them off.
    """

    master: str = "local[2]"
    driver_memory: str = "3g"
    shuffle_partitions: int = 4
    conf: dict[str, str] = field(default_factory=dict)
    fast_start: tuple[str, ...] = FAST_START_PARTS
    tiny_input_mb: int = 64  # tiny_sql: a table read larger than this turns code generation back on

    def __post_init__(self) -> None:
        parts = tuple(p.strip().lower() for p in self.fast_start if p.strip())
        if parts in (("on",), ("all",), ("true",), ("1",)):
            parts = FAST_START_PARTS
        elif parts in (("off",), ("none",), ("false",), ("0",)):
            parts = ()
        unknown = sorted(set(parts) - set(FAST_START_PARTS))
        if unknown:
            raise ValueError(f"spark.fast_start: unknown parts {unknown}; choose from {FAST_START_PARTS}, on or off")
        object.__setattr__(self, "fast_start", tuple(p for p in FAST_START_PARTS if p in parts))

    @property
    def is_local(self) -> bool:
        """Whether the driver and executors run in one local JVM (``local``, ``local[N]``, ``local[*]``)."""
        return self.master == "local" or self.master.startswith("local[")


@dataclass(frozen=True)
class S3Settings:
    """Object-storage endpoint; ``endpoint`` empty means AWS itself."""

    endpoint: str = ""
    region: str = "us-east-1"
    path_style: bool = True
    multipart_threshold_mb: int = 64
    # Transient failures (5xx, throttling, dropped connections) are retried with backoff: by boto3
    # (retry_mode, max_attempts in all) and by Spark's S3A (fs.s3a.attempts.maximum / retry.limit).
    max_attempts: int = 10
    retry_mode: str = "standard"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"s3.max_attempts must be >= 1, got {self.max_attempts}")
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise ValueError(f"s3.retry_mode must be standard, adaptive or legacy, got {self.retry_mode!r}")


@dataclass(frozen=True)
class IngestSettings:
    """Image validation limits, and where manifest URIs may point.

    ``allowed_uri_prefixes``: ``file://`` / ``s3://`` URIs (or absolute paths) under which a
    manifest ``uri`` must lie, e.g. ``VISEARCH_INGEST__ALLOWED_URI_PREFIXES=s3://photos/,/data/pics``.
    Empty (the default) means the landing root and the folders ``visearch land`` landed in place.
    A URI anywhere else is quarantined as ``bad_value:uri`` without being read.
    """

    max_pixels: int = 50_000_000
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF")
    max_bytes: int = 64 * 1024 * 1024
    quarantine_share_max: float = 0.2
    allowed_uri_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSettings:
    """Backbone, embedding and preprocessing constants; they travel with every model version."""

    backbone: str = "resnet18"
    embed_dim: int = 128
    image_size: int = 64
    small_stem: bool = False
    init_weights: str = ""
    width: int = 64  # ResNet channels of the stem (stages w, 2w, 4w, 8w); 64 is torchvision's
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TrainSettings:
    """Contrastive training knobs (sized for 2 CPU cores by default)."""

    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    checkpoint_every: int = 50
    seed: int = 0
    num_processes: int = 1
    use_gpu: bool = False
    click_window_days: int = 7
    min_impressions: int = 2
    min_clicks: int = 1
    min_dwell_ms: int = 1000
    self_pairs_per_day: int = 2000
    hard_negatives: int = 2
    augment_strength: float = 0.5
    augment_blur: float = 0.0


@dataclass(frozen=True)
class EmbedSettings:
    """Batch-embedding knobs."""

    batch_size: int = 64
    decode_workers: int = 2
    use_gpu: bool = True
    amp: bool = True
    cpu_optimize: bool = True  # freeze + fold batch norms for CPU inference (fp32, same embeddings)


@dataclass(frozen=True)
class IndexSettings:
    """Index build and publishing knobs."""

    name: str = "main"
    memory_budget_mb: float = 2048.0
    target_recall: float = 0.95
    latency_budget_ms: float = 5.0
    shards: int = 2
    min_publish_recall: float = 0.8
    keep_builds: int = 5
    compact_tombstone_share: float = 0.1
    compact_delta_shards: int = 8
    rotation: str = "auto"  # OPQ for PQ codes below 1M vectors: auto (anisotropic data), always, never

    def __post_init__(self) -> None:
        if self.rotation not in ("auto", "always", "never"):
            raise ValueError(f"index.rotation must be auto, always or never, got {self.rotation!r}")


@dataclass(frozen=True)
class EvalSettings:
    """Offline evaluation and promotion."""

    ks: tuple[int, ...] = (1, 5, 10, 20)
    promote_tolerance: float = 0.01
    eval_set: str = "demo"
    promote_protocol: str = "corpus"


@dataclass(frozen=True)
class SearchSettings:
    """Serving knobs (visearch.serve.search): over-fetch, near-duplicate thresholds, limits, hot reload."""

    default_k: int = 20
    max_k: int = 200
    overfetch: int = 3
    max_fetch: int = 2000
    phash_max_distance: int = 4
    dup_cosine: float = 0.99995
    nprobe: int = 0
    reload_interval_s: float = 5.0
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class Settings:
    """Everything a visearch job needs to know about where data lives and how to process it."""

    landing: str = ""
    lake: str = ""
    artifacts: str = ""
    spark: SparkSettings = field(default_factory=SparkSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    search: SearchSettings = field(default_factory=SearchSettings)

    def __post_init__(self) -> None:
        root = DEFAULT_ROOT.resolve()
        for name, default in (("landing", "landing"), ("lake", "lake"), ("artifacts", "artifacts")):
            value = getattr(self, name) or str(root / default)
            object.__setattr__(self, name, to_uri(value))

    @property
    def uses_s3(self) -> bool:
        """Whether any root lives in S3 (and Spark therefore needs S3A)."""
        return any(u.startswith("s3://") for u in (self.landing, self.lake, self.artifacts))

    def replace(self, **changes: Any) -> Settings:
        """A copy with top-level fields replaced (sections are replaced whole)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for logs, manifests and passing to worker processes."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON form, inverse of :func:`settings_from_json`."""
        return json.dumps(self.to_dict(), sort_keys=True)


T = TypeVar("T")


def _coerce(tp: Any, value: Any) -> Any:
    """Convert a YAML or environment value to the annotated field type."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, bool):  # YAML reads `off`/`on` as booleans (spark.fast_start: off)
            value = "on" if value else "off"
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        return tuple(_coerce(inner, v) for v in items)
    if origin is dict:
        if isinstance(value, str):
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            bad = [p for p in pairs if len(p) != 2]
            if bad:
                raise ValueError(f"expected key=value pairs, got {value!r}")
            return {k.strip(): v.strip() for k, v in pairs}
        return {str(k): str(v) for k, v in dict(value).items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"expected {tp.__name__}, got {value!r}") from exc
    return value


def _build(cls: type[T], data: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown settings for {cls.__name__}: {sorted(unknown)}")
    kwargs = {k: _coerce(hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def _deep_set(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _env_overrides(env: typing.Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    direct = {
        "VISEARCH_LANDING": ["landing"],
        "VISEARCH_LAKE": ["lake"],
        "VISEARCH_ARTIFACTS": ["artifacts"],
        "VISEARCH_SPARK_MASTER": ["spark", "master"],
        "VISEARCH_SPARK_CONF": ["spark", "conf"],
        "VISEARCH_S3_ENDPOINT": ["s3", "endpoint"],
        "VISEARCH_S3_REGION": ["s3", "region"],
    }
    for var, path in direct.items():
        if env.get(var):
            _deep_set(out, path, env[var])
    for var, value in env.items():
        if var.startswith("VISEARCH_") and "__" in var:
            section, _, name = var[len("VISEARCH_") :].lower().partition("__")
            _deep_set(out, [section, name], value)
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: str | Path | None = None, env: typing.Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults, a YAML file (``path`` or ``$VISEARCH_CONFIG``) and the environment.

    Raises:
        ValueError: for an unknown key or a value of the wrong type.
        FileNotFoundError: when the named YAML file does not exist.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    cfg = path or env.get("VISEARCH_CONFIG")
    if cfg:
        loaded = yaml.safe_load(Path(cfg).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{cfg}: expected a mapping at top level")
        data = loaded
    data = _merge(data, _env_overrides(env))
    return _build(Settings, data)


def settings_from_json(text: str) -> Settings:
    """Rebuild settings from :meth:`Settings.to_json` (used by worker processes)."""
    return _build(Settings, json.loads(text))
