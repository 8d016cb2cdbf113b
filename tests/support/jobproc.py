"""Run a job as Airflow runs it, in a process of its own: ``python -m jobs.<name> --ds …``.

The job starts in a new session, so that it leads a process group holding its Spark JVM and its
workers: a fault point (:mod:`visearch.core.faults`) can SIGKILL the whole group without touching the
test runner, and whatever a killed or timed-out job leaves running is killed on the way out.
Output goes to files, not pipes (a surviving grandchild would hold a pipe open).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visearch.core.config import Settings

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRun:
    """How a job process ended."""

    name: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        """Whether SIGKILL ended it."""
        return self.returncode == -signal.SIGKILL

    def result(self) -> dict[str, Any]:
        """The job's JSON result line (the last line of stdout)."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        if self.returncode != 0 or not lines:
            raise AssertionError(f"{self.name} exited with {self.returncode}:\n{self.stderr[-4000:]}")
        return json.loads(lines[-1])  # type: ignore[no-any-return]


def job_env(settings: Settings, extra: dict[str, str] | None = None, tmp: Path | None = None) -> dict[str, str]:
    """The test runner's environment with the settings' roots and ``extra``; no fault armed unless
    ``extra`` arms one. ``tmp`` becomes the job's TMPDIR (a killed job cannot clean up its temporaries)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISEARCH_FAULT")}
    env.update({
        "VISEARCH_LANDING": settings.landing,
        "VISEARCH_LAKE": settings.lake,
        "VISEARCH_ARTIFACTS": settings.artifacts,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    })
    if tmp is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
    env.update(extra or {})
    return env


def run_job(name: str, ds: str, env: dict[str, str], logs: Path, *args: str, timeout: float = 600) -> JobRun:
    """Run ``python -m jobs.<name> --ds <ds> <args>`` in a new session and wait for it.

    Raises:
        subprocess.TimeoutExpired: when it runs past ``timeout`` (its process group is killed).
    """
    logs.mkdir(parents=True, exist_ok=True)
    stem = logs / f"{name}-{time.monotonic_ns()}"
    out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
    start = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", f"jobs.{name}", "--ds", ds, *args], cwd=REPO, env=env,
                                stdout=out, stderr=err, start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of the job's group is left
            proc.wait()
    seconds = time.perf_counter() - start
    log.info("job %s --ds %s %s: exit %d after %.1fs", name, ds, " ".join(args), returncode, seconds)
    return JobRun(name, returncode, out_path.read_text(), err_path.read_text(), seconds)
