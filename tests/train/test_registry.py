"""Model registry: versions, config.json, checksums, TorchScript export equal to eager, champion."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visearch.core.storage import ObjectStore, open_store
from visearch.train.model import EmbeddingModel
from visearch.train.preprocess import Preprocessing, preprocess
from visearch.train.registry import (
    CHAMPION,
    CHAMPION_KEY,
    ModelRegistry,
    NoChampionError,
    UnknownVersionError,
)

torch.set_num_threads(1)

SIZE = 32
CONFIG = {
    "ds": "2026-11-24",
    "steps": 4,
    "final_loss": 1.25,
    "training_tables": {"gold.training_pairs": 7, "silver.images": 3},
}


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    torch.manual_seed(0)
    built = EmbeddingModel("resnet18", embed_dim=16, image_size=SIZE, prep=Preprocessing(size=SIZE))
    built.train()
    with torch.no_grad():  # a few train-mode passes give BatchNorm non-trivial running stats
        for _ in range(2):
            built(torch.randn(8, 3, SIZE, SIZE))
    return built


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_store("file://" + str(tmp_path / "artifacts"))


def png(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, size=(size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).resize(size, Image.Resampling.NEAREST).save(buf, "PNG")
    return buf.getvalue()


def test_save__writes_files_and_a_self_describing_config(model: EmbeddingModel, store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    version = registry.save(model, config=CONFIG)
    assert re.fullmatch(r"v-2026-11-24-[0-9a-f]{8}", version)
    for name in ("model.pt", "model.torchscript.pt", "config.json"):
        assert store.exists(f"models/{version}/{name}")
    config = json.loads(store.get_text(f"models/{version}/config.json"))
    assert config["backbone"] == "resnet18" and config["embed_dim"] == 16 and config["small_stem"] is False
    assert config["preprocessing"] == {
        "size": SIZE,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert config["training_tables"] == {"gold.training_pairs": 7, "silver.images": 3}
    assert config["steps"] == 4 and config["final_loss"] == 1.25 and config["created_ds"] == "2026-11-24"
    assert config["git_sha"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", config["git_sha"])
    assert set(config["files"]) == {"model.pt", "model.torchscript.pt"}
    assert model.training  # the caller's model is left as it was


def test_save__version_is_deterministic_for_the_same_inputs(
    model: EmbeddingModel, store: ObjectStore
) -> None:
    registry = ModelRegistry(store)
    first = registry.save(model, config=CONFIG)
    assert registry.save(model, config=dict(CONFIG)) == first
    assert registry.save(model, config={**CONFIG, "steps": 5}) != first
    assert registry.save(model, config={**CONFIG, "ds": "2026-11-25"}).startswith("v-2026-11-25-")
    assert registry.versions() == sorted(registry.versions()) and len(registry.versions()) == 3


def test_save__wall_clock_timings_do_not_change_the_version(model: EmbeddingModel, store: ObjectStore) -> None:
    """A rerun on the same data and seed (a backfill, a retried task) names the same version."""
    registry = ModelRegistry(store)
    first = registry.save(model, config={**CONFIG, "images_per_sec": 204.5, "train_seconds": 4.69})
    again = registry.save(model, config={**CONFIG, "images_per_sec": 207.2, "train_seconds": 4.63})
    assert again == first
    assert registry.config(first)["images_per_sec"] == 204.5  # recorded, just not hashed


def test_load__gives_the_same_embeddings_as_the_saved_model(
    model: EmbeddingModel, store: ObjectStore
) -> None:
    registry = ModelRegistry(store)
    version = registry.save(model, config=CONFIG)
    loaded = registry.load(version)
    assert not loaded.model.training and loaded.version == version and loaded.prep.size == SIZE
    x = torch.randn(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    model.eval()
    try:
        with torch.inference_mode():
            expected = model(x).numpy()
    finally:
        model.train()
    got = loaded.embed_tensors(x)
    assert got.dtype == np.float32 and got.shape == (5, 16)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_load_exported__torchscript_equals_eager(model: EmbeddingModel, store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    version = registry.save(model, config=CONFIG)
    eager, exported = registry.load(version), registry.load_exported(version)
    assert isinstance(exported.model, torch.jit.ScriptModule)
    images = [png(i) for i in range(5)]
    crops = [None, (4, 4, 20, 20), None, (0, 8, 48, 24), None]
    a = eager.embed_images(images, crops=crops, batch_size=2)
    b = exported.embed_images(images, crops=crops, batch_size=2)
    assert a.shape == (5, 16)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def test_embed_images__crop_equals_the_precropped_image(model: EmbeddingModel, store: ObjectStore) -> None:
    loaded = ModelRegistry(store).load(ModelRegistry(store).save(model, config=CONFIG))
    full = png(7, size=(64, 48))
    precropped = io.BytesIO()
    Image.open(io.BytesIO(full)).crop((8, 4, 40, 36)).save(precropped, "PNG")
    by_crop = loaded.embed_images([full], crops=[(8, 4, 32, 32)])
    by_file = loaded.embed_images([precropped.getvalue()])
    np.testing.assert_allclose(by_crop, by_file, atol=1e-6)
    single = loaded.embed_tensors(preprocess(full, loaded.prep, (8, 4, 32, 32))[None])  # (1, 3, S, S)
    np.testing.assert_allclose(by_crop, single, atol=1e-6)
    assert loaded.embed_images([]).shape == (0, 16)
    with pytest.raises(ValueError, match="2 crops for 1 images"):
        loaded.embed_images([full], crops=[None, None])
    with pytest.raises(ValueError, match=r"expected a batch \(N, 3, 32, 32\)"):
        loaded.embed_tensors(torch.zeros(1, 3, 16, 16))


def test_champion__points_at_complete_versions_only(model: EmbeddingModel, store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    assert registry.champion() is None and registry.versions() == []
    store.put_bytes("models/v-2026-11-23-deadbeef/model.pt", b"half-written")  # no config.json yet
    assert registry.versions() == []
    with pytest.raises(ValueError, match="no such complete model version"):
        registry.set_champion("v-2026-11-23-deadbeef")
    version = registry.save(model, config=CONFIG)
    registry.set_champion(version)
    assert registry.champion() == version and store.get_text(CHAMPION_KEY).strip() == version
    with pytest.raises(FileNotFoundError, match="v-2026-11-23-deadbeef"):
        registry.load("v-2026-11-23-deadbeef")


def complete(store: ObjectStore, *versions: str) -> None:
    """Versions the registry lists as complete (pointer and record logic only: no weights needed)."""
    for version in versions:
        store.put_text(f"models/{version}/config.json", json.dumps({"ds": version[2:12]}))


def test_resolve__none_and_champion_mean_the_promoted_version(store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    complete(store, "v-2026-01-01-aaaaaaaa", "v-2026-01-02-bbbbbbbb")
    for name in (None, CHAMPION):
        with pytest.raises(NoChampionError, match=r"no champion: .*models/CHAMPION is not set"):
            registry.resolve(name)
    registry.set_champion("v-2026-01-01-aaaaaaaa")
    assert registry.resolve(None) == registry.resolve(CHAMPION) == "v-2026-01-01-aaaaaaaa"
    assert registry.resolve("v-2026-01-02-bbbbbbbb") == "v-2026-01-02-bbbbbbbb"  # a named version as it is


def test_resolve__missing_or_invalid_version_raises(store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    store.put_bytes("models/v-2026-01-01-deadbeef/model.pt", b"half-written")  # incomplete: no config.json
    for missing in ("v-2026-01-01-deadbeef", "no-such-version"):
        with pytest.raises(UnknownVersionError, match=missing):
            registry.resolve(missing)
    with pytest.raises(ValueError, match="invalid model version"):
        registry.resolve("../escape")


def test_resolve__errors_are_also_the_errors_callers_caught_before() -> None:
    # No champion: a LookupError, and the ValueError the jobs raised; unknown: FileNotFoundError too.
    assert issubclass(NoChampionError, LookupError) and issubclass(NoChampionError, ValueError)
    assert issubclass(UnknownVersionError, FileNotFoundError) and issubclass(UnknownVersionError, ValueError)


def test_newest_of_day__last_complete_version_of_that_day_only(store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    assert registry.newest_of_day("2026-01-02") is None
    complete(store, "v-2026-01-01-ffffffff", "v-2026-01-02-00ab12cd", "v-2026-01-02-9a000000", "hand-named")
    store.put_bytes("models/v-2026-01-02-ffffffff/model.pt", b"half-written")  # not complete: not listed
    assert registry.newest_of_day("2026-01-02") == "v-2026-01-02-9a000000"
    assert registry.newest_of_day("2026-01-01") == "v-2026-01-01-ffffffff"
    assert registry.newest_of_day("2026-01-03") is None


def test_promotion_record__round_trips_beside_the_version(store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    version = "v-2026-01-02-bbbbbbbb"
    complete(store, version)
    assert registry.promotion_record(version) is None
    record = {"promote": True, "reason": "beats every baseline", "champion_version": None,
              "baseline_ndcg10": {"random_init": 0.2}}
    uri = registry.write_promotion_record(version, record)
    assert uri == registry.promotion_record_uri(version) == store.uri(f"models/{version}/promotion.json")
    assert registry.promotion_record(version) == record
    assert registry.versions() == [version]  # a record does not make or hide a version
    with pytest.raises(ValueError, match="invalid model version"):
        registry.write_promotion_record(CHAMPION, record)


def test_save__rejects_bad_configs(model: EmbeddingModel, store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    with pytest.raises(ValueError, match="'ds'"):
        registry.save(model, config={"steps": 1})
    with pytest.raises(ValueError, match="backbone='resnet50'"):
        registry.save(model, config={**CONFIG, "backbone": "resnet50"})
    with pytest.raises(ValueError, match="invalid model version"):
        registry.save(model, config=CONFIG, version="../escape")
    with pytest.raises(ValueError, match="EmbeddingModel"):
        registry.save(torch.nn.Linear(2, 2), config=CONFIG)


def test_load__refuses_a_tampered_file(model: EmbeddingModel, store: ObjectStore) -> None:
    registry = ModelRegistry(store)
    version = registry.save(model, config=CONFIG)
    data = bytearray(store.get_bytes(f"models/{version}/model.pt"))
    data[-1] ^= 0xFF
    store.put_bytes(f"models/{version}/model.pt", bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        registry.load(version)


@pytest.mark.slow
def test_load_exported__runs_in_a_process_without_the_repository(
    model: EmbeddingModel, store: ObjectStore, tmp_path: Path
) -> None:
    registry = ModelRegistry(store)
    version = registry.save(model, config=CONFIG)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'visearch']\n"
        f"m = torch.jit.load({str(store.local_path(f'models/{version}/model.torchscript.pt'))!r})\n"
        f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'visearch']\n"
    )
    subprocess.run([sys.executable, "-I", "-c", script], check=True, cwd=tmp_path, timeout=600)
    got = torch.load(tmp_path / "y.pt", weights_only=True)
    np.testing.assert_allclose(got.detach().numpy(), registry.load(version).embed_tensors(x), atol=1e-5)


@pytest.mark.s3
def test_registry__round_trips_through_s3(model: EmbeddingModel, s3_server: object) -> None:
    s3_server.create_bucket("models-test")  # type: ignore[attr-defined]
    registry = ModelRegistry(open_store("s3://models-test/artifacts"))
    version = registry.save(model, config=CONFIG)
    registry.set_champion(version)
    assert registry.champion() == version and registry.versions() == [version]
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(
        registry.load(version).embed_tensors(x), registry.load_exported(version).embed_tensors(x), atol=1e-5
    )
