"""visearch.core.faults: the spec, the no-op when unarmed, the kill of the whole job; retry settings.

A matching point is only ever armed in a child process started in its own session: armed here,
it would kill the test runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from visearch.core import faults
from visearch.core.config import S3Settings, load_settings
from visearch.core.spark import s3a_conf
from visearch.core.storage import make_s3_client, open_store

REPO = Path(__file__).resolve().parents[2]


def run_child(code: str, fault_at: str | None, tmp_path: Path) -> tuple[int, str, str]:
    """Run ``code`` in a fresh Python in its own session; return (exit code, stdout, fault log)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISEARCH_FAULT")}
    env["PYTHONPATH"] = str(REPO)
    fault_log = tmp_path / "faults.log"
    fault_log.unlink(missing_ok=True)
    if fault_at is not None:
        env[faults.FAULT_ENV] = fault_at
        env[faults.LOG_ENV] = str(fault_log)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, start_new_session=True)
    return proc.returncode, proc.stdout, fault_log.read_text() if fault_log.exists() else ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("build_index.shard_uploaded", faults.FaultSpec("build_index.shard_uploaded", "", 1)),
        ("storage.partial_write:checkpoints/2026-01-01/@2",
         faults.FaultSpec("storage.partial_write", "checkpoints/2026-01-01/", 2)),
        ("tables.write:silver.quarantine", faults.FaultSpec("tables.write", "silver.quarantine", 1)),
        (" p@12 ", faults.FaultSpec("p", "", 12)),
    ],
)
def test_fault_spec__parses_point_key_prefix_and_nth(text: str, expected: faults.FaultSpec) -> None:
    assert faults.FaultSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["", "@2", "p@0", "p@two", ":key"])
def test_fault_spec__rejects_a_malformed_value(text: str) -> None:
    with pytest.raises(ValueError, match="VISEARCH_FAULT_AT"):
        faults.FaultSpec.parse(text)


def test_fault_spec__matches_the_point_and_a_key_prefix_only() -> None:
    spec = faults.FaultSpec.parse("storage.partial_write:checkpoints/")
    assert spec.matches("storage.partial_write", "checkpoints/d/step-00000002.pt")
    assert not spec.matches("storage.partial_write", "models/v1/model.pt")
    assert not spec.matches("build_index.shard_uploaded", "checkpoints/x")


def test_point__unarmed_or_armed_elsewhere_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    faults.point(faults.SHARD_UPLOADED_POINT, "k")
    assert not faults.armed(faults.SHARD_UPLOADED_POINT)
    assert faults.progress_point(faults.PARTIAL_WRITE_POINT, "k") is None
    sentinel = object()
    assert faults.spark_write_point(sentinel, "silver.images") is sentinel  # type: ignore[arg-type]
    monkeypatch.setenv(faults.FAULT_ENV, "tables.write:silver.quarantine")
    faults.point(faults.TABLE_WRITE_POINT, "silver.images")  # another table: returns
    assert faults.spark_write_point(sentinel, "silver.images") is sentinel  # type: ignore[arg-type]
    assert faults.armed(faults.TABLE_WRITE_POINT, "silver.quarantine")
    # Unarmed, a store writes as ever.
    monkeypatch.delenv(faults.FAULT_ENV)
    store = open_store(f"file://{tmp_path}")
    sha = store.put_bytes("checkpoints/a.pt", b"abc")
    assert store.put_file("checkpoints/b.pt", tmp_path / "checkpoints/a.pt") == sha
    assert store.list("checkpoints/") == ["checkpoints/a.pt", "checkpoints/b.pt"]


def test_point__kills_on_the_nth_visit_and_not_before(tmp_path: Path) -> None:
    code = """
        from visearch.core import faults
        for i in range(3):
            faults.point("demo.point", f"key-{i}")
            print("passed", i, flush=True)
    """
    rc, out, log = run_child(code, "demo.point:key-@2", tmp_path)
    assert rc == -signal.SIGKILL and out.split("\n")[:1] == ["passed 0"] and "passed 1" not in out
    assert "SIGKILL at fault point demo.point:key-1" in log
    rc, out, log = run_child(code, "demo.point:other", tmp_path)
    assert rc == 0 and "passed 2" in out and log == ""


def test_point__in_a_process_of_another_group_kills_the_job_that_started_it(tmp_path: Path) -> None:
    # Like a torchrun worker or a Spark Python worker: a process in a session of its own reaches the
    # point; the job (the armed process that started first) dies with it.
    code = """
        import subprocess, sys, time
        from visearch.core import faults
        child = subprocess.Popen(
            [sys.executable, "-c", "from visearch.core import faults; faults.point('worker.point')"],
            start_new_session=True)
        child.wait()
        time.sleep(30)
        print("the job survived", flush=True)
    """
    rc, out, log = run_child(code, "worker.point", tmp_path)
    assert rc == -signal.SIGKILL and "survived" not in out
    assert "SIGKILL at fault point worker.point" in log


def test_local_store__a_write_killed_midway_leaves_a_torn_temporary_file_and_no_object(tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(20 << 20))
    code = f"""
        from visearch.core.storage import open_store
        open_store("file://{tmp_path}/store").put_file("checkpoints/run/step-00000004.pt", "{payload}")
    """
    rc, _, log = run_child(code, "storage.partial_write:checkpoints/", tmp_path)
    assert rc == -signal.SIGKILL and "storage.partial_write:checkpoints/run/step-00000004.pt" in log
    store = open_store(f"file://{tmp_path}/store")
    assert store.list("") == [] and not store.exists("checkpoints/run/step-00000004.pt")
    (torn,) = (tmp_path / "store/checkpoints/run").glob(".step-00000004.pt.*.tmp")
    assert torn.stat().st_size == 8 << 20  # the first chunk of 20 MiB


def test_s3_retries__come_from_the_settings() -> None:
    client = make_s3_client(S3Settings(endpoint="http://127.0.0.1:9", max_attempts=4, retry_mode="adaptive"))
    assert client.meta.config.retries == {"total_max_attempts": 4, "mode": "adaptive"}
    settings = load_settings(env={"VISEARCH_LAKE": "s3://b/lake", "VISEARCH_S3__MAX_ATTEMPTS": "7"})
    conf = s3a_conf(settings)
    assert conf["spark.hadoop.fs.s3a.attempts.maximum"] == conf["spark.hadoop.fs.s3a.retry.limit"] == "7"
    assert conf["spark.hadoop.fs.s3a.retry.http.5xx.errors"] == "true"


@pytest.mark.parametrize(("field", "value"), [("max_attempts", 0), ("retry_mode", "sometimes")])
def test_s3_settings__reject_bad_retry_settings(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=str(value)):
        S3Settings(**{field: value})  # type: ignore[arg-type]
