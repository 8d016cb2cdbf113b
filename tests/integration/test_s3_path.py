"""The S3 path end to end: landing, lake and artifacts on a real S3-compatible server (S3Proxy).

The jobs run as separate processes (`python -m jobs.<name> --ds …`), as Airflow would run them,
with Spark's S3A talking to the loopback server; running a day twice changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3proxy import S3Server

pytestmark = [pytest.mark.s3, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
BUCKET = "visearch-e2e"

DUMP = r"""
import json, sys
from visearch.core.config import load_settings
from visearch.core.spark import get_spark
from visearch.core import tables as T
settings = load_settings()
spark = get_spark(settings, "dump")
out = {}
for table in T.ALL_TABLES:
    if T.exists(spark, settings, table):
        rows = T.read(spark, settings, table).collect()
        out[table.name] = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str) for r in rows)
print("DUMP" + json.dumps(out))
"""


def _env(server: S3Server) -> dict[str, str]:
    env = dict(os.environ)
    env.update(server.env())
    env.update({
        "VISEARCH_LANDING": f"s3://{BUCKET}/landing",
        "VISEARCH_LAKE": f"s3://{BUCKET}/lake",
        "VISEARCH_ARTIFACTS": f"s3://{BUCKET}/artifacts",
        "PYTHONPATH": str(REPO),
    })
    return env


def _job(name: str, ds: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", f"jobs.{name}", "--ds", ds], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _dump(env: dict[str, str]) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", DUMP], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DUMP"))
    return json.loads(line[4:])  # type: ignore[no-any-return]


def test_s3_path__ingest_on_s3proxy_is_complete_and_idempotent(s3_server: S3Server) -> None:
    from visearch.core.config import S3Settings
    from visearch.core.storage import open_store
    from visearch.demo.corpus import generate_demo

    s3_server.create_bucket(BUCKET)
    env = _env(s3_server)
    generate_demo(f"s3://{BUCKET}/landing", images=40, days=1, seed=3, size=32)  # type: ignore[arg-type]
    ds = "2026-01-01"
    images = _job("ingest_images", ds, env)
    events = _job("ingest_interactions", ds, env)
    first = _dump(env)
    assert len(first["silver.images"]) >= 40
    assert len(first["silver.interactions"]) > 0
    assert first["silver.quarantine"], "the demo's bad records must be quarantined, not dropped"
    # The Delta log and the run records really are objects in the S3 server.
    store = open_store(f"s3://{BUCKET}", S3Settings(endpoint=s3_server.endpoint))
    assert any(k.startswith("lake/silver/images/_delta_log/") for k in store.list("lake/"))
    assert store.exists(f"artifacts/runs/{ds}/ingest_images.json")
    _job("ingest_images", ds, env)
    _job("ingest_interactions", ds, env)
    assert _dump(env) == first
    assert images and events
