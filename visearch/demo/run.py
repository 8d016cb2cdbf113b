"""``visearch demo-run`` (``make run``): demo data, then the nightly DAG through Airflow, then a summary.

Runs each demo day with ``airflow dags test visearch_nightly <ds>`` (SQLite metadata, tasks
in-process, each task one spark-submit) and prints what landed: row counts, quarantine reasons,
and each job's stage timings (from the run records the jobs write under ``<artifacts>/runs/``).
While a day runs, each task's start and end with its seconds are printed as they happen, with the
overall progress (task i of n, elapsed, estimate left; :mod:`visearch.orchestration.progress`);
Airflow's and Spark's own output goes to ``.visearch/airflow/demo-run.log``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from visearch.core.config import DEFAULT_ROOT, Settings, load_settings

log = logging.getLogger(__name__)

DEMO_START = "2026-01-01"
DAG_ID = "visearch_nightly"
TASK_SECONDS = "task-seconds.json"  # under the Airflow home: each task's seconds in the last run


def demo_days(start: str, days: int) -> list[str]:
    """The logical dates of the demo, one per day from ``start``."""
    first = dt.date.fromisoformat(start)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def ensure_demo_data(settings: Settings, images: int, days: int, size: int, seed: int) -> Path:
    """Generate the demo corpus into the (local) landing root unless it is already there.

    Raises:
        ValueError: when the landing root is not a local folder.
    """
    from visearch.demo.corpus import generate_demo

    if not settings.landing.startswith("file://"):
        raise ValueError(f"demo-run generates data into a local landing root, not {settings.landing}")
    landing = Path(urlparse(settings.landing).path)
    marker = landing / "demo_truth.json"
    if marker.is_file():
        log.info("demo data already in %s (delete it or use --fresh to regenerate)", landing)
        return landing
    generate_demo(landing, images=images, days=days, seed=seed, size=size, start_ds=DEMO_START)
    return landing


def summarize(settings: Settings, days: list[str], timings: dict[str, float]) -> str:
    """Row counts, quarantine reasons, stage timings and what is live, as printable text.

    The champion is the one the last promote run recorded (its run record), so the demo needs no
    model code to name it.
    """
    from pyspark.sql import functions as F

    from visearch.core import tables as T
    from visearch.core.spark import get_spark
    from visearch.core.storage import open_store

    lines: list[str] = ["", "== what landed =="]
    spark = get_spark(settings, "visearch-demo-summary")
    for table in T.ALL_TABLES:
        if T.exists(spark, settings, table):
            lines.append(f"  {table.name:<22} {T.read(spark, settings, table).count():>8} rows")
    if T.exists(spark, settings, T.SILVER_IMAGES):
        by_status = T.read(spark, settings, T.SILVER_IMAGES).groupBy("status").count().collect()
        lines.append("  silver.images by status: " + ", ".join(f"{r['status']}={r['count']}" for r in by_status))
    if T.exists(spark, settings, T.SILVER_QUARANTINE):
        lines.append("== quarantine reasons ==")
        rows = (T.read(spark, settings, T.SILVER_QUARANTINE).groupBy("source", "reason").count()
                .orderBy(F.desc("count")).collect())
        lines += [f"  {r['source']:<16} {r['reason']:<28} {r['count']:>6}" for r in rows]
    store = open_store(settings.artifacts, settings.s3)
    lines.append("== stage timings (seconds) ==")
    champion = None
    for ds in days:
        lines.append(f"  {ds}: DAG run {timings.get(ds, 0.0):.1f}s")
        for key in store.list(f"runs/{ds}/"):
            record: dict[str, Any] = json.loads(store.get_text(key))
            stages = ", ".join(f"{k} {v:.1f}" for k, v in record.get("stage_seconds", {}).items())
            lines.append(f"    {record.get('job', key):<20} {stages}")
            if record.get("job") == "promote":  # its record says who is champion after the day's run
                champion = record.get("champion")
    current = store.read_pointer(f"indexes/{settings.index.name}/CURRENT")
    lines.append(f"== published == champion model: {champion}; live index build: {current}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    """Generate demo data and run the nightly DAG for each demo day."""
    import os

    from visearch.orchestration.airflow_env import airflow_env, dags_test, init_airflow
    from visearch.orchestration.operators import REPO
    from visearch.orchestration.progress import ProgressPrinter, RunProgress, count_dag_tasks

    # Demo-sized training unless the user chose otherwise (the jobs read it from the environment).
    os.environ.setdefault("VISEARCH_TRAIN__STEPS", str(args.train_steps))
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    settings = load_settings()
    root = DEFAULT_ROOT.resolve()
    if args.fresh:
        import shutil

        for sub in ("landing", "lake", "artifacts", "airflow"):
            shutil.rmtree(root / sub, ignore_errors=True)
    ensure_demo_data(settings, args.images, args.days, args.size, args.seed)
    days = demo_days(DEMO_START, args.days)
    env = airflow_env(root / "airflow", spark_master=settings.spark.master)
    log_path = root / "airflow" / "demo-run.log"
    print(f"Airflow home {root / 'airflow'}; full log in {log_path}", flush=True)
    init_airflow(env, log_path)
    history = root / "airflow" / TASK_SECONDS
    expected = load_task_seconds(history)
    total = len(expected) or count_dag_tasks(REPO / "dags" / f"{DAG_ID}.py")
    timings: dict[str, float] = {}
    for number, ds in enumerate(days, 1):
        start = time.perf_counter()
        print(f"running {DAG_ID} for {ds} (day {number} of {len(days)}) ...", flush=True)
        progress = RunProgress(total=total, expected=expected, label=ds)
        with ProgressPrinter(progress) as printer:
            dags_test(DAG_ID, ds, env, log_path=log_path, on_line=printer.line)
        timings[ds] = time.perf_counter() - start
        print(f"  {ds} done in {timings[ds]:.0f}s", flush=True)
        if progress.seconds:  # the next day's (and next run's) estimate
            expected, total = dict(progress.seconds), progress.done
            history.write_text(json.dumps(expected, indent=2, sort_keys=True))
    print(summarize(settings, days, timings), flush=True)
    return 0


def load_task_seconds(path: Path) -> dict[str, float]:
    """Seconds per task of the last DAG run that ``demo-run`` saw (empty when none or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def add_cli(sub: Any) -> None:
    """Register ``visearch demo-run``."""
    parser = sub.add_parser("demo-run", help="demo data + the nightly DAG through Airflow",
                            description=__doc__)
    parser.add_argument("--images", type=int, default=300, help="demo corpus size (default 300)")
    parser.add_argument("--days", type=int, default=2, help="demo days to run (default 2)")
    parser.add_argument("--size", type=int, default=64, help="demo image size in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="wipe .visearch/ first")
    parser.add_argument("--train-steps", type=int, default=60,
                        help="training steps per day unless VISEARCH_TRAIN__STEPS is set (default 60)")
    parser.set_defaults(func=run_demo)
