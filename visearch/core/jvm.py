"""Start-up options for local Spark driver JVMs: an AppCDS archive and a JIT for short runs.

A visearch job on a laptop or a CI runner is a short-lived JVM on tiny data: most of its seconds
go to loading, verifying and JIT-compiling ~25,000 classes of Spark and Delta that run a few
times. Two sets of JVM options cut that (``settings.spark.fast_start``, local masters only):

- ``cds``: application class data sharing (JDK 13+). ``make setup`` runs a small Spark + Delta
  workload once with ``-XX:ArchiveClassesAtExit`` (:func:`build_archive`); later drivers map the
  parsed, verified classes from that archive with ``-XX:SharedArchiveFile``.
- ``jit``: ``-XX:TieredStopAtLevel=1`` (the C1 compiler only: compiled sooner and cheaper, less
  peak speed, which a minute-long driver never reaches), the serial collector (no GC threads to
  start on a 2-core machine) and no perf-data file.

A cluster master gets none of them: its drivers run long on big data and elsewhere.

The archive is only valid for the JDK and the class path it was dumped with: its file name carries
a hash of the JDK's files and of the Spark and Delta jars (path, size, mtime), so a new venv or
jar version makes a new name, and :func:`driver_java_options` leaves ``cds`` out while the
archive for the current jars is missing (the JVM would print a warning and share nothing).
Archives live outside git, in ``$VISEARCH_CDS_DIR`` (default ``~/.cache/visearch/cds``).

Try: python -m visearch.core.jvm   (what ``make setup`` runs; instant when the archive exists)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Row

log = logging.getLogger(__name__)

# C1 only, serial GC, no hsperfdata file: a short driver's JVM does less work starting and running.
JIT_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:-UsePerfData")
MIN_CDS_JAVA = 13  # -XX:ArchiveClassesAtExit (dynamic AppCDS archives) arrived in JDK 13


def java_binary() -> str | None:
    """The ``java`` that Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


def java_major_version(java: str) -> int | None:
    """The feature version of ``java`` (8, 11, 17, 21...), or None when it cannot be run or parsed."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0_392" is Java 8


def spark_jars_dir() -> Path:
    """The jars folder of the installed pyspark (its driver JVM's class path)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("pyspark is not installed")
    return Path(spec.origin).parent / "jars"


def archive_key(java: str, jars: Sequence[str]) -> str:
    """A hash of what an archive is valid for: the JDK's files and each jar's path, size and mtime.

    Raises:
        FileNotFoundError: when pyspark is not installed.
    """
    digest = hashlib.sha256()
    real = Path(java).resolve()
    jdk_files = [real, *real.parent.parent.glob("lib/server/*")]
    paths = [*jdk_files, *sorted(spark_jars_dir().glob("*.jar")), *(Path(j) for j in jars)]
    for path in paths:
        with contextlib.suppress(OSError):
            st = path.stat()
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def archive_dir() -> Path:
    """Where archives are kept: ``$VISEARCH_CDS_DIR``, else ``$XDG_CACHE_HOME/visearch/cds``."""
    if os.environ.get("VISEARCH_CDS_DIR"):
        return Path(os.environ["VISEARCH_CDS_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "visearch" / "cds"


def _extra_jars() -> list[str]:
    from visearch.core.spark import extra_jars

    try:
        return extra_jars(with_s3a=True)
    except FileNotFoundError:
        return []


def archive_path() -> Path | None:
    """The archive for the current JDK and jars (it may not exist yet); None without a ``java``."""
    java = java_binary()
    if java is None:
        return None
    return archive_dir() / f"spark-{archive_key(java, _extra_jars())}.jsa"


def driver_java_options(parts: Collection[str]) -> str:
    """The JVM options of a local driver for the ``fast_start`` ``parts`` (``cds``, ``jit``).

    ``cds`` adds ``-XX:SharedArchiveFile`` only when the archive for the current jars exists.
    """
    options: list[str] = []
    if "cds" in parts:
        path = archive_path()
        if path is not None and path.is_file():
            options.append(f"-XX:SharedArchiveFile={path}")
        else:
            log.debug("no class-data archive at %s: run `make setup` (python -m visearch.core.jvm)", path)
    if "jit" in parts:
        options += JIT_OPTIONS
    return " ".join(options)


def build_archive(*, force: bool = False, timeout: float = 1800) -> Path | None:
    """Make the class-data archive for the current JDK and jars unless it exists; return its path.

    Runs :func:`archive_workload` in a child process whose driver JVM dumps the classes it loaded
    at exit. Returns None (after logging why) when the JDK cannot dump archives or the dump
    fails: the jobs then start without one. Archives of other JDKs or jar sets are removed.
    """
    java = java_binary()
    path = archive_path()
    if java is None or path is None:
        log.warning("no java found: no class-data archive")
        return None
    if path.is_file() and not force:
        log.info("class-data archive %s is up to date", path)
        return path
    major = java_major_version(java)
    if major is None or major < MIN_CDS_JAVA:
        log.warning("java %s cannot dump class-data archives (needs %d+): Spark starts without one",
                    major, MIN_CDS_JAVA)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    start = time.perf_counter()
    log.info("building the class-data archive %s (a Spark + Delta workload; a few minutes, once)", path)
    with tempfile.TemporaryDirectory(prefix="visearch-cds-") as work:
        env = {**os.environ, "VISEARCH_CDS_DUMP": str(partial)}
        try:
            proc = subprocess.run([sys.executable, "-m", "visearch.core.jvm", "--workload", work],
                                  env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            log.warning("the archive workload ran past %.0fs: Spark starts without an archive", timeout)
            partial.unlink(missing_ok=True)
            return None
    if proc.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        log.warning("no class-data archive (workload exit %d): %s", proc.returncode, proc.stderr[-2000:])
        partial.unlink(missing_ok=True)
        return None
    os.replace(partial, path)
    for old in path.parent.glob("spark-*.jsa"):
        if old != path:
            old.unlink(missing_ok=True)
    log.info("class-data archive %s (%.0f MB) built in %.0fs", path, path.stat().st_size / 1e6,
             time.perf_counter() - start)
    return path


def archive_workload(root: Path, dump_to: str) -> None:
    """What the archive is dumped from: the kinds of work the nightly jobs do, on a few rows.

    A Spark session with Delta (from :func:`visearch.core.spark.get_spark`), text lines parsed
    in Python workers, a window, a broadcast join, grouped pandas, Delta create, partition
    replace, MERGE, read and history. Classes this misses are simply loaded as usual.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from visearch.core import tables as T
    from visearch.core.config import SparkSettings, load_settings
    from visearch.core.spark import get_spark

    base = load_settings(env={"VISEARCH_LAKE": str(root / "lake"), "VISEARCH_LANDING": str(root / "landing"),
                              "VISEARCH_ARTIFACTS": str(root / "artifacts")})
    conf = {"spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={dump_to}"}
    settings = base.replace(spark=SparkSettings(fast_start=("tiny_sql",), conf=conf))
    spark = get_spark(settings, "visearch-cds-archive")
    lines = root / "lines.jsonl"
    lines.write_text("".join(f'{{"event_id": "e{i}", "position": {i % 5}}}\n' for i in range(50)))

    def parse(rows: Iterable[Row]) -> Iterator[list[Any]]:
        import json

        for row in rows:
            record = json.loads(row.value)
            yield [record["event_id"], int(record["position"])]

    parsed = spark.createDataFrame(spark.read.text(str(lines)).rdd.mapPartitions(parse), "event_id STRING, pos INT")
    ranked = parsed.withColumn("rank", F.row_number().over(Window.partitionBy("pos").orderBy("event_id")))
    positions = spark.createDataFrame([(p, f"p{p}") for p in range(5)], "pos INT, label STRING")
    joined = ranked.join(F.broadcast(positions), "pos", "left").cache()

    def per_group(frame: pd.DataFrame) -> pd.DataFrame:
        return frame

    joined.groupBy("pos").applyInPandas(per_group, joined.schema).collect()
    events = joined.select(
        "event_id", F.lit("u").alias("user_id"), F.lit("s").alias("session_id"), F.lit("q").alias("query_image_id"),
        F.col("label").alias("image_id"), F.col("pos").alias("position"), F.lit("click").alias("event_type"),
        F.current_timestamp().alias("ts"), F.lit(1500).cast("long").alias("dwell_ms"),
        F.lit(True).alias("known_images"), F.lit("2026-01-01").alias("ds"))
    T.replace_partition(spark, settings, T.SILVER_INTERACTIONS, events, "ds = '2026-01-01'")
    T.merge(spark, settings, T.SILVER_INTERACTIONS, events.withColumn("dwell_ms", F.lit(2000).cast("long")),
            update_condition="t.dwell_ms <> s.dwell_ms")
    table = T.read(spark, settings, T.SILVER_INTERACTIONS)
    table.groupBy("position").agg(F.count("*"), F.sum("dwell_ms")).orderBy("position").collect()
    T.version(spark, settings, T.SILVER_INTERACTIONS)
    joined.unpersist()
    spark.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m visearch.core.jvm``: build the archive unless it exists (``make setup``)."""
    parser = argparse.ArgumentParser(description="Build the AppCDS archive of Spark and Delta classes.")
    parser.add_argument("--force", action="store_true", help="rebuild even when the archive exists")
    parser.add_argument("--workload", default=None, help=argparse.SUPPRESS)  # the child process's part
    args = parser.parse_args(argv)
    from visearch.core.jobrun import setup_logging

    setup_logging()
    if args.workload:
        archive_workload(Path(args.workload), os.environ["VISEARCH_CDS_DUMP"])
        return 0
    path = build_archive(force=args.force)
    print(path if path is not None else "no class-data archive (see the log above); Spark starts without one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
