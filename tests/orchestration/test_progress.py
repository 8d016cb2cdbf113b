"""Progress of a DAG run from ``airflow dags test`` output: lines parsed, events shown, noise dropped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from visearch.orchestration.progress import (
    ProgressPrinter,
    RunProgress,
    TaskEvent,
    count_dag_tasks,
    format_seconds,
    parse_line,
)

REPO = Path(__file__).resolve().parents[2]

# Lines as Airflow 3.3's `airflow dags test` writes them (cut to what matters), with task output
# in between: spark-submit's and the job's lines, which must not show.
_TS = "2026-12-07T19:48:{:02d}.000000Z"
_DAG_TEST = "[airflow.sdk.definitions.dag] loc=dag.py:1501"
_API = "[airflow.api_fastapi.execution_api.routes.task_instances] correlation_id=01a loc=task_instances.py:485"
_SPARK = "[airflow.task.hooks.airflow.providers.apache.spark.hooks.spark_submit.SparkSubmitHook]"


def _run_lines(tasks: list[tuple[str, str]], run_state: str) -> list[str]:
    lines = [f"{_TS.format(0)} [info     ] Created dag run.               [airflow.models.dagrun]"]
    for task, state in tasks:
        lines += [
            f"{_TS.format(1)} [info     ] [DAG TEST] starting task_id={task} map_index=-1 {_DAG_TEST}",
            f"{_TS.format(1)} [info     ] [DAG TEST] running task <TaskInstance: visearch_nightly.{task} "
            f"manual__2026 [TaskInstanceState.SCHEDULED] ti_id=01a> {_DAG_TEST}",
            f"{_TS.format(2)} [info     ] Task started                   {_API} previous_state=queued",
            f"{_TS.format(3)} [info     ] 26/12/07 19:48:03 WARN NativeCodeLoader: Unable to load native-hadoop "
            f"library {_SPARK}",
            f'{_TS.format(4)} [info     ] {{"job": "{task}", "stage_seconds": {{"count": 1.2}}}} {_SPARK}',
            f"{_TS.format(5)} [info     ] Task instance state updated    {_API} new_state={state} rows_affected=1",
            f"{_TS.format(5)} [info     ] [DAG TEST] end task task_id={task} map_index=-1 {_DAG_TEST}",
        ]
    lines.append(f"{_TS.format(6)} [info     ] DagRun Finished: dag_id=visearch_nightly, logical_date=2026-01-01 "
                 f"00:00:00+00:00, run_duration=12.5, state={run_state}, run_type=manual, "
                 "[airflow.models.dagrun.DagRun] loc=dagrun.py:1315")
    return lines


def _feed(progress: RunProgress, lines: list[str], step: float = 1.0) -> list[str]:
    shown: list[str] = []
    for i, line in enumerate(lines, 1):
        shown += progress.feed(line, now=progress.started_at + i * step)
    return shown


def test_parse_line__task_events_and_nothing_else() -> None:
    lines = _run_lines([("quality_gate", "success")], "success")
    events = [e for e in map(parse_line, lines) if e is not None]
    assert events == [TaskEvent("start", "quality_gate"), TaskEvent("state", state="success"),
                      TaskEvent("end", "quality_gate"), TaskEvent("run_end", state="success")]


def test_parse_line__spark_and_job_output_is_dropped() -> None:
    assert parse_line(f"{_TS.format(3)} [info     ] INFO DAGScheduler: Job 3 finished {_SPARK}") is None
    assert parse_line('{"job": "train", "state": "success"}') is None
    assert parse_line("") is None


def test_run_progress__start_end_seconds_and_estimate_from_the_mean() -> None:
    progress = RunProgress(total=3, label="2026-01-01")
    shown = _feed(progress, _run_lines([("ingest_images", "success"), ("quality_gate", "success")], "success"))
    # Each task spans 6 lines (start ... end) at 1 s a line: 6 s each, so the third should take ~6 s.
    assert shown[0] == "2026-01-01 [task  1 of 3] ingest_images started"
    assert shown[1].startswith("2026-01-01 [task  1 of 3] ingest_images success in 6s | elapsed 8s")
    assert shown[1].endswith("about 12s left")
    assert shown[3].startswith("2026-01-01 [task  2 of 3] quality_gate success in 6s | elapsed 15s")
    assert shown[3].endswith("about 6s left")
    assert shown[4] == "2026-01-01 DAG run success after 16s, 2 tasks"
    assert len(shown) == 5, "one line per start, per end and for the run; nothing for Spark's output"
    assert progress.seconds == {"ingest_images": 6.0, "quality_gate": 6.0}


def test_run_progress__estimate_from_the_last_run_and_failed_tasks_named() -> None:
    progress = RunProgress(total=2, expected={"ingest_images": 100.0, "train": 300.0})
    shown = _feed(progress, _run_lines([("ingest_images", "success"), ("train", "failed")], "failed"))
    assert shown[0] == "[task  1 of 2] ingest_images started (took 1m40s last time)"
    assert shown[1].endswith("about 5m00s left"), "train's 300 s of the last run"
    assert "train failed in 6s" in shown[3]
    assert shown[-1] == "DAG run failed after 16s, 2 tasks; not successful: train"
    assert progress.run_state == "failed"


def test_run_progress__status_line_while_a_task_runs() -> None:
    progress = RunProgress(total=11, expected={f"t{i}": 10.0 for i in range(11)})
    progress.feed(_run_lines([("t0", "success")], "success")[1], now=progress.started_at + 5)
    status = progress.status(progress.started_at + 8)
    assert status == "[task  1 of 11] t0 running 3s | elapsed 8s, about 1m47s left"


def test_run_progress__unknown_total_has_no_estimate() -> None:
    progress = RunProgress()
    shown = _feed(progress, _run_lines([("a", "success")], "success"))
    assert shown[0] == "[task  1 of ?] a started"
    assert "left" not in shown[1]


def test_progress_printer__plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    progress = RunProgress(total=1)
    with ProgressPrinter(progress, out, heartbeat=3600) as printer:
        for line in _run_lines([("publish_index", "success")], "success"):
            printer.line(line)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text, "no terminal control characters in CI logs"
    assert [ln.split("]", 1)[1].split("|")[0].strip() for ln in text.splitlines()[:2]] == [
        "publish_index started", "publish_index success in 0s"]
    assert "NativeCodeLoader" not in text


def test_progress_printer__live_status_line_is_cleared_before_event_lines() -> None:
    out = io.StringIO()
    progress = RunProgress(total=1)
    with ProgressPrinter(progress, out, live=True, interval=3600) as printer:
        for line in _run_lines([("embed", "success")], "success"):
            printer.line(line)
    text = out.getvalue()
    assert text.startswith("[task  1 of 1] embed started\n\r\x1b[2K[task  1 of 1] embed running 0s")
    assert "\r\x1b[2K[task  1 of 1] embed success in 0s" in text, "the status line is cleared first"
    assert text.endswith("\r\x1b[2KDAG run success after 0s, 1 tasks\n"), "no status line after the run"


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (185, "3m05s"), (3720, "1h02m")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_count_dag_tasks__the_nightly_and_reindex_dags() -> None:
    assert count_dag_tasks(REPO / "dags" / "visearch_nightly.py") == 11
    assert count_dag_tasks(REPO / "dags" / "visearch_reindex.py") == 3
    assert count_dag_tasks(REPO / "dags" / "missing.py") is None
