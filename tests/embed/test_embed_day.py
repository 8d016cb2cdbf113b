"""visearch.embed.embed_day (and the jobs.embed command) on a two-day demo corpus with a tiny model:
incremental, idempotent, exact.

The world is built once per module and grown by a chain of fixtures, one Spark job at a time:

- ``day1``: demo corpus (40 images over 2 days, 32 px), day 1 ingested, a random-init ResNet-18
  (small stem, 32 px, 32-d) saved and promoted; then, after ingest, one image file is overwritten
  with garbage, one is deleted and one is replaced by another valid image; embed day 1.
- ``day2``: ingest day 2 (new uploads, a delete, a replacement under a new URI), embed day 2.
- ``new_champion``: a second model promoted, embed day 2 again.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from jobs import embed as embed_job
from jobs import ingest_images
from visearch.core import tables as T
from visearch.core.config import Settings, load_settings
from visearch.core.storage import open_store, read_uri
from visearch.demo.corpus import generate_demo
from visearch.embed import embed_day
from visearch.embed.embedder import CONTENT_CHANGED, DECODE_ERROR
from visearch.ingest.validation import MISSING_FILE
from visearch.train.model import EmbeddingModel
from visearch.train.registry import ModelRegistry

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DAY1, DAY2 = "2026-01-01", "2026-01-02"
TOLERANCE = 1e-5


@dataclass
class World:
    settings: Settings
    root: Path
    truth: dict[str, Any]
    registry: ModelRegistry
    v1: str
    broken: dict[str, str] = field(default_factory=dict)  # image_id -> expected reason
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, tuple[np.ndarray, str, str]]] = field(default_factory=dict)


def save_model(registry: ModelRegistry, seed: int) -> str:
    torch.manual_seed(seed)
    model = EmbeddingModel("resnet18", embed_dim=32, image_size=32, small_stem=True)
    return registry.save(model, config={"ds": DAY1, "seed": seed})


def gold(spark: Any, settings: Settings, version: str) -> dict[str, tuple[np.ndarray, str, str]]:
    """image_id -> (embedding, sha256, ds) of one model version."""
    rows = T.read(spark, settings, T.GOLD_EMBEDDINGS).where(f"model_version = '{version}'").collect()
    return {r["image_id"]: (np.asarray(r["embedding"], dtype=np.float32), r["sha256"], r["ds"]) for r in rows}


def silver(spark: Any, settings: Settings) -> dict[str, dict[str, Any]]:
    return {r["image_id"]: r.asDict() for r in T.read(spark, settings, T.SILVER_IMAGES).collect()}


def embed_quarantine(spark: Any, settings: Settings, ds: str) -> dict[str, str]:
    rows = T.read(spark, settings, T.SILVER_QUARANTINE).where(f"ds = '{ds}' AND source = 'embed'").collect()
    return {r["record_id"]: r["reason"] for r in rows}


def ok_ids(spark: Any, settings: Settings) -> set[str]:
    return {i for i, r in silver(spark, settings).items() if r["status"] == "ok"}


def local_path(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri[len("file://"):])


@pytest.fixture(scope="module")
def day1(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("embed-job")
    settings = load_settings(env={"VISEARCH_LANDING": str(root / "landing"),
                                  "VISEARCH_LAKE": str(root / "lake"),
                                  "VISEARCH_ARTIFACTS": str(root / "artifacts")})
    generate_demo(settings.landing, images=40, days=2, size=32, progress=False)
    truth = json.loads((root / "landing" / "demo_truth.json").read_text())
    ingest_images.run(settings, DAY1, spark=spark)
    registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
    v1 = save_model(registry, seed=0)
    registry.set_champion(v1)
    world = World(settings, root, truth, registry, v1)

    # Break three day-1 JPEGs after ingest validated them (never the ones day 2 touches).
    rows = silver(spark, settings)
    touched = {i for i, t in truth["images"].items() if len(t["history"]) > 1}
    plain = sorted(i for i, r in rows.items() if r["status"] == "ok" and r["format"] == "JPEG"
                   and i not in touched and truth["images"][i]["unusual"] is None)
    garbage, missing, swapped = plain[:3]
    local_path(rows[garbage]["uri"]).write_bytes(b"this is not a JPEG any more" * 10)
    local_path(rows[missing]["uri"]).unlink()
    other = Image.new("RGB", (32, 32), (200, 30, 30))
    buffer = io.BytesIO()
    other.save(buffer, "JPEG")
    local_path(rows[swapped]["uri"]).write_bytes(buffer.getvalue())
    world.broken = {garbage: DECODE_ERROR, missing: MISSING_FILE, swapped: CONTENT_CHANGED}

    world.results["day1"] = embed_day.run(settings, DAY1, spark=spark)
    world.snapshots["day1"] = gold(spark, settings, v1)
    return world


@pytest.fixture(scope="module")
def day2(spark: Any, day1: World) -> World:
    ingest_images.run(day1.settings, DAY2, spark=spark)
    day1.results["day2"] = embed_day.run(day1.settings, DAY2, spark=spark)
    day1.snapshots["day2"] = gold(spark, day1.settings, day1.v1)
    return day1


@pytest.fixture(scope="module")
def new_champion(spark: Any, day2: World) -> tuple[World, str]:
    v2 = save_model(day2.registry, seed=1)
    assert v2 != day2.v1
    day2.registry.set_champion(v2)
    day2.results["v2"] = embed_day.run(day2.settings, DAY2, spark=spark)
    return day2, v2


def test_embed__first_run_embeds_every_ok_image_and_quarantines_broken_files(spark: Any, day1: World) -> None:
    result = day1.results["day1"]
    expected = ok_ids(spark, day1.settings) - set(day1.broken)
    assert result["model_version"] == day1.v1
    assert result["candidates"] == len(expected) + len(day1.broken)
    assert result["embedded"] == len(expected)
    assert result["failed"] == len(day1.broken)
    assert result["deleted"] == 0
    assert result["devices"] == ["cpu"]
    assert result["images_per_sec"] > 0
    assert set(day1.snapshots["day1"]) == expected
    assert embed_quarantine(spark, day1.settings, DAY1) == day1.broken
    assert result["quarantined"] == {reason: 1 for reason in day1.broken.values()}


def test_embed__rows_are_unit_vectors_with_the_silver_sha256(spark: Any, day1: World) -> None:
    rows = silver(spark, day1.settings)
    for image_id, (vector, sha, ds) in day1.snapshots["day1"].items():
        assert vector.shape == (32,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
        assert sha == rows[image_id]["sha256"]
        assert ds == DAY1


def test_embed__job_equals_exported_model_and_query_path(spark: Any, day1: World) -> None:
    rows = silver(spark, day1.settings)
    ids = sorted(day1.snapshots["day1"])
    data = [read_uri(rows[i]["uri"]) for i in ids]
    job = np.stack([day1.snapshots["day1"][i][0] for i in ids])  # (N, D)
    query = day1.registry.load(day1.v1).embed_images(data, batch_size=5)  # (N, D)
    exported = day1.registry.load_exported(day1.v1).embed_images(data, batch_size=7)  # (N, D)
    formats = {rows[i]["format"] for i in ids}
    assert {"JPEG", "PNG", "GIF"} <= formats  # 16-bit PNG, animated GIF, EXIF-rotated JPEG among them
    np.testing.assert_allclose(job, query, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(job, exported, atol=TOLERANCE, rtol=0)
    assert float(np.abs(job[0] - job[1]).max()) > 1e-3  # different images, different vectors


def test_embed__rerun_of_the_same_day_changes_nothing(spark: Any, day1: World) -> None:
    version_before = T.version(spark, day1.settings, T.GOLD_EMBEDDINGS)
    result = embed_day.run(day1.settings, DAY1, spark=spark)
    assert result["embedded"] == 0
    assert result["deleted"] == 0
    assert result["candidates"] == len(day1.broken)  # only the broken ones are tried again
    assert T.version(spark, day1.settings, T.GOLD_EMBEDDINGS) == version_before
    after = gold(spark, day1.settings, day1.v1)
    assert after.keys() == day1.snapshots["day1"].keys()
    for image_id, (vector, sha, ds) in after.items():
        before = day1.snapshots["day1"][image_id]
        assert np.array_equal(vector, before[0]) and (sha, ds) == before[1:]
    assert embed_quarantine(spark, day1.settings, DAY1) == day1.broken


def test_embed__next_day_adds_only_its_uploads_drops_deleted_and_reembeds_replaced(
    spark: Any, day2: World
) -> None:
    before, after = day2.snapshots["day1"], day2.snapshots["day2"]
    rows = silver(spark, day2.settings)
    day2_uploads = {i for i, t in day2.truth["images"].items() if t["ds"] == DAY2}
    expected_new = {i for i in day2_uploads if rows.get(i, {}).get("status") == "ok"}
    deleted = {i for i, t in day2.truth["images"].items() if t["deleted"]}
    replaced = {i for i, t in day2.truth["images"].items() if t["replaced_ds"] == DAY2}
    assert expected_new and deleted and replaced

    assert set(after) - set(before) == expected_new
    assert deleted <= set(before) and not deleted & set(after)
    result = day2.results["day2"]
    assert result["embedded"] == len(expected_new) + len(replaced)
    assert result["deleted"] == len(deleted)
    assert result["failed"] == len(day2.broken)  # still broken, tried again, quarantined again
    assert embed_quarantine(spark, day2.settings, DAY2) == day2.broken
    for image_id in replaced:
        assert after[image_id][1] == rows[image_id]["sha256"] != before[image_id][1]
        assert after[image_id][2] == DAY2
        assert float(np.abs(after[image_id][0] - before[image_id][0]).max()) > 1e-3
    for image_id in set(before) - deleted - replaced:  # untouched rows stay as they were
        assert np.array_equal(after[image_id][0], before[image_id][0])
        assert after[image_id][2] == DAY1


@pytest.mark.parametrize("extra", [[], ["--model-version", "CHAMPION"]], ids=["default", "champion"])
def test_embed__cli_rerun_of_the_next_day_embeds_nothing(
    spark: Any, day2: World, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    config = day2.root / "settings.yaml"
    config.write_text(f"landing: {day2.settings.landing}\nlake: {day2.settings.lake}\n"
                      f"artifacts: {day2.settings.artifacts}\n")
    assert embed_job.main(["--ds", DAY2, "--config", str(config), *extra]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["job"] == "embed"
    assert (printed["embedded"], printed["deleted"], printed["model_version"]) == (0, 0, day2.v1)
    assert gold(spark, day2.settings, day2.v1).keys() == day2.snapshots["day2"].keys()


def test_embed__new_champion_reembeds_everything_and_keeps_the_old_version(
    spark: Any, new_champion: tuple[World, str]
) -> None:
    world, v2 = new_champion
    result = world.results["v2"]
    expected = ok_ids(spark, world.settings) - set(world.broken)
    assert result["model_version"] == v2
    assert result["embedded"] == len(expected)
    new_rows = gold(spark, world.settings, v2)
    assert set(new_rows) == expected
    old_rows = gold(spark, world.settings, world.v1)
    assert old_rows.keys() == world.snapshots["day2"].keys()  # the old version's partition untouched
    some = sorted(expected)[0]
    assert float(np.abs(new_rows[some][0] - old_rows[some][0]).max()) > 1e-3


def test_embed__full_rerun_of_a_version_replaces_its_partition_with_the_same_vectors(
    spark: Any, new_champion: tuple[World, str]
) -> None:
    world, _ = new_champion
    result = embed_day.run(world.settings, DAY2, spark=spark, model_version=world.v1, full=True)
    before = world.snapshots["day2"]
    assert result["full"] is True
    assert result["embedded"] == len(before)
    assert result["deleted"] == 0
    after = gold(spark, world.settings, world.v1)
    assert after.keys() == before.keys()
    for image_id, (vector, sha, _ds) in after.items():
        np.testing.assert_allclose(vector, before[image_id][0], atol=TOLERANCE, rtol=0)
        assert sha == before[image_id][1]


def test_embed__unknown_model_version_fails_before_any_work(spark: Any, day1: World) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-version"):
        embed_day.run(day1.settings, DAY1, spark=spark, model_version="no-such-version")


@pytest.mark.parametrize("model_version", [None, "CHAMPION"])
def test_embed__without_a_champion_fails_loudly(spark: Any, settings: Settings, model_version: str | None) -> None:
    with pytest.raises(ValueError, match="no champion"):
        embed_day.run(settings, DAY1, spark=spark, model_version=model_version)
