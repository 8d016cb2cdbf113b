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
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from visearch.orchestration.operators import GPU_POOL, REPO, SPARK_CONN_ID, WRITERS_POOL

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
    options = local_driver_java_options(spark_master, env)
    if options:
        # spark-submit's launcher puts SPARK_SUBMIT_OPTS on the driver JVM's command line (client mode).
        env["SPARK_SUBMIT_OPTS"] = " ".join(o for o in (env.get("SPARK_SUBMIT_OPTS", ""), options) if o)
    return env


def local_driver_java_options(spark_master: str, env: Mapping[str, str]) -> str:
    """The fast-start JVM options (AppCDS archive, C1 only) for the drivers of a local master;
    empty for a cluster master or with ``spark.fast_start`` off (:mod:`visearch.core.jvm`)."""
    from visearch.core.config import SparkSettings, load_settings
    from visearch.core.jvm import driver_java_options

    spark = SparkSettings(master=spark_master, fast_start=load_settings(env=env).spark.fast_start)
    return driver_java_options(spark.fast_start) if spark.is_local else ""


def _stream(cmd: list[str], env: Mapping[str, str], handle: TextIO, on_line: Callable[[str], None],
            timeout: float | None) -> int:
    """Run ``cmd``, copying each output line to ``handle`` and passing it to ``on_line``; its exit code.

    Raises:
        subprocess.TimeoutExpired: when it runs past ``timeout`` (it is killed).
    """
    proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill) if timeout is not None else None
    if timer is not None:
        timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            handle.write(line)
            on_line(line)
        code = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout or 0.0)
    return code


def airflow(args: list[str], env: Mapping[str, str], *, log_path: Path | None = None,
            timeout: float | None = None,
            on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Run an ``airflow`` CLI command; output goes to ``log_path`` when given.

    ``on_line`` (with ``log_path``) also sees each output line as it comes, e.g. to show progress.

    Raises:
        subprocess.CalledProcessError: when the command fails (the log says why).
        subprocess.TimeoutExpired: when it runs past ``timeout``.
    """
    cmd = [str(Path(sys.executable).parent / "airflow"), *args]
    log.info("$ %s", " ".join(cmd))
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as handle:
            handle.write(f"\n$ {' '.join(cmd)}\n")
            handle.flush()
            if on_line is not None:
                code = _stream(cmd, env, handle, on_line, timeout)
                proc: subprocess.CompletedProcess[str] = subprocess.CompletedProcess(cmd, code)
            else:
                proc = subprocess.run(cmd, env=dict(env), stdout=handle, stderr=subprocess.STDOUT, text=True,
                                      timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
            raise subprocess.CalledProcessError(proc.returncode, cmd, output=tail)
        return proc
    return subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=True)


def init_airflow(env: Mapping[str, str], log_path: Path | None = None) -> None:
    """Migrate the metadata database and create the GPU and writers pools (all idempotent)."""
    airflow(["db", "migrate"], env, log_path=log_path)
    airflow(["pools", "set", GPU_POOL, "1", "GPU tasks (training)"], env, log_path=log_path)
    airflow(["pools", "set", WRITERS_POOL, "1", "tasks that write shared Delta tables or pointers"], env,
            log_path=log_path)


def dags_test(dag_id: str, ds: str, env: Mapping[str, str], *, log_path: Path | None = None,
              conf: Mapping[str, object] | None = None, timeout: float | None = None,
              on_line: Callable[[str], None] | None = None) -> None:
    """Run one DAG run in-process with ``airflow dags test`` (the embedded default).

    ``on_line`` sees each output line as it is written to ``log_path`` (see
    :class:`visearch.orchestration.progress.RunProgress`).

    Raises:
        subprocess.CalledProcessError: when a task fails.
    """
    args = ["dags", "test", dag_id, ds]
    if conf:
        args += ["--conf", json.dumps(dict(conf))]
    airflow(args, env, log_path=log_path, timeout=timeout, on_line=on_line)
    if log_path is not None:
        text = log_path.read_text()
        # `dags test` exits 0 even when a task failed in some versions; check the final state.
        tail = text[text.rfind("$ ") :]
        if "state=failed" in tail or "DagRunState.FAILED" in tail or "run failed" in tail.lower():
            raise subprocess.CalledProcessError(1, args, output=tail[-4000:])


def service_env(
    home: Path,
    *,
    sql_alchemy_conn: str,
    api_port: int,
    jwt_secret: str,
    spark_master: str = "local[2]",
    executor: str = "LocalExecutor",
    parallelism: int = 2,
    use_job_schedule: bool = True,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for Airflow 3 as separate services: scheduler, dag-processor and api-server.

    What differs from :func:`airflow_env` (``airflow dags test`` in one process): a metadata
    database every component shares (Postgres), an executor, and the Execution API — task
    processes started by the executor report their state and read connections through
    ``<api>/execution/``, authenticated by JWTs that the scheduler signs and the api-server
    checks with the same ``jwt_secret``. ``use_job_schedule=False`` makes the scheduler create no
    scheduled runs (backfills and triggered runs still run).

    Raises:
        ValueError: for a non-positive ``api_port`` or ``parallelism``, or an empty ``jwt_secret``.
    """
    if api_port <= 0 or parallelism <= 0:
        raise ValueError(f"api_port and parallelism must be positive, got {api_port}, {parallelism}")
    if not jwt_secret:
        raise ValueError("jwt_secret must not be empty: the api-server could not check task tokens")
    base_url = f"http://127.0.0.1:{api_port}"
    settings = {
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__SECRET_KEY": jwt_secret,
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(use_job_schedule),
        **(extra or {}),
    }
    return airflow_env(home, spark_master=spark_master, sql_alchemy_conn=sql_alchemy_conn, executor=executor,
                       extra=settings)
