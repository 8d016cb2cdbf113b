"""Following a DAG run as it happens: task starts, ends and seconds from ``airflow dags test`` output.

``airflow dags test`` runs the tasks of one DAG run in its own process and logs everything to
stdout: its own task bookkeeping, and through the task loggers every line spark-submit and the
job print (thousands per task). :class:`RunProgress` reads that stream line by line and keeps only
the task states:

- ``[DAG TEST] starting task_id=X``: task X started;
- ``Task instance state updated ... new_state=S``: the running task's new state (``success``,
  ``failed``, ``up_for_retry``...);
- ``[DAG TEST] end task task_id=X``: task X ended;
- ``DagRun Finished: ... state=S``: the run ended.

For each it returns the lines to show (``task i of n``, its state and seconds, the elapsed time
of the run and an estimate of what is left), so that ``make run`` is watchable while the full log
goes to a file. The estimate uses the seconds each task took last time when known (``expected``),
else the mean of the tasks done so far.
"""

from __future__ import annotations

import ast
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_STATE = re.compile(r"Task instance state updated\b.*\bnew_state=(\w+)")
_RUN_END = re.compile(r"DagRun Finished:.*\bstate=(\w+)")


@dataclass(frozen=True)
class TaskEvent:
    """One thing that happened to a task or the run, parsed from a log line."""

    kind: str  # "start", "state", "end" or "run_end"
    task_id: str = ""
    state: str = ""


def parse_line(line: str) -> TaskEvent | None:
    """The task event a line of ``airflow dags test`` output reports, or None for any other line."""
    if "[DAG TEST]" in line:
        if match := _START.search(line):
            return TaskEvent("start", match.group(1))
        if match := _END.search(line):
            return TaskEvent("end", match.group(1))
        return None
    if match := _STATE.search(line):
        return TaskEvent("state", state=match.group(1))
    if match := _RUN_END.search(line):
        return TaskEvent("run_end", state=match.group(1))
    return None


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``: short and fixed-width enough for progress lines."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def count_dag_tasks(dag_file: Path, factory: str = "spark_job") -> int | None:
    """How many tasks a wiring-only DAG file makes: its calls to ``factory`` (None when unreadable).

    A guess for progress lines only (``task i of n``); a DAG that builds tasks in a loop is
    counted wrong, and the count observed in a finished run replaces it.
    """
    try:
        tree = ast.parse(dag_file.read_text())
    except (OSError, SyntaxError):
        return None
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == factory]
    return len(calls) or None


@dataclass
class RunProgress:
    """The state of one DAG run, fed the lines of its output (:meth:`feed`).

    ``total``: the tasks of the run when known; ``expected``: seconds per task id from an
    earlier run (for the estimate); ``label``: a prefix such as the logical date.
    """

    total: int | None = None
    expected: Mapping[str, float] = field(default_factory=dict)
    label: str = ""
    started_at: float = field(default_factory=time.monotonic)
    current: str | None = None
    current_since: float = 0.0
    state: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    run_state: str = ""

    @property
    def done(self) -> int:
        """Tasks that ended (in any state)."""
        return len(self.seconds)

    def elapsed(self, now: float) -> float:
        """Seconds since the run started."""
        return now - self.started_at

    def remaining(self, now: float) -> float | None:
        """Estimated seconds left: the earlier run's seconds of the tasks not done yet (when it
        knew every task), else the mean task time so far times the tasks left; None when nothing
        is known yet."""
        if self.total is None:
            return None
        running = now - self.current_since if self.current else 0.0
        if self.expected and len(self.expected) >= self.total:
            left = sum(v for t, v in self.expected.items() if t not in self.seconds)
            if self.current is not None and self.current in self.expected:
                left -= min(running, self.expected[self.current])
            return max(left, 0.0)
        if not self.seconds:
            return None
        mean = sum(self.seconds.values()) / len(self.seconds)
        left_tasks = max(self.total - self.done, 0)
        return max(mean * left_tasks - min(running, mean), 0.0)

    def _position(self) -> str:
        total = "?" if self.total is None else str(self.total)
        number = self.done + (1 if self.current else 0)
        return f"task {number:>2} of {total}"

    def status(self, now: float) -> str:
        """The overall line: task i of n, elapsed, estimate left."""
        left = self.remaining(now)
        estimate = f", about {format_seconds(left)} left" if left is not None else ""
        running = f" {self.current} running {format_seconds(now - self.current_since)}" if self.current else ""
        prefix = f"{self.label} " if self.label else ""
        return f"{prefix}[{self._position()}]{running} | elapsed {format_seconds(self.elapsed(now))}{estimate}"

    def feed(self, line: str, now: float | None = None) -> list[str]:
        """Take one output line; return the progress lines it causes (usually none)."""
        event = parse_line(line)
        if event is None:
            return []
        now = time.monotonic() if now is None else now
        prefix = f"{self.label} " if self.label else ""
        if event.kind == "start":
            self.current, self.current_since, self.state = event.task_id, now, "running"
            expected = self.expected.get(event.task_id)
            hint = f" (took {format_seconds(expected)} last time)" if expected else ""
            return [f"{prefix}[{self._position()}] {event.task_id} started{hint}"]
        if event.kind == "state":
            self.state = event.state
            return []
        if event.kind == "end":
            task = event.task_id
            took = now - self.current_since if self.current == task else 0.0
            position = self._position()
            self.seconds[task] = took
            self.states[task] = self.state if self.state and self.state != "running" else "ended"
            self.current, self.state = None, ""
            if self.total is not None and self.done > self.total:
                self.total = self.done
            left = self.remaining(now)
            estimate = f", about {format_seconds(left)} left" if left is not None else ""
            return [f"{prefix}[{position}] {task} {self.states[task]} in {format_seconds(took)}"
                    f" | elapsed {format_seconds(self.elapsed(now))}{estimate}"]
        self.run_state = event.state
        failed = sorted(t for t, s in self.states.items() if s not in ("success", "skipped"))
        note = f"; not successful: {', '.join(failed)}" if failed else ""
        return [f"{prefix}DAG run {event.state} after {format_seconds(self.elapsed(now))}, "
                f"{self.done} tasks{note}"]


class ProgressPrinter:
    """Shows a :class:`RunProgress` on a stream while a run's output lines are fed to :meth:`line`.

    Event lines (task started, task ended with its seconds, run ended) are printed as they happen.
    On a terminal (``live``) the overall status line is redrawn in place every ``interval``
    seconds; elsewhere (CI logs) it is printed as a plain line every ``heartbeat`` seconds while a
    task runs, so that a long task does not look like a hang. Use it as a context manager.
    """

    def __init__(self, progress: RunProgress, stream: TextIO | None = None, *, live: bool | None = None,
                 interval: float = 1.0, heartbeat: float = 60.0) -> None:
        self.progress = progress
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval if self.live else heartbeat
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_shown = False

    def __enter__(self) -> ProgressPrinter:
        self._thread = threading.Thread(target=self._tick, name="run-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._clear_status()

    def line(self, text: str) -> None:
        """Feed one output line; print what it causes."""
        with self._lock:
            shown = self.progress.feed(text)
            if not shown:
                return
            self._clear_status()
            for out in shown:
                self.stream.write(out + "\n")
            self._draw_status()
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self.live:
                    self._draw_status()
                elif self.progress.current is not None:
                    self.stream.write(self.progress.status(time.monotonic()) + "\n")
                self.stream.flush()

    def _draw_status(self) -> None:
        if self.live and not self.progress.run_state:
            self.stream.write("\r\x1b[2K" + self.progress.status(time.monotonic()))
            self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[2K")
            self._status_shown = False
