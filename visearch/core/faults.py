"""Fault points: named places where a test can SIGKILL a running job, to prove that it recovers.

The library calls :func:`point` at the moments where a crash hurts most (part of an object in a
temporary file, some index shards uploaded but no manifest, a Delta write with part files but no
commit, a build validated but ``CURRENT`` not yet moved). Normally a point is one environment
lookup and nothing else. With ``VISEARCH_FAULT_AT`` set, the point it names kills the job:

    VISEARCH_FAULT_AT=<point>[:<key prefix>][@<n>]

- ``<point>``: e.g. ``build_index.shard_uploaded`` or ``storage.partial_write`` (see the ``*_POINT``
  constants and the call sites);
- ``:<key prefix>``: only when the point's key (an object key, a table name) starts with it, e.g.
  ``storage.partial_write:checkpoints/`` or ``tables.write:silver.quarantine``;
- ``@<n>``: on the n-th matching visit in a process (default 1), e.g. the second checkpoint write.

The kill is ``SIGKILL`` (no handler, no ``finally``, no flush: what the OOM killer or a lost node
does) sent to the job's whole process group, recorded in ``VISEARCH_FAULT_GROUP`` by the first
armed process that imports this module (the job's driver; Spark's Python workers and torchrun's
workers inherit it), and to the caller's own group (Spark's Python daemon and torchrun's workers
run in groups of their own). Start the job in its own session (``start_new_session=True``), as the
fault tests do, so that nothing else shares its group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row

log = logging.getLogger(__name__)

FAULT_ENV = "VISEARCH_FAULT_AT"
GROUP_ENV = "VISEARCH_FAULT_GROUP"
LOG_ENV = "VISEARCH_FAULT_LOG"
"""Optional: a file the killing process appends one line to first (the point, pid and group),
so that a test can tell its fault from any other death (a worker's stderr dies with the JVM)."""

PARTIAL_WRITE_POINT = "storage.partial_write"
"""Part of an object's bytes are written (local: in the temporary file; S3: being sent), key = object key."""
TABLE_WRITE_POINT = "tables.write"
"""A Delta write has written part files and not committed, key = table name (``silver.quarantine``)."""
SHARD_UPLOADED_POINT = "build_index.shard_uploaded"
"""One index shard is uploaded; other shards, the manifest and ``CURRENT`` are not, key = shard key."""
BEFORE_CURRENT_POINT = "publish.before_current"
"""A build is validated and recorded in HISTORY; ``CURRENT`` still names the old build, key = build id."""

SPARK_WRITE_TASKS = 4
"""Tasks an armed Delta write is spread over; the last one is killed once the others have finished."""
SPARK_WRITE_GRACE_S = 1.0

_hits: Counter[str] = Counter()

if os.environ.get(FAULT_ENV) and not os.environ.get(GROUP_ENV):
    # The first armed process (the job's driver) names the group to kill; its children inherit it.
    os.environ[GROUP_ENV] = str(os.getpgrp())


@dataclass(frozen=True)
class FaultSpec:
    """A parsed ``VISEARCH_FAULT_AT`` value."""

    point: str
    key_prefix: str = ""
    nth: int = 1

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``<point>[:<key prefix>][@<n>]``.

        Raises:
            ValueError: for an empty point name or an ``@n`` that is not a positive integer.
        """
        body, nth = text.strip(), 1
        if "@" in body:
            body, _, count = body.rpartition("@")
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"{FAULT_ENV}={text!r}: @n must be a positive integer")
            nth = int(count)
        point, _, prefix = body.partition(":")
        if not point:
            raise ValueError(f"{FAULT_ENV}={text!r}: no fault point named")
        return cls(point, prefix, nth)

    def matches(self, name: str, key: str = "") -> bool:
        """Whether a visit of point ``name`` with ``key`` counts towards this spec."""
        return name == self.point and key.startswith(self.key_prefix)


def armed(name: str, key: str = "") -> bool:
    """Whether ``VISEARCH_FAULT_AT`` names this point (and key); cheap, counts nothing.

    Raises:
        ValueError: for a malformed ``VISEARCH_FAULT_AT``.
    """
    text = os.environ.get(FAULT_ENV)
    return bool(text) and FaultSpec.parse(text).matches(name, key)  # type: ignore[arg-type]


def point(name: str, key: str = "") -> None:
    """A fault point: returns at once unless ``VISEARCH_FAULT_AT`` names it; then, on the n-th
    matching visit in this process, SIGKILLs the job's process group and this process's own.

    Raises:
        ValueError: for a malformed ``VISEARCH_FAULT_AT``.
    """
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    spec = FaultSpec.parse(text)
    if not spec.matches(name, key):
        return
    _hits[text] += 1
    if _hits[text] == spec.nth:
        kill(f"{name}:{key}" if key else name)


def kill(where: str) -> None:
    """SIGKILL the job's process group (``VISEARCH_FAULT_GROUP``) and the caller's own group."""
    own = os.getpgrp()
    message = f"visearch.core.faults: SIGKILL at fault point {where} (pid {os.getpid()}, group {own})\n"
    os.write(sys.stderr.fileno(), message.encode())
    if os.environ.get(LOG_ENV):
        with open(os.environ[LOG_ENV], "a") as handle:
            handle.write(message)
            handle.flush()
            os.fsync(handle.fileno())
    recorded = os.environ.get(GROUP_ENV, "")
    if recorded.isdigit() and int(recorded) not in (own, 0, 1):
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(int(recorded), signal.SIGKILL)
    os.killpg(own, signal.SIGKILL)
    time.sleep(60)  # not reached: the signal is delivered to this process too


def progress_point(name: str, key: str) -> Callable[[int], None] | None:
    """A boto3 transfer ``Callback`` that visits ``point(name, key)`` once, when the first bytes of
    an upload have been sent; ``None`` (no callback at all) when the point is not armed."""
    if not armed(name, key):
        return None
    visited = False

    def callback(_bytes: int) -> None:
        nonlocal visited
        if not visited:
            visited = True
            point(name, key)

    return callback


def spark_write_point(df: DataFrame, key: str) -> DataFrame:
    """``df`` itself, unless ``tables.write:<key>`` is armed: then ``df`` spread over
    :data:`SPARK_WRITE_TASKS` tasks whose last one, after handing all its rows to the writer and
    waiting for the others to close their part files, reaches the fault point. A Delta write of the
    result is killed with part files on storage and no commit in the log.

    Raises:
        ValueError: for a malformed ``VISEARCH_FAULT_AT``.
    """
    if not armed(TABLE_WRITE_POINT, key):
        return df
    last = SPARK_WRITE_TASKS - 1

    def passthrough(index: int, rows: Iterable[Row]) -> Iterator[Row]:
        yield from rows
        if index == last:
            time.sleep(SPARK_WRITE_GRACE_S)
            point(TABLE_WRITE_POINT, key)

    log.warning("fault point %s:%s armed: the write will be killed", TABLE_WRITE_POINT, key)
    spread = df.repartition(SPARK_WRITE_TASKS).rdd.mapPartitionsWithIndex(passthrough)
    return df.sparkSession.createDataFrame(spread, df.schema)
