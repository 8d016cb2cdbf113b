"""visearch.train.train_day on a tiny demo corpus: trains through TorchDistributor, registers, is idempotent, resumes.

The lake is written by hand from the demo's ground truth (silver.images rows for its images,
gold.training_pairs of all three sources with hard negatives), so these tests exercise training
alone; ingest and build_pairs have their own tests.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from jobs import train as train_job
from visearch.core import tables as T
from visearch.core.config import ModelSettings, Settings, TrainSettings, load_settings
from visearch.core.storage import open_store, read_uri
from visearch.demo.corpus import generate_demo
from visearch.train import distributed
from visearch.train.model import build_model
from visearch.train.registry import ModelRegistry
from visearch.train.train_day import run as train_day
from visearch.train.trainer import list_checkpoints

DS = "2026-01-03"  # ordinal 739619: odd, so not a training day for --retrain-every 2
OTHER_ODD_DAY = "2026-01-05"
STEPS = 12


def tiny_settings(root: Path, artifacts: Path, **train: Any) -> Settings:
    """resnet18 with the small stem at 32 px, 32-d embeddings, batches of 8: seconds per step on CPU."""
    base = load_settings(
        env={
            "VISEARCH_LANDING": str(root / "landing"),
            "VISEARCH_LAKE": str(root / "lake"),
            "VISEARCH_ARTIFACTS": str(artifacts),
        }
    )
    knobs: dict[str, Any] = {
        "steps": STEPS,
        "batch_size": 8,
        "lr": 2e-3,
        "checkpoint_every": 4,
        "hard_negatives": 1,
        "num_processes": 1,
        **train,
    }
    return base.replace(
        model=ModelSettings(backbone="resnet18", embed_dim=32, image_size=32, small_stem=True),
        train=TrainSettings(**knobs),
    )


def seed_lake(spark: Any, settings: Settings, landing: Path) -> dict[str, int]:
    """silver.images from the demo truth and the day's pairs; returns the expected usable pairs by source."""
    truth = json.loads((landing / "demo_truth.json").read_text())
    ts = dt.datetime(2026, 1, 1, 9, 0, 0)
    rows = []
    for image_id, info in sorted(truth["images"].items()):
        status = "deleted" if info["deleted"] else "ok"
        rows.append(
            (
                image_id,
                info["uri"],
                info["owner_id"],
                ts,
                [],
                "0" * 64,
                info["width"],
                info["height"],
                info["format"],
                "0" * 16,
                info["private"],
                status,
                "2026-01-01",
            )
        )
    rows.append(
        (
            "gone",
            "file:///nowhere/gone.jpg",
            "o",
            ts,
            [],
            "0" * 64,
            32,
            32,
            "JPEG",
            "0" * 16,
            False,
            "deleted",
            "2026-01-02",
        )
    )
    T.merge(spark, settings, T.SILVER_IMAGES, spark.createDataFrame(rows, T.SILVER_IMAGES.schema))

    usable = sorted(i for i, info in truth["images"].items() if not info["deleted"] and not info["private"])
    pairs: list[tuple[Any, ...]] = [(DS, i, i, "self", 1.0, []) for i in usable]
    groups = [sorted(g for g in members if g in usable) for _, members in sorted(truth["groups"].items())]
    groups = [g for g in groups if len(g) >= 2]
    for k, members in enumerate(groups):
        negatives = groups[(k + 1) % len(groups)][:2]
        pairs += [(DS, members[0], other, "click", 0.6, negatives) for other in members[1:]]
    with (landing / "labels" / "labels.csv").open() as handle:
        pairs += [
            (DS, r["query_image_id"], r["positive_image_id"], "human", float(r["weight"]), [])
            for r in csv.DictReader(handle)
        ]
    pairs.append((DS, usable[0], "gone", "click", 0.9, []))  # positive deleted: dropped by the job
    pairs.append(("2026-01-02", usable[0], usable[1], "click", 1.0, []))  # another day: not read
    df = spark.createDataFrame(pairs, T.GOLD_TRAINING_PAIRS.schema)
    for day in (DS, "2026-01-02"):
        T.replace_partition(spark, settings, T.GOLD_TRAINING_PAIRS, df.where(df.ds == day), f"ds = '{day}'")
    return dict(Counter(p[3] for p in pairs if p[0] == DS and p[2] != "gone"))


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_process() -> Iterator[None]:
    """One torch thread per training process: on a shared 2-core machine two threads spin-wait
    on each other and a step takes ten times longer (torchrun sets this itself for N > 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A 40-image demo corpus at 32 px and a lake holding its images and the day's pairs."""
    root = tmp_path_factory.mktemp("train-corpus")
    generate_demo(root / "landing", images=40, days=1, size=32, seed=0, progress=False)
    settings = tiny_settings(root, root / "unused-artifacts")
    expected = seed_lake(spark, settings, root / "landing")
    return root, expected


@pytest.fixture(scope="module")
def trained(spark: Any, corpus: tuple[Path, dict[str, int]]) -> tuple[Settings, dict[str, Any]]:
    """One training run for DS (retrain every 2 days, DS off cadence, but no model exists yet)."""
    root, _ = corpus
    settings = tiny_settings(root, root / "artifacts")
    result = train_day(settings, DS, spark=spark, retrain_every=2)
    return settings, result


@pytest.mark.spark
@pytest.mark.slow
def test_train__first_model_is_trained_off_cadence_and_registered(
    spark: Any, corpus: tuple[Path, dict[str, int]], trained: tuple[Settings, dict[str, Any]]
) -> None:
    settings, result = trained
    _, expected = corpus
    assert result["trained"] is True and result["reason"] == "no model exists yet"
    registry = ModelRegistry(open_store(settings.artifacts))
    version = result["model_version"]
    assert registry.versions() == [version] and version.startswith(f"v-{DS}-")
    assert registry.champion() is None  # promotion is the evaluate/promote jobs' call
    assert result["steps"] == STEPS and result["world_size"] == 1 and result["images_per_sec"] > 0
    assert result["pairs"] == expected and result["dropped_pairs"] == 1
    config = registry.config(version)
    tables = {
        "gold.training_pairs": T.version(spark, settings, T.GOLD_TRAINING_PAIRS),
        "silver.images": T.version(spark, settings, T.SILVER_IMAGES),
    }
    assert config["training_tables"] == tables == result["training_tables"]
    assert (config["backbone"], config["embed_dim"], config["image_size"], config["small_stem"]) == (
        "resnet18",
        32,
        32,
        True,
    )
    assert config["preprocessing"]["size"] == 32
    assert len(config["losses"]) == STEPS and config["final_loss"] == config["losses"][-1]
    assert config["pairs_by_source"] == expected and config["seed"] == 0
    assert config["hard_negative_slots"] == 1 and config["backend"] == "none"
    # Checkpoints of the day are gone once the model is saved.
    assert open_store(settings.artifacts).list("checkpoints/") == []


@pytest.mark.spark
@pytest.mark.slow
def test_train__loss_goes_down_on_the_demo_corpus(trained: tuple[Settings, dict[str, Any]]) -> None:
    settings, result = trained
    losses = ModelRegistry(open_store(settings.artifacts)).config(result["model_version"])["losses"]
    assert all(np.isfinite(losses))
    first, last = float(np.mean(losses[:3])), float(np.mean(losses[-3:]))
    assert last < first - 0.1, f"loss did not go down: first {first:.3f}, last {last:.3f} ({losses})"


@pytest.mark.spark
@pytest.mark.slow
def test_train__torchscript_export_embeds_like_the_eager_model(
    corpus: tuple[Path, dict[str, int]], trained: tuple[Settings, dict[str, Any]]
) -> None:
    root, _ = corpus
    settings, result = trained
    registry = ModelRegistry(open_store(settings.artifacts))
    eager = registry.load(result["model_version"])
    exported = registry.load_exported(result["model_version"])
    assert not isinstance(exported.model, type(eager.model))  # a ScriptModule, not the repo's class
    truth = json.loads((root / "landing" / "demo_truth.json").read_text())
    images = [read_uri(info["uri"]) for _, info in sorted(truth["images"].items())[:12]]
    a = eager.embed_images(images)  # (12, 32)
    b = exported.embed_images(images)  # (12, 32)
    assert a.shape == (12, 32)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(np.abs(a - b).max()) < 1e-5
    assert float(np.abs(a[0] - a[1]).max()) > 1e-3  # not a constant embedding


@pytest.mark.spark
@pytest.mark.slow
def test_train__rerun_for_the_same_day_returns_the_existing_version(
    spark: Any, trained: tuple[Settings, dict[str, Any]]
) -> None:
    settings, first = trained
    store = open_store(settings.artifacts)
    before = sorted(store.list("models/"))
    again = train_day(settings, DS, spark=spark, retrain_every=1)
    assert again == {"ds": DS, "trained": False, "reason": "exists", "model_version": first["model_version"]}
    assert sorted(store.list("models/")) == before


@pytest.fixture
def registered(tmp_path: Path) -> tuple[Settings, str]:
    """Artifacts holding one model version of DS (an untrained tiny model; no Spark, no lake)."""
    settings = tiny_settings(tmp_path, tmp_path / "artifacts")
    model = build_model(dataclasses.replace(settings.model, small_stem=False))
    version = ModelRegistry(open_store(settings.artifacts)).save(model, config={"ds": DS})
    return settings, version


def test_train__a_day_with_a_version_returns_it_without_reading_or_training(
    registered: tuple[Settings, str],
) -> None:
    settings, version = registered
    store = open_store(settings.artifacts)
    before = sorted(store.list(""))
    # Even on a training day: the version of the day exists. No Spark session is needed to say so.
    again = train_day(settings, DS, spark=None, retrain_every=1)
    assert again == {"ds": DS, "trained": False, "reason": "exists", "model_version": version}
    assert sorted(store.list("")) == before


def test_train__off_cadence_day_is_skipped_once_a_model_exists(registered: tuple[Settings, str]) -> None:
    settings, _ = registered
    skipped = train_day(settings, OTHER_ODD_DAY, spark=None, retrain_every=2)
    assert skipped["trained"] is False and skipped["reason"].startswith("cadence")
    assert skipped["model_version"] is None
    assert len(ModelRegistry(open_store(settings.artifacts)).versions()) == 1


def test_train__cli_skips_off_cadence_and_rejects_a_bad_period(
    registered: tuple[Settings, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, _ = registered
    for name, value in (
        ("LANDING", settings.landing),
        ("LAKE", settings.lake),
        ("ARTIFACTS", settings.artifacts),
    ):
        monkeypatch.setenv(f"VISEARCH_{name}", value)
    assert train_job.main(["--ds", OTHER_ODD_DAY, "--retrain-every", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["job"] == "train" and line["trained"] is False and line["reason"].startswith("cadence")
    assert open_store(settings.artifacts).exists(f"runs/{OTHER_ODD_DAY}/train.json")
    with pytest.raises(SystemExit) as bad:
        train_job.main(["--ds", OTHER_ODD_DAY, "--retrain-every", "0"])
    assert bad.value.code == 2


def test_train__parser_takes_a_positive_period_and_defaults_to_every_day() -> None:
    assert train_job.build_parser().parse_args(["--ds", DS]).retrain_every == 1
    assert train_job.build_parser().parse_args(["--ds", DS, "--retrain-every", "7"]).retrain_every == 7


@pytest.mark.parametrize("value", ["0", "-7", "1.5", "weekly"])
def test_train__parser_refuses_a_period_that_is_not_a_positive_integer(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as bad:
        train_job.build_parser().parse_args(["--ds", DS, "--retrain-every", value])
    assert bad.value.code == 2
    assert f"expected a positive integer, got {value!r}" in capsys.readouterr().err


def test_train__bad_ds_is_refused() -> None:
    with pytest.raises(ValueError, match="ds must be YYYY-MM-DD, got '2026-1-3'"):
        train_day(load_settings(env={}), "2026-1-3")


@pytest.mark.spark
@pytest.mark.slow
def test_train__two_processes_through_torch_distributor_write_a_model(
    spark: Any, corpus: tuple[Path, dict[str, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, expected = corpus
    settings = tiny_settings(root, tmp_path / "artifacts", num_processes=2, steps=4, batch_size=4)
    monkeypatch.setattr(distributed, "INLINE_RECORDS_MAX", 0)  # ship the pairs as a Parquet file
    result = train_day(settings, DS, spark=spark)

    assert result["trained"] is True and result["world_size"] == 2 and result["steps"] == 4
    assert result["pairs"] == expected
    registry = ModelRegistry(open_store(settings.artifacts))
    config = registry.config(result["model_version"])
    assert config["world_size"] == 2 and config["backend"] == "gloo" and config["device"] == "cpu"
    assert len(config["losses"]) == 4 and all(np.isfinite(config["losses"]))
    assert registry.load(result["model_version"]).embed_dim == 32
    assert open_store(settings.artifacts).list("checkpoints/") == []  # checkpoints and pairs file


@pytest.mark.spark
@pytest.mark.slow
def test_train__a_failed_save_resumes_from_the_checkpoints_without_retraining(
    spark: Any, corpus: tuple[Path, dict[str, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = corpus
    settings = tiny_settings(root, tmp_path / "artifacts", steps=4, checkpoint_every=2, batch_size=4)
    store = open_store(settings.artifacts)

    def full_disk(self: ModelRegistry, model: Any, **kwargs: Any) -> str:
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(ModelRegistry, "save", full_disk)
        with pytest.raises(OSError, match="No space left"):
            train_day(settings, DS, spark=spark)
    keys = [k for k in store.list("checkpoints/") if k.endswith(".pt")]
    prefix = keys[0].rsplit("/", 1)[0]
    assert [step for step, _ in list_checkpoints(store, prefix)] == [2, 4]
    assert ModelRegistry(store).versions() == []

    result = train_day(settings, DS, spark=spark)
    assert result["trained"] is True and result["resumed_from"] == 4 and result["steps"] == 4
    assert store.list("checkpoints/") == []
    assert len(ModelRegistry(store).config(result["model_version"])["losses"]) == 4
