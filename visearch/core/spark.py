"""The Spark session factory: Delta Lake enabled, S3A configured for ``s3://`` roots.

Spark's extra jars (Delta, and hadoop-aws with the AWS SDK for S3A) are resolved from Maven
Central by ``make setup`` into the local Maven cache; ``make setup`` writes their paths to
``.jars.classpath`` (or ``$VISEARCH_JARS_CLASSPATH``), which this module reads. No download happens
when a session starts.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from visearch.core.config import Settings
from visearch.core.timing import FIXED_COSTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_S3A_JARS = ("hadoop-aws", "bundle-", "analyticsaccelerator", "wildfly-openssl")
REPO_ROOT = Path(__file__).resolve().parents[2]


def classpath_file() -> Path:
    """Where ``make setup`` recorded the jar paths."""
    return Path(os.environ.get("VISEARCH_JARS_CLASSPATH", REPO_ROOT / ".jars.classpath"))


def extra_jars(with_s3a: bool) -> list[str]:
    """Local paths of the Delta (and optionally S3A) jars.

    Raises:
        FileNotFoundError: when ``make setup`` has not resolved the jars yet.
    """
    path = classpath_file()
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make setup` to resolve Spark's Delta and S3A jars")
    jars = [j for j in path.read_text().strip().split(os.pathsep) if j]
    missing = [j for j in jars if not Path(j).is_file()]
    if missing:
        raise FileNotFoundError(f"jars listed in {path} are missing (rerun `make setup`): {missing[:3]}")
    if not with_s3a:
        jars = [j for j in jars if not Path(j).name.startswith(_S3A_JARS)]
    return jars


def spark_conf(settings: Settings, app_name: str) -> dict[str, str]:
    """The full Spark configuration for a visearch job (pure; used by the DAG and tests too)."""
    conf: dict[str, str] = {
        "spark.app.name": app_name,
        "spark.master": settings.spark.master,
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.default.parallelism": str(settings.spark.shuffle_partitions),
        # Delta rebuilds table state with 50 tasks by default: ~3x slower small commits locally.
        "spark.databricks.delta.snapshotPartitions": str(settings.spark.shuffle_partitions),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.python.worker.reuse": "true",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.executorEnv.PYTHONPATH": str(REPO_ROOT),
    }
    if settings.uses_s3:
        conf.update(s3a_conf(settings))
    for key in ("VISEARCH_S3_ENDPOINT", "VISEARCH_S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if os.environ.get(key):
            conf[f"spark.executorEnv.{key}"] = os.environ[key]
    conf.update(fast_start_conf(settings))
    conf.update(settings.spark.conf)
    return conf


def local_cores(master: str) -> int:
    """The cores of a local master: ``local`` 1, ``local[N]`` N, ``local[*]`` all of this machine's.

    Raises:
        ValueError: for a master that is not local.
    """
    if master == "local":
        return 1
    match = re.fullmatch(r"local\[(\*|\d+)(?:,\s*\d+)?\]", master)
    if match is None:
        raise ValueError(f"not a local master: {master!r}")
    if match.group(1) == "*":
        return os.cpu_count() or 1
    return max(1, int(match.group(1)))


# Spark SQL for the small inputs of a local master (``tiny_sql``): expressions are interpreted
# instead of compiled by Janino for every query and stage (most of a first query's seconds on tiny
# data), and shuffles have one partition per core (adaptive execution coalesces the rest anyway).
# A larger input turns code generation back on (fit_to_input, called by tables.read).
TINY_SQL_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


def tiny_sql_active(spark: SparkSession) -> bool:
    """Whether the session runs with :data:`TINY_SQL_CONF` (no whole-stage code generation)."""
    return spark.conf.get("spark.sql.codegen.wholeStage", "true") == "false" and \
        spark.conf.get("spark.sql.codegen.factoryMode", "FALLBACK") == "NO_CODEGEN"


def fit_to_input(spark: SparkSession, settings: Settings, name: str, size_bytes: int | None) -> bool:
    """Turn generated code back on for the rest of the session when an input is not tiny.

    ``tiny_sql`` starts every local session interpreting expressions, which beats compiling code
    for each query on the small tables of a demo or a test, not on large ones: the first input
    (``name``, ``size_bytes`` on storage) over ``settings.spark.tiny_input_mb`` switches the session
    to Spark's defaults (or what ``settings.spark.conf`` says). Returns whether it switched.
    """
    if size_bytes is None or size_bytes <= settings.spark.tiny_input_mb * 2**20 or not tiny_sql_active(spark):
        return False
    defaults = {"spark.sql.codegen.wholeStage": "true", "spark.sql.codegen.factoryMode": "FALLBACK"}
    for key in TINY_SQL_CONF:
        spark.conf.set(key, settings.spark.conf.get(key, defaults[key]))
    log.info("%s is %.0f MB (over spark.tiny_input_mb=%d): generated code back on for this job",
             name, size_bytes / 2**20, settings.spark.tiny_input_mb)
    return True


def fast_start_conf(settings: Settings) -> dict[str, str]:
    """The ``settings.spark.fast_start`` configuration: local masters only, empty for a cluster.

    ``cds``/``jit`` become the driver's JVM options (:func:`visearch.core.jvm.driver_java_options`;
    they take effect when this process launches the driver JVM, i.e. outside spark-submit, whose
    JVM gets them from ``SPARK_SUBMIT_OPTS``); ``tiny_sql`` the :data:`TINY_SQL_CONF` settings.
    """
    parts = settings.spark.fast_start
    if not settings.spark.is_local or not parts:
        return {}
    from visearch.core.jvm import driver_java_options

    conf: dict[str, str] = {}
    options = driver_java_options(parts)
    if options:
        conf["spark.driver.extraJavaOptions"] = options
    if "tiny_sql" in parts:
        conf.update(TINY_SQL_CONF)
        cores = str(min(settings.spark.shuffle_partitions, local_cores(settings.spark.master)))
        conf["spark.sql.shuffle.partitions"] = cores
        conf["spark.default.parallelism"] = cores
        conf["spark.databricks.delta.snapshotPartitions"] = cores
    return conf


def s3a_conf(settings: Settings) -> dict[str, str]:
    """S3A settings so that ``s3://`` and ``s3a://`` paths reach the configured endpoint."""
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.path.style.access": str(settings.s3.path_style).lower(),
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3.region,
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider,"
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
        # Transient failures are retried twice over: by the AWS SDK inside each S3A call
        # (attempts.maximum) and by S3A around it (retry.limit, with retry.interval backoff;
        # throttling has its own limit). 5xx answers count as transient.
        "spark.hadoop.fs.s3a.attempts.maximum": str(settings.s3.max_attempts),
        "spark.hadoop.fs.s3a.retry.limit": str(settings.s3.max_attempts),
        "spark.hadoop.fs.s3a.retry.throttle.limit": str(2 * settings.s3.max_attempts),
        "spark.hadoop.fs.s3a.retry.http.5xx.errors": "true",
        "spark.hadoop.fs.s3a.change.detection.mode": "none",
        "spark.hadoop.fs.s3a.bucket.probe": "0",
        "spark.delta.logStore.s3.impl": "io.delta.storage.S3SingleDriverLogStore",
        "spark.delta.logStore.s3a.impl": "io.delta.storage.S3SingleDriverLogStore",
    }
    if settings.s3.endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3.endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            settings.s3.endpoint.startswith("https")
        ).lower()
    for env_key, conf_key in (("AWS_ACCESS_KEY_ID", "access.key"), ("AWS_SECRET_ACCESS_KEY", "secret.key")):
        if os.environ.get(env_key):
            conf[f"spark.hadoop.fs.s3a.{conf_key}"] = os.environ[env_key]
    return conf


def get_spark(settings: Settings, app_name: str = "visearch") -> SparkSession:
    """Build (or reuse) a SparkSession with Delta and, for ``s3://`` roots, S3A.

    Raises:
        FileNotFoundError: when the Spark jars have not been resolved by ``make setup``.
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    conf = spark_conf(settings, app_name)
    under_submit = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    if under_submit:
        # Under spark-submit: master, driver memory, JVM options and jars were given on its command
        # line (the DAG's connection and --jars); don't override them from settings.
        for key in ("spark.master", "spark.driver.memory", "spark.driver.extraJavaOptions"):
            conf.pop(key, None)
    else:
        conf["spark.jars"] = ",".join(extra_jars(with_s3a=settings.uses_s3))
    for key, value in conf.items():
        builder = builder.config(key, value)
    started = time.perf_counter()
    if not under_submit and SparkContext._gateway is None:
        # Launch the driver JVM first (what getOrCreate would do), to time it apart from the session.
        with FIXED_COSTS.measure("jvm_launch"):
            SparkContext._ensure_initialized(conf=SparkConf().setAll(list(conf.items())))
    with FIXED_COSTS.measure("spark_session"):
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("WARN")
    fast = settings.spark.fast_start if settings.spark.is_local else ()
    log.info("spark session %s on %s (delta%s, fast start: %s) in %.1fs", app_name, settings.spark.master,
             ", s3a" if settings.uses_s3 else "", "+".join(fast) or "off", time.perf_counter() - started)
    return session


def to_spark_path(uri: str) -> str:
    """A Delta/Spark path for a storage URI (``s3://`` becomes ``s3a://``)."""
    if uri.startswith("s3://"):
        return "s3a://" + uri[len("s3://") :]
    if uri.startswith("file://"):
        return "file:" + uri[len("file://") :]
    return uri
