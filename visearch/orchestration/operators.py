"""Airflow wiring shared by the DAG files: one SparkSubmitOperator per job in ``jobs/``.

Nothing here touches the metadata database, Variables or Connections at import time: the
Spark connection is resolved by the operator when the task runs, and the jar list is read by a
template macro at render time. No pyspark, torch or faiss import.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
SPARK_CONN_ID = os.environ.get("VISEARCH_SPARK_CONN_ID", "visearch_spark")
GPU_POOL = os.environ.get("VISEARCH_GPU_POOL", "visearch_gpu")
WRITERS_POOL = os.environ.get("VISEARCH_WRITERS_POOL", "visearch_writers")
"""One slot: at most one task of any visearch DAG writes a shared Delta table or pointer at a time."""

# Jobs that write a shared Delta table or a pointer, and what they write. Their tasks, in every
# DAG, take the one slot of WRITERS_POOL: Delta on S3 through S3SingleDriverLogStore is safe for
# one writer at a time only (two commits racing for the same version can both "succeed" and one
# is lost), and the nightly and reindex DAGs both write gold.embeddings and indexes/<name>/CURRENT.
# A task has one pool, so embed (GPU and a writer) takes the writers pool: GPU applications at once
# are at most GPU_POOL's size (train) plus one (embed).
SHARED_WRITERS: dict[str, str] = {
    "ingest_images": "bronze.images_raw, silver.images, silver.quarantine",
    "ingest_interactions": "silver.interactions, silver.quarantine",
    "online_metrics": "gold.online_metrics",
    "build_pairs": "gold.training_pairs, gold.click_propensity, silver.quarantine",
    "evaluate": "gold.eval_judgments, gold.model_metrics",
    "promote": "models/CHAMPION",
    "embed": "gold.embeddings, silver.quarantine",
    "publish_index": "indexes/<name>/CURRENT, indexes/<name>/history/",
}

log = logging.getLogger(__name__)


def spark_jars() -> str:
    """Comma-separated Spark jars (Delta, plus S3A for s3:// roots); a template macro, runtime only."""
    from visearch.core.config import load_settings
    from visearch.core.spark import extra_jars

    return ",".join(extra_jars(with_s3a=load_settings().uses_s3))


def on_failure(context: dict[str, Any]) -> None:
    """Failure callback: say which task of which run failed, where its log is, and why."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    log.error(
        "visearch task failed: dag=%s task=%s run=%s try=%s log=%s error=%r",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        getattr(ti, "try_number", "?"),
        getattr(ti, "log_url", "?"),
        exc,
    )


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "visearch",
    "retries": int(os.environ.get("VISEARCH_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=int(os.environ.get("VISEARCH_RETRY_DELAY_S", "30"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=6),
    "on_failure_callback": on_failure,
}


def spark_job(
    task_id: str,
    job: str,
    args: list[str] | None = None,
    *,
    pool: str | None = None,
    gpu: bool = False,
    execution_timeout: timedelta | None = None,
    **kwargs: Any,
) -> Any:
    """A SparkSubmitOperator running ``jobs/<job>.py --ds {{ ds }} <args>``.

    The task's pool: :data:`WRITERS_POOL` for a job of :data:`SHARED_WRITERS` (GPU or not), else the
    GPU pool for ``gpu=True``, else ``pool``. ``gpu=True`` also asks Spark for one GPU per executor
    and task when ``VISEARCH_SPARK_GPUS`` is set (a cluster with GPU discovery configured).

    Raises:
        ValueError: when ``pool`` names another pool for a job that writes shared tables.
    """
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    application = JOBS / f"{job}.py"
    if job in SHARED_WRITERS:
        if pool not in (None, WRITERS_POOL):
            raise ValueError(f"{job} writes {SHARED_WRITERS[job]}: its task must take pool {WRITERS_POOL}, "
                             f"not {pool}")
        pool = WRITERS_POOL
    elif gpu:
        pool = GPU_POOL
    conf = {
        "spark.pyspark.python": os.environ.get("VISEARCH_PYSPARK_PYTHON", sys.executable),
        "spark.pyspark.driver.python": os.environ.get("VISEARCH_PYSPARK_PYTHON", sys.executable),
        "spark.executorEnv.PYTHONPATH": str(REPO),
    }
    if gpu and os.environ.get("VISEARCH_SPARK_GPUS"):
        conf["spark.executor.resource.gpu.amount"] = "1"
        conf["spark.task.resource.gpu.amount"] = "1"
    extra: dict[str, Any] = {}
    if execution_timeout is not None:
        extra["execution_timeout"] = execution_timeout
    return SparkSubmitOperator(
        task_id=task_id,
        application=str(application),
        conn_id=SPARK_CONN_ID,
        name=f"visearch-{job}",
        jars="{{ visearch_jars() }}",
        conf=conf,
        driver_memory=os.environ.get("VISEARCH_SPARK_DRIVER_MEMORY", "3g"),
        application_args=["--ds", "{{ ds }}", *(args or [])],
        env_vars={"PYTHONPATH": str(REPO)},
        pool=pool or "default_pool",
        **extra,
        **kwargs,
    )
