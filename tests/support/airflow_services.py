"""Airflow 3 as separate long-running services for tests: api-server, dag-processor, scheduler.

Each service is one ``airflow <component>`` process in its own process group (so stopping it
also stops what it started: the LocalExecutor's workers, task supervisors, spark-submit and
its JVM). The metadata database is read directly (psycopg2) to follow runs: cheaper than an
``airflow`` CLI process per poll, and it is the state the scheduler itself acts on.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support.spark_cluster import stop_group

log = logging.getLogger(__name__)

T = TypeVar("T")
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass(frozen=True)
class DagRunRow:
    """One row of Airflow's ``dag_run`` table."""

    run_id: str
    run_type: str
    state: str
    logical_date: dt.datetime | None
    backfill_id: int | None

    @property
    def ds(self) -> str:
        """The run's ``{{ ds }}`` (its logical date's day)."""
        if self.logical_date is None:
            raise ValueError(f"run {self.run_id} has no logical date")
        return self.logical_date.astimezone(dt.UTC).date().isoformat()


@dataclass
class AirflowServices:
    """Running Airflow components sharing one metadata database (a libpq ``dsn``)."""

    dsn: str
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, component: str, args: list[str], env: Mapping[str, str]) -> None:
        """Start ``airflow <component> <args>`` in its own process group, output in ``logs/<component>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        handle = open(self.logs / f"{component}.log", "ab")  # noqa: SIM115 - the process owns it
        log.info("starting airflow %s", component)
        self.processes[component] = subprocess.Popen([AIRFLOW, component, *args], env=dict(env), stdout=handle,
                                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, component: str) -> None:
        """Stop one component and everything it started (SIGTERM, then SIGKILL)."""
        process = self.processes.pop(component, None)
        if process is not None:
            stop_group(process, timeout=30.0)

    def stop_all(self) -> None:
        """Stop every component, the scheduler first (it owns the running tasks)."""
        for component in sorted(self.processes, key=lambda c: c != "scheduler"):
            self.stop(component)

    def check_alive(self) -> None:
        """Raise if a component exited.

        Raises:
            RuntimeError: with the tail of the dead component's log.
        """
        for component, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{component}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"airflow {component} exited with {process.returncode}:\n{tail}")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only query on the metadata database."""
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def dag_runs(self, dag_id: str) -> list[DagRunRow]:
        """Every run of ``dag_id``, oldest logical date first."""
        rows = self.query("SELECT run_id, run_type, state, logical_date, backfill_id FROM dag_run "
                          "WHERE dag_id = %s ORDER BY logical_date", (dag_id,))
        return [DagRunRow(r[0], str(r[1]).lower(), str(r[2]).lower(), r[3], r[4]) for r in rows]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{task_id: state}`` of one run."""
        rows = self.query("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                          (dag_id, run_id))
        return {r[0]: str(r[1]).lower() if r[1] else "none" for r in rows}

    def failure_report(self, dag_id: str, run_id: str, home: Path) -> str:
        """Task states of a run and the log tail of each failed task."""
        states = self.task_states(dag_id, run_id)
        parts = [f"run {run_id}: {states}"]
        for task_id, state in states.items():
            if state == "failed":
                for path in sorted((home / "logs").glob(f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/*.log")):
                    parts.append(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, *, interval: float = 2.0,
              alive: Callable[[], None] | None = None) -> T:
    """Poll ``probe`` until it returns something other than None.

    Raises:
        TimeoutError: when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool | None:
    """True when ``url`` answers 2xx (None otherwise, for :func:`wait_for`)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return True if 200 <= resp.status < 300 else None
    except (urllib.error.URLError, OSError):
        return None
