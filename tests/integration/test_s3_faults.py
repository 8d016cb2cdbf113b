"""The S3 server fails: 500/503 answers, dropped connections, cut uploads, an outage. Jobs retry and finish.

A fault-injecting proxy (tests/support/fault_proxy.py) sits on loopback between the jobs and
S3Proxy. The jobs run as separate processes (``python -m jobs.<name>``) pointed at the proxy:
ingest_images writes its Delta tables through Spark's S3A, build_index uploads its shards from
Spark tasks and its manifest from the driver through boto3. Afterwards the server itself (not the
proxy) is read to show that nothing half-written became visible: every file a Delta log names is
there whole, the tables equal those of a run without faults, every object of an index build
matches its manifest's sha256, and ``CURRENT`` never names a build that is not all there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.delta_log import data_files, read_state
from tests.support.fault_checks import (
    DAY1,
    DAY2,
    DEMO_DS,
    INDEX,
    INGEST_TABLES,
    CleanIngest,
    assert_serves,
    clustered,
    duplicate_keys,
    table_prefix,
    table_rows,
    write_corpus,
)
from tests.support.fault_proxy import FaultPlan, FaultProxy
from tests.support.index_builds import make_build
from tests.support.jobproc import job_env, run_job
from tests.support.s3proxy import S3Server
from visearch.core.config import S3Settings, load_settings
from visearch.core.storage import open_store
from visearch.index.manifest import current_build_id, list_build_ids, read_manifest, verify_build
from visearch.index.publish import publish_build

pytestmark = [pytest.mark.s3, pytest.mark.slow]
BUCKET = "visearch-faults"


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's S3Proxy (no faults until a test sets a plan)."""
    s3_server.create_bucket(BUCKET)
    running = FaultProxy(s3_server.port)
    yield running
    running.stop()


def test_s3_faults__an_upload_cut_halfway_never_becomes_an_object(s3_server: S3Server, proxy: FaultProxy,
                                                                  tmp_path: Path) -> None:
    proxy.set_plan(FaultPlan(truncate_share=1.0))
    through = open_store(f"s3://{BUCKET}/cut", S3Settings(endpoint=proxy.endpoint, max_attempts=2))
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(0).bytes(6 << 20))
    with pytest.raises((BotoCoreError, ClientError)):
        through.put_bytes("small", b"x" * 100_000)
    with pytest.raises((BotoCoreError, ClientError)):
        through.put_file("big", big)
    assert proxy.counts["truncate"] == 4  # two attempts each, each cut halfway
    assert open_store(f"s3://{BUCKET}/cut", S3Settings(endpoint=s3_server.endpoint)).list("") == []

    proxy.set_plan(FaultPlan(truncate_share=0.5, seed=1))  # half the attempts cut: retries get through
    through = open_store(f"s3://{BUCKET}/cut", S3Settings(endpoint=proxy.endpoint, max_attempts=10))
    assert through.put_file("big", big) == through.put_bytes("copy", big.read_bytes())
    direct = open_store(f"s3://{BUCKET}/cut", S3Settings(endpoint=s3_server.endpoint))
    assert direct.get_bytes("big") == big.read_bytes() == direct.get_bytes("copy")


@pytest.mark.spark
def test_s3_faults__ingest_through_errors_drops_and_an_outage_finishes_equal_to_a_clean_run(
    s3_server: S3Server, proxy: FaultProxy, clean_ingest: CleanIngest, tmp_path: Path
) -> None:
    lake_uri = f"s3://{BUCKET}/ingest/lake"
    settings = load_settings(env={"VISEARCH_LANDING": str(clean_ingest.landing), "VISEARCH_LAKE": lake_uri,
                                  "VISEARCH_ARTIFACTS": f"s3://{BUCKET}/ingest/artifacts"})
    proxy.set_plan(FaultPlan(error_share=0.05, drop_share=0.02, truncate_share=0.02, outage_after=150,
                             outage_seconds=2.0, seed=11))
    env = job_env(settings, {**s3_server.env(), "VISEARCH_S3_ENDPOINT": proxy.endpoint}, tmp_path / "tmp")
    result = run_job("ingest_images", DEMO_DS, env, tmp_path / "logs").result()
    counts = proxy.counts
    assert counts["error"] >= 5 and counts["drop"] >= 1 and counts["reset"] >= 1, counts

    for key in ("manifest_lines", "bronze_rows", "upserts", "ok", "quarantined"):
        assert result[key] == clean_ingest.result[key], key
    lake = open_store(lake_uri, S3Settings(endpoint=s3_server.endpoint))  # the server itself, no proxy
    for table in INGEST_TABLES:
        state, on_server = read_state(lake, table_prefix(table)), data_files(lake, table_prefix(table))
        assert {p: on_server.get(p) for p in state.files} == state.files, f"{table.name}: a committed file is " \
                                                                           "missing or not whole"
        rows = table_rows(lake, table)
        assert rows == clean_ingest.rows[table.name], f"{table.name} differs from the clean run's"
        assert duplicate_keys(rows, table) == [], table.name


@pytest.mark.spark
def test_s3_faults__index_build_and_publish_through_faults_never_point_at_a_missing_build(
    spark: Any, s3_server: S3Server, proxy: FaultProxy, tmp_path: Path
) -> None:
    artifacts = f"s3://{BUCKET}/index/artifacts"
    settings = load_settings(env={"VISEARCH_LANDING": str(tmp_path / "landing"),
                                  "VISEARCH_LAKE": str(tmp_path / "lake"), "VISEARCH_ARTIFACTS": artifacts})
    direct = open_store(artifacts, S3Settings(endpoint=s3_server.endpoint))
    ids = [f"img-{i:04d}" for i in range(500)]
    vectors = clustered(500, 16, seed=4)
    old = make_build(direct, INDEX, f"b-{DAY1}-00000000", ids[:400], vectors[:400], ds=DAY1).build_id
    publish_build(direct, INDEX, old, ds=DAY1)
    direct.write_pointer("models/CHAMPION", "m1")
    write_corpus(spark, settings, ids, vectors, DAY2)

    # build_index: shards from Spark tasks, the manifest from the driver, all through the faults.
    proxy.set_plan(FaultPlan(error_share=0.06, drop_share=0.03, truncate_share=0.03, outage_after=20,
                             outage_seconds=2.0, seed=12))
    env = job_env(settings, {**s3_server.env(), "VISEARCH_S3_ENDPOINT": proxy.endpoint}, tmp_path / "tmp")
    new = run_job("build_index", DAY2, env, tmp_path / "logs", "--mode", "full").result()["build_id"]
    counts = proxy.counts
    assert counts["error"] >= 2 and counts["reset"] >= 1, counts
    assert list_build_ids(direct, INDEX) == sorted([old, new])
    manifest = read_manifest(direct, INDEX, new)
    verify_build(direct, manifest)  # every shard and id map whole, as the manifest says
    extra = set(direct.list(f"indexes/{INDEX}/{new}/")) - set(manifest.object_keys())
    assert extra == {f"indexes/{INDEX}/{new}/manifest.json"}, extra
    assert current_build_id(direct, INDEX) == old

    # Publishing while CURRENT cannot be written: the publish fails, the old build stays live.
    proxy.set_plan(FaultPlan(fail_paths=r"^PUT .*/indexes/main/CURRENT$"))
    impatient = open_store(artifacts, S3Settings(endpoint=proxy.endpoint, max_attempts=2))
    with pytest.raises(ClientError, match=r"SlowDown|InternalError"):
        publish_build(impatient, INDEX, new, ds=DAY2)
    assert current_build_id(direct, INDEX) == old
    assert_serves(direct, old, ids[:400], vectors[:400])

    # The server recovers (but still fails now and then): the publish goes through.
    proxy.set_plan(FaultPlan(error_share=0.1, drop_share=0.05, seed=14))
    publish_build(open_store(artifacts, S3Settings(endpoint=proxy.endpoint)), INDEX, new, ds=DAY2)
    assert current_build_id(direct, INDEX) == new
    assert_serves(direct, new, ids, vectors)
