"""Airflow wiring: operators for the DAG files, and the embedded Airflow environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.orchestration.airflow_env import airflow as airflow
    from visearch.orchestration.airflow_env import airflow_env as airflow_env
    from visearch.orchestration.airflow_env import dags_test as dags_test
    from visearch.orchestration.airflow_env import init_airflow as init_airflow
    from visearch.orchestration.airflow_env import service_env as service_env
    from visearch.orchestration.operators import spark_jars as spark_jars
    from visearch.orchestration.operators import spark_job as spark_job
    from visearch.orchestration.pipeline import library_run as library_run
    from visearch.orchestration.progress import ProgressPrinter as ProgressPrinter
    from visearch.orchestration.progress import RunProgress as RunProgress
    from visearch.orchestration.progress import TaskEvent as TaskEvent
    from visearch.orchestration.progress import count_dag_tasks as count_dag_tasks
    from visearch.orchestration.progress import format_seconds as format_seconds
    from visearch.orchestration.progress import parse_line as parse_line

_EXPORTS = {
    "airflow": "airflow_env",
    "airflow_env": "airflow_env",
    "dags_test": "airflow_env",
    "init_airflow": "airflow_env",
    "service_env": "airflow_env",
    "spark_jars": "operators",
    "spark_job": "operators",
    "library_run": "pipeline",
    "ProgressPrinter": "progress",
    "RunProgress": "progress",
    "TaskEvent": "progress",
    "count_dag_tasks": "progress",
    "format_seconds": "progress",
    "parse_line": "progress",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
