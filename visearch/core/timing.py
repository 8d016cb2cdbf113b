"""Stage timings: every long step logs how long it took, and callers can collect the figures."""

from __future__ import annotations

import logging
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
