"""A real Spark standalone cluster on loopback for tests: one master, N workers, spark-submit.

The daemons come from the pyspark pip package (``pyspark/bin/spark-class``), so nothing is
downloaded. Each daemon runs in its own process group; :meth:`StandaloneCluster.stop` ends the
group, which takes the executors (and their Python workers) the worker launched with it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.s3proxy import free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


def spark_home() -> Path:
    """The pyspark package folder, which holds ``bin/spark-class`` and the Spark jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the daemons and spark-submit: loopback only, this venv's Python."""
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    })
    env.pop("PYSPARK_GATEWAY_PORT", None)  # a test session's gateway must not leak into children
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    if extra:
        env.update(extra)
    return env


def group_alive(pid: int) -> bool:
    """Whether any process is left in the process group led by ``pid``."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group of ``process`` (its children too), SIGKILL what is left."""
    if process.poll() is not None and process.returncode is not None:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.poll()
                return
            process.poll()
            time.sleep(0.2)


@dataclass
class Worker:
    """One worker daemon: its web UI port and the folder where it runs executors."""

    web_port: int
    work_dir: Path
    process: subprocess.Popen[bytes]


@dataclass
class StandaloneCluster:
    """A running standalone master and its workers."""

    port: int
    web_port: int
    root: Path
    master: subprocess.Popen[bytes]
    workers: list[Worker] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The master URL to submit to."""
        return f"spark://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        """The master's JSON status: workers, active and completed applications.

        Raises:
            OSError: when the master's web UI does not answer.
        """
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def wait_for_workers(self, count: int, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until ``count`` workers are registered and ALIVE; returns the master's state.

        Raises:
            RuntimeError: when a daemon exits or the workers do not register in time.
        """
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for proc in (self.master, *(w.process for w in self.workers)):
                if proc.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited with {proc.returncode}; logs in {self.root}")
            try:
                last = self.state()
            except OSError:
                time.sleep(0.5)
                continue
            alive = [w for w in last.get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) >= count:
                return last
            time.sleep(0.5)
        raise RuntimeError(f"{count} workers did not register within {timeout}s: {last.get('workers')}; "
                           f"logs in {self.root}")

    def submit(self, application: Path, args: list[str], *, name: str, jars: list[str],
               conf: dict[str, str], env: dict[str, str], log_path: Path, driver_memory: str = "1g",
               timeout: float = 600.0) -> dict[str, Any]:
        """``spark-submit`` an application to this cluster (client deploy mode, as Airflow runs it).

        Returns the JSON result line the job printed last.

        Raises:
            RuntimeError: when spark-submit fails or prints no JSON result.
        """
        cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", self.url, "--name", name,
               "--driver-memory", driver_memory, "--jars", ",".join(jars)]
        for key, value in conf.items():
            cmd += ["--conf", f"{key}={value}"]
        cmd += [str(application), *args]
        log.info("$ %s", " ".join(cmd))
        with open(log_path, "ab") as handle:
            handle.write(f"\n$ {' '.join(cmd)}\n".encode())
            handle.flush()
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=handle,
                                    start_new_session=True)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_group(proc)
                raise RuntimeError(f"spark-submit {name} ran past {timeout}s; log {log_path}") from None
            finally:
                if proc.poll() is None:
                    stop_group(proc)
            handle.write(out)
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"spark-submit {name} failed with {proc.returncode}:\n{tail}")
        lines = [x for x in text.splitlines() if x.startswith("{")]
        if not lines:
            raise RuntimeError(f"spark-submit {name} printed no JSON result: {text[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def executor_dirs(self) -> dict[int, list[Path]]:
        """Per worker (by index): the executor folders ``<work_dir>/<app-id>/<executor-id>`` it ran."""
        return {i: sorted(p for p in w.work_dir.glob("app-*/*") if p.is_dir())
                for i, w in enumerate(self.workers)}

    def stop(self) -> None:
        """Stop the workers (and their executors), then the master."""
        for worker in self.workers:
            stop_group(worker.process)
        stop_group(self.master)


def _daemon(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    handle = open(log_path, "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def start_cluster(root: Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                  timeout: float = 120.0, extra_env: dict[str, str] | None = None) -> StandaloneCluster:
    """Start a master and ``workers`` workers on 127.0.0.1, and wait until all are registered.

    ``extra_env`` reaches the daemons and so the executors the workers launch (e.g. ``JAVA_TOOL_OPTIONS``).

    Raises:
        RuntimeError: when a daemon fails to start or register (everything started is stopped).
    """
    root.mkdir(parents=True, exist_ok=True)
    env = daemon_env({"SPARK_NO_DAEMONIZE": "1", "SPARK_DAEMON_MEMORY": "512m", **(extra_env or {})})
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, web_port = free_port(), free_port()
    master = _daemon([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                      "--port", str(port), "--webui-port", str(web_port)], root / "master.log", env)
    cluster = StandaloneCluster(port=port, web_port=web_port, root=root, master=master)
    try:
        for i in range(workers):
            work_dir = root / f"worker-{i}"
            work_dir.mkdir(exist_ok=True)
            w_web = free_port()
            proc = _daemon([spark_class, "org.apache.spark.deploy.worker.Worker", cluster.url,
                            "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                            "--webui-port", str(w_web), "--work-dir", str(work_dir)],
                           root / f"worker-{i}.log", env)
            cluster.workers.append(Worker(web_port=w_web, work_dir=work_dir, process=proc))
        cluster.wait_for_workers(workers, timeout=timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
