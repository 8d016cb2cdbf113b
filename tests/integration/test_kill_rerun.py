"""SIGKILL a job at its worst moment, rerun it: consistent state, nothing lost, nothing doubled.

Each job runs as Airflow runs it (``python -m jobs.<name> --ds …``, in a session of its own) with
``VISEARCH_FAULT_AT`` naming a fault point of :mod:`visearch.core.faults`; the point SIGKILLs the job's
whole process group (driver, Spark JVM, Python workers, torchrun workers). The tests check that
the kill happened where intended (the fault log, and what lies on storage), that no reader can see
anything half-written, and that a rerun ends where an uninterrupted run ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import visearch.index.build as build_index
import visearch.index.publish as publish_index
from tests.support.delta_log import orphan_files
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
    roots,
    table_rows,
    write_corpus,
)
from tests.support.index_builds import make_build
from tests.support.jobproc import job_env, run_job
from visearch.core import faults
from visearch.core import tables as T
from visearch.core.config import Settings, load_settings
from visearch.core.storage import open_store
from visearch.index.manifest import HISTORY_DIR, current_build_id, list_build_ids, read_manifest
from visearch.index.publish import publish_build, read_history
from visearch.ingest import images as ingest_images
from visearch.train.registry import ModelRegistry
from visearch.train.train_day import run as train_day
from visearch.train.trainer import list_checkpoints

pytestmark = [pytest.mark.spark, pytest.mark.slow]



def fault_env(settings: Settings, tmp: Path, at: str, **extra: str) -> dict[str, str]:
    """A job environment with the fault point ``at`` armed and a fault log in ``tmp``."""
    return job_env(settings, {faults.FAULT_ENV: at, faults.LOG_ENV: str(tmp / "faults.log"), **extra}, tmp / "tmp")


def assert_killed_at(run: Any, tmp: Path, where: str) -> None:
    """The job died of SIGKILL, sent by the fault point ``where``."""
    assert run.killed, f"{run.name} was not SIGKILLed (exit {run.returncode}):\n{run.stderr[-3000:]}"
    log = (tmp / "faults.log").read_text() if (tmp / "faults.log").exists() else ""
    assert f"SIGKILL at fault point {where}" in log, f"the fault point did not fire: {log!r}"
    (tmp / "faults.log").unlink()


# ------------------------------------------------------------------------ (a) a Delta write


def test_kill__ingest_killed_mid_delta_write_shows_nothing_and_the_rerun_equals_a_clean_run(
    spark: Any, clean_ingest: CleanIngest, tmp_path: Path
) -> None:
    settings = roots(tmp_path, clean_ingest.landing)
    lake = open_store(settings.lake)
    killed = run_job("ingest_images", DEMO_DS, fault_env(settings, tmp_path, "tables.write:silver.quarantine"),
                     tmp_path / "logs")
    assert_killed_at(killed, tmp_path, "tables.write:silver.quarantine")

    # Mid-write: part files of the day lie in the table's folder, and no commit references them.
    orphans = orphan_files(lake, "silver/quarantine")
    assert len(orphans) >= 2 and all(o.startswith(f"ds={DEMO_DS}/part-") for o in orphans), orphans
    # Nothing half-written is visible: the tables committed before the kill are complete, the one
    # being written shows none of its new rows, to the log and to Delta itself.
    assert table_rows(lake, T.BRONZE_IMAGES_RAW) == clean_ingest.rows["bronze.images_raw"]
    assert table_rows(lake, T.SILVER_IMAGES) == clean_ingest.rows["silver.images"]
    assert table_rows(lake, T.SILVER_QUARANTINE) == []
    assert T.read(spark, settings, T.SILVER_QUARANTINE).count() == 0

    rerun = ingest_images.run(settings, DEMO_DS, spark=spark)
    for key in ("manifest_lines", "bronze_rows", "upserts", "ok", "quarantined"):
        assert rerun[key] == clean_ingest.result[key], key
    for table in INGEST_TABLES:
        rows = table_rows(lake, table)
        assert rows == clean_ingest.rows[table.name], f"{table.name} differs from the clean run's"
        assert duplicate_keys(rows, table) == [], table.name
        assert T.read(spark, settings, table).count() == len(rows), table.name
    # The killed writer's files stay unreferenced: Delta never reads them (VACUUM deletes them).
    assert set(orphans) <= set(orphan_files(lake, "silver/quarantine"))


# ------------------------------------------------------------- (b) shard upload and publish


def test_kill__build_and_publish_killed_before_the_pointer_keep_the_old_build_served(
    spark: Any, tmp_path: Path
) -> None:
    settings = load_settings(env={"VISEARCH_LANDING": str(tmp_path / "landing"),
                                  "VISEARCH_LAKE": str(tmp_path / "lake"),
                                  "VISEARCH_ARTIFACTS": str(tmp_path / "artifacts")})
    store = open_store(settings.artifacts)
    ids = [f"img-{i:04d}" for i in range(500)]
    vectors = clustered(500, 16, seed=3)
    # Day 1's build of 400 images is live (written without Spark: what build_index and publish do).
    old = make_build(store, INDEX, f"b-{DAY1}-00000000", ids[:400], vectors[:400], ds=DAY1).build_id
    publish_build(store, INDEX, old, ds=DAY1)
    store.write_pointer("models/CHAMPION", "m1")

    # Day 2: 100 new images; the full build is killed once a shard is uploaded.
    write_corpus(spark, settings, ids, vectors, DAY2)
    killed = run_job("build_index", DAY2, fault_env(settings, tmp_path, faults.SHARD_UPLOADED_POINT),
                     tmp_path / "logs", "--mode", "full")
    assert_killed_at(killed, tmp_path, faults.SHARD_UPLOADED_POINT)
    folders = {k.split("/")[2] for k in store.list(f"indexes/{INDEX}/") if k.count("/") >= 3} - {HISTORY_DIR}
    assert len(folders - {old}) == 1, folders
    partial = (folders - {old}).pop()
    left = store.list(f"indexes/{INDEX}/{partial}/")
    assert any(k.endswith(".faiss") and "/shard-" in k for k in left), left
    assert not any(k.endswith("manifest.json") for k in left), "the manifest must be written last"
    assert list_build_ids(store, INDEX) == [old]  # an unfinished build is no build
    assert current_build_id(store, INDEX) == old
    assert_serves(store, old, ids[:400], vectors[:400])

    new = build_index.run(settings, DAY2, spark=spark, mode="full")["build_id"]
    assert new == partial  # same inputs, same build id: the rerun rewrote the pieces, whole
    assert current_build_id(store, INDEX) == old  # building is not publishing

    # Publish is killed after validating and recording the event, before CURRENT moves.
    killed = run_job("publish_index", DAY2, fault_env(settings, tmp_path, faults.BEFORE_CURRENT_POINT),
                     tmp_path / "logs")
    assert_killed_at(killed, tmp_path, f"{faults.BEFORE_CURRENT_POINT}:{new}")
    assert read_history(store, INDEX)[-1]["build_id"] == new  # recorded but never live: harmless
    assert current_build_id(store, INDEX) == old
    assert_serves(store, old, ids[:400], vectors[:400])

    result = publish_index.run(settings, DAY2, spark=spark)
    assert result["published"] and result["previous"] == old
    assert current_build_id(store, INDEX) == new
    assert read_manifest(store, INDEX, new).created_ds == DAY2
    assert_serves(store, new, ids, vectors)
    assert_serves(store, old, ids[:400], vectors[:400])  # kept for rollback


# ------------------------------------------------------------------ (c) a training checkpoint


TRAIN_KNOBS = {
    "VISEARCH_MODEL__BACKBONE": "resnet18", "VISEARCH_MODEL__EMBED_DIM": "32", "VISEARCH_MODEL__IMAGE_SIZE": "32",
    "VISEARCH_MODEL__SMALL_STEM": "true", "VISEARCH_TRAIN__STEPS": "3", "VISEARCH_TRAIN__BATCH_SIZE": "8",
    "VISEARCH_TRAIN__CHECKPOINT_EVERY": "1", "VISEARCH_TRAIN__LR": "0.002",
}


def train_settings(lake: Path, landing: Path, artifacts: Path) -> Settings:
    """A tiny resnet18 (small stem, 32 px, 32-d), 3 steps of 8 pairs, a checkpoint after each."""
    return load_settings(env={"VISEARCH_LANDING": str(landing), "VISEARCH_LAKE": str(lake),
                              "VISEARCH_ARTIFACTS": str(artifacts), **TRAIN_KNOBS})


@pytest.fixture
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Any:
    """One thread per training process, here and in the workers (a 2-core machine, shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def test_kill__training_killed_mid_checkpoint_resumes_from_the_last_whole_one(
    spark: Any, clean_ingest: CleanIngest, tmp_path: Path, one_torch_thread: Any
) -> None:
    # The lake: silver.images of the clean ingest and one self-supervised pair per usable image.
    lake, landing = tmp_path / "lake", clean_ingest.landing
    settings = train_settings(lake, landing, tmp_path / "artifacts")
    images = T.read(spark, clean_ingest.settings, T.SILVER_IMAGES)
    T.merge(spark, settings, T.SILVER_IMAGES, images)
    usable = sorted(r["image_id"] for r in images.where("status = 'ok' AND NOT is_private").collect())
    assert len(usable) >= 20
    pairs = spark.createDataFrame([(DAY1, i, i, "self", 1.0, []) for i in usable], T.GOLD_TRAINING_PAIRS.schema)
    T.replace_partition(spark, settings, T.GOLD_TRAINING_PAIRS, pairs, f"ds = '{DAY1}'")

    # Killed during the second checkpoint (step 2), after its first 8 MiB reached the temporary file.
    at = f"{faults.PARTIAL_WRITE_POINT}:checkpoints/{DAY1}/@2"
    killed = run_job("train", DAY1, fault_env(settings, tmp_path, at, **TRAIN_KNOBS), tmp_path / "logs")
    assert_killed_at(killed, tmp_path, f"{faults.PARTIAL_WRITE_POINT}:checkpoints/{DAY1}/")
    store = open_store(settings.artifacts)
    assert ModelRegistry(store).versions() == []
    (prefix,) = {k.rsplit("/", 1)[0] for k in store.list(f"checkpoints/{DAY1}/")}
    assert [step for step, _ in list_checkpoints(store, prefix)] == [1]  # the torn one is not listed
    folder = store.local_path(prefix)
    assert folder is not None
    torn = list(folder.glob(".step-00000002.pt.*.tmp"))
    whole = (folder / "step-00000001.pt").stat().st_size
    assert len(torn) == 1 and 0 < torn[0].stat().st_size < whole, (torn, whole)
    kept = torch.load(folder / "step-00000001.pt", map_location="cpu", weights_only=True)

    rerun = train_day(settings, DAY1, spark=spark)
    assert rerun["trained"] and rerun["resumed_from"] == 1 and rerun["steps"] == 3
    assert store.list("checkpoints/") == []  # the day's checkpoints go once the model is saved
    losses = ModelRegistry(store).config(rerun["model_version"])["losses"]
    # Step 1 comes from the whole checkpoint, steps 2-3 were trained again: none lost, none twice.
    # (That k steps + resume equal N straight steps is visearch.train.trainer's own test.)
    assert len(losses) == 3 and losses[:1] == kept["losses"] and all(np.isfinite(losses))

