"""The Spark jobs of the pipeline, one file per job, each runnable two ways::

    python -m jobs.<name> --ds 2026-01-01
    spark-submit jobs/<name>.py --ds 2026-01-01

This package module also holds the two things the ingest jobs share: listing a day's landing
files and reading JSON-lines files with their file name and line number (for quarantine record
ids and "the last line wins" ordering). pyspark is imported inside the functions only.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from visearch.config import Settings
from visearch.spark import to_spark_path
from visearch.storage import open_store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

LINES_SCHEMA = "file STRING, line_no INT, line STRING"


def check_ds(ds: str) -> str:
    """Validate a ``YYYY-MM-DD`` logical date.

    Raises:
        ValueError: for anything else.
    """
    try:
        dt.date.fromisoformat(ds)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}") from exc
    if len(ds) != 10:
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}")
    return ds


def landing_files(settings: Settings, folder: str, suffix: str = ".jsonl") -> list[str]:
    """URIs of the files directly under ``<landing>/<folder>/`` ending in ``suffix``, sorted.

    An absent folder gives an empty list (a day without data is legal; callers log it).
    """
    store = open_store(settings.landing, settings.s3)
    prefix = folder.strip("/") + "/"
    keys = [k for k in store.list(prefix) if k.endswith(suffix) and "/" not in k[len(prefix):]]
    return [store.uri(k) for k in sorted(keys)]


def read_lines(spark: SparkSession, uris: list[str]) -> DataFrame:
    """The non-blank lines of text files as ``(file, line_no, line)``; ``line_no`` counts from 1.

    Each file is read whole (``wholetext``) and split on the JVM side so that line numbers are
    exact; a single file must therefore stay well under Spark's 2 GiB row limit (landing writers
    shard a day's manifests and click logs into many files). ``file`` is the base name.
    """
    from pyspark.sql import functions as F

    if not uris:
        return spark.createDataFrame([], LINES_SCHEMA)
    whole = spark.read.text([to_spark_path(u) for u in uris], wholetext=True)
    exploded = whole.select(
        F.col("_metadata.file_name").alias("file"),
        F.posexplode(F.split(F.col("value"), "\r?\n")).alias("pos", "line"),
    )
    return exploded.where(F.trim(F.col("line")) != "").select(
        "file", (F.col("pos") + 1).cast("int").alias("line_no"), "line"
    )
