"""A local Airflow 3 installation for the embedded default: SQLite metadata, this repo's DAGs.

``make run`` and the DAG tests use it to run ``airflow dags test`` in a subprocess; the same
environment with ``sql_alchemy_conn`` pointing at Postgres and a real executor is what the
cluster integration test uses.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from visearch.orchestration import GPU_POOL, REPO, SPARK_CONN_ID

log = logging.getLogger(__name__)


def airflow_env(
    home: Path,
    *,
    spark_master: str = "local[2]",
    sql_alchemy_conn: str | None = None,
    executor: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for Airflow commands: home, metadata DB, DAG folder, Spark connection, PATH."""
    home.mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps({"conn_type": "spark", "host": spark_master}),
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
            "PYTHONPATH": str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            "VISEARCH_TASK_RETRIES": env.get("VISEARCH_TASK_RETRIES", "0"),
        }
    )
    if executor:
        env["AIRFLOW__CORE__EXECUTOR"] = executor
    if extra:
        env.update(extra)
    return env


def airflow(args: list[str], env: Mapping[str, str], *, log_path: Path | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run an ``airflow`` CLI command; output goes to ``log_path`` when given.

    Raises:
        subprocess.CalledProcessError: when the command fails (the log says why).
    """
    cmd = [str(Path(sys.executable).parent / "airflow"), *args]
    log.info("$ %s", " ".join(cmd))
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as handle:
            handle.write(f"\n$ {' '.join(cmd)}\n")
            handle.flush()
            proc = subprocess.run(cmd, env=dict(env), stdout=handle, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
            raise subprocess.CalledProcessError(proc.returncode, cmd, output=tail)
        return proc
    return subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=True)


def init_airflow(env: Mapping[str, str], log_path: Path | None = None) -> None:
    """Migrate the metadata database and create the GPU pool (both idempotent)."""
    airflow(["db", "migrate"], env, log_path=log_path)
    airflow(["pools", "set", GPU_POOL, "1", "GPU tasks (training, embedding)"], env, log_path=log_path)


def dags_test(dag_id: str, ds: str, env: Mapping[str, str], *, log_path: Path | None = None,
              conf: Mapping[str, object] | None = None, timeout: float | None = None) -> None:
    """Run one DAG run in-process with ``airflow dags test`` (the embedded default).

    Raises:
        subprocess.CalledProcessError: when a task fails.
    """
    args = ["dags", "test", dag_id, ds]
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    airflow(args, env, log_path=log_path, timeout=timeout)
    if log_path is not None:
        text = log_path.read_text()
        # `dags test` exits 0 even when a task failed in some versions; check the final state.
        tail = text[text.rfind("$ ") :]
        if "state=failed" in tail or "DagRunState.FAILED" in tail or "run failed" in tail.lower():
            raise subprocess.CalledProcessError(1, args, output=tail[-4000:])
