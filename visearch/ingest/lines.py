"""Reading a day's landing files: listing them, and their lines with file name and line number.

Both ingest jobs use these (quarantine record ids are ``<file>:<line>``, and "the last line wins"
ordering needs exact line numbers). pyspark is imported inside the functions only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from visearch.core.config import Settings
from visearch.core.spark import to_spark_path
from visearch.core.storage import open_store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

LINES_SCHEMA = "file STRING, line_no INT, line STRING"


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

    Files are read line by line and split like any text file (a large file is read by several
    tasks, and no file is ever one row: a 300 MB click log held whole overflowed a 3 GB driver at
    64k demo images). Line numbers stay exact: each split's rows carry their order within the task
    (``monotonically_increasing_id``: the task in the upper bits, the row in the lower 33) and the
    split's start offset; the rows each split holds are counted (one small aggregation), and a
    line's number is the lines of the file's earlier splits plus its place in its own split.
    Lines end at ``\n``, ``\r\n`` or a lone ``\r`` (Hadoop's line reader). ``file`` is the base name.
    """
    from pyspark.sql import functions as F

    if not uris:
        return spark.createDataFrame([], LINES_SCHEMA)
    raw = spark.read.text([to_spark_path(u) for u in uris]).select(
        F.col("_metadata.file_name").alias("file"), F.col("_metadata.file_block_start").alias("block"),
        F.monotonically_increasing_id().alias("row_id"), F.col("value").alias("line"),
    )
    splits = raw.groupBy("file", "block").agg(F.count("*").alias("rows"), F.min("row_id").alias("first"))
    offsets: list[tuple[str, int, int, int]] = []
    before: dict[str, int] = {}
    for split in sorted(splits.collect(), key=lambda r: (r["file"], r["block"])):
        offsets.append((split["file"], split["block"], split["first"], before.get(split["file"], 0)))
        before[split["file"]] = before.get(split["file"], 0) + split["rows"]
    starts = spark.createDataFrame(offsets, "file STRING, block BIGINT, first BIGINT, before BIGINT")
    numbered = raw.join(F.broadcast(starts), ["file", "block"]).select(
        "file", (F.col("before") + F.col("row_id") - F.col("first") + 1).cast("int").alias("line_no"), "line"
    )
    return numbered.where(F.trim(F.col("line")) != "")
