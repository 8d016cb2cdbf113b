"""Stage timings: every long step logs how long it took, and callers can collect the figures."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class StageTimer:
    """Collects ``{stage: seconds}`` for one job run; each stage is logged as it ends."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block under ``name`` and log it."""
        start = time.perf_counter()
        log.info("[%s] %s ...", self.job, name)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            log.info("[%s] %s done in %.2fs", self.job, name, elapsed)

    def summary(self) -> str:
        """One line per stage, for the end of a job's log."""
        total = sum(self.seconds.values())
        parts = [f"{k}={v:.2f}s" for k, v in self.seconds.items()]
        return f"[{self.job}] stages: {', '.join(parts)} (total {total:.2f}s)"


class CostMeter:
    """Seconds a process spends on costs that every job pays whatever its data: JVM start,
    Spark session, Delta log reads. One per process (:data:`FIXED_COSTS`).

    Measures of the same name do not nest: a Delta log read inside another (``tables.read``
    calling ``tables.exists``) is counted once, by the outermost (per thread).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._local = threading.local()

    @property
    def _open(self) -> set[str]:
        names: set[str] | None = getattr(self._local, "open", None)
        if names is None:
            names = self._local.open = set()
        return names

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Add the enclosed block's seconds to ``name`` (unless a block of that name is already open)."""
        if name in self._open:
            yield
            return
        self._open.add(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._open.discard(name)
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` under ``name`` (for costs timed elsewhere, e.g. across a process start)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def report(self) -> dict[str, float | int]:
        """``{name: seconds}`` rounded to milliseconds, plus ``<name>_n``: how many times it was paid."""
        out: dict[str, float | int] = {k: round(v, 3) for k, v in self.seconds.items()}
        out.update({f"{k}_n": n for k, n in self.counts.items()})
        return out

    def reset(self) -> None:
        """Forget everything measured so far (tests)."""
        self.seconds.clear()
        self.counts.clear()
        self._open.clear()


FIXED_COSTS = CostMeter()
