"""visearch.embed.embedder: device choice, the per-process model cache, the batch engine and its Arrow side."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image, ImageOps

from visearch.core.config import Settings, load_settings
from visearch.core.storage import open_store, sha256_bytes
from visearch.embed import embedder as E
from visearch.ingest.validation import MISSING_FILE, UNREADABLE
from visearch.train.model import EmbeddingModel
from visearch.train.registry import LoadedModel, ModelRegistry

TOLERANCE = 1e-5


def photo(seed: int, width: int, height: int) -> np.ndarray:
    """A smooth, seeded RGB picture (H, W, 3) uint8 with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
    base = rng.uniform(0, 255, size=3) * (x / width)[..., None] + rng.uniform(0, 255, size=3) * (
        y / height)[..., None]  # (H, W, 3)
    base += 20 * np.sin(x / 3.0)[..., None] + rng.normal(0, 6, size=(height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose artifacts root is shared by the module (saving a model exports TorchScript: slow)."""
    root = tmp_path_factory.mktemp("embedder")
    return load_settings(env={"VISEARCH_LANDING": str(root / "landing"), "VISEARCH_LAKE": str(root / "lake"),
                              "VISEARCH_ARTIFACTS": str(root / "artifacts")})


@pytest.fixture(scope="module")
def registry(artifacts: Settings) -> ModelRegistry:
    return ModelRegistry(open_store(artifacts.artifacts, artifacts.s3))


@pytest.fixture(scope="module")
def version(registry: ModelRegistry) -> str:
    torch.manual_seed(0)
    return registry.save(EmbeddingModel("resnet18", 32, 32, small_stem=True), config={"ds": "2026-01-01"})


@pytest.fixture
def model(artifacts: Settings, version: str) -> Iterator[LoadedModel]:
    E.clear_model_cache()
    yield E.cached_model(artifacts.artifacts, version, "cpu")
    E.clear_model_cache()


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    """Ten images of several sizes and formats."""
    out = []
    for i in range(10):
        array = photo(i, 40 + 7 * i, 48 + 3 * i)
        out.append(encode(array, "PNG") if i % 3 == 0 else encode(array, "JPEG", quality=90))
    return out


# ---------------------------------------------------------------------------------------------
# Devices and threads


@pytest.mark.parametrize(
    ("addresses", "use_gpu", "cuda", "expected"),
    [
        (["1"], True, True, "cuda:1"),  # Spark's assignment wins
        (["0"], False, True, "cuda:0"),  # ... even when settings would not take a GPU by themselves
        (None, True, True, "cuda:0"),
        ([], True, True, "cuda:0"),
        (None, False, True, "cpu"),
        (None, True, False, "cpu"),
    ],
)
def test_device_for_task__spark_gpu_then_settings_then_cpu(
    addresses: list[str] | None, use_gpu: bool, cuda: bool, expected: str
) -> None:
    assert E.device_for_task(addresses, use_gpu=use_gpu, cuda_available=cuda) == expected


def test_device_for_task__assigned_gpu_without_cuda_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CUDA"):
        E.device_for_task(["0"], use_gpu=True, cuda_available=False)
    with pytest.raises(ValueError, match="'gpu-a'"):
        E.device_for_task(["gpu-a"], use_gpu=True, cuda_available=True)


def test_choose_device__outside_spark_is_cpu_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert E.choose_device(use_gpu=True).type == expected
    assert E.choose_device(use_gpu=False).type == "cpu"


@pytest.mark.parametrize(("master", "cores"), [("local", 1), ("local[2]", 2), ("local[*]", 8),
                                               ("local[4, 3]", 4), ("spark://h:7077", None),
                                               ("k8s://https://k", None), ("yarn", None)])
def test_local_cores__of_spark_masters(master: str, cores: int | None) -> None:
    assert E.local_cores(master, cpu_count=8) == cores


def test_local_cores__malformed_local_master_is_an_error() -> None:
    with pytest.raises(ValueError, match="local\\[x\\]"):
        E.local_cores("local[x]", cpu_count=8)


@pytest.mark.parametrize(("cores", "tasks", "threads"),
                         [(2, 2, 1), (2, 1, 2), (8, 3, 2), (2, 40, 1), (16, 4, 4)])
def test_cpu_threads_per_task__splits_cores_between_concurrent_tasks(
    cores: int, tasks: int, threads: int
) -> None:
    assert E.cpu_threads_per_task(cores, tasks) == threads


# ---------------------------------------------------------------------------------------------
# Model cache


def test_cached_model__loads_once_per_process_and_version(
    artifacts: Settings, registry: ModelRegistry, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    E.clear_model_cache()
    loads = E.model_loads()
    first = E.cached_model(artifacts.artifacts, version, "cpu")
    again = E.cached_model(artifacts.artifacts, version, torch.device("cpu"))
    assert again is first
    assert E.model_loads() == loads + 1
    assert first.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # type: ignore[union-attr]

    monkeypatch.setattr(E, "MODEL_CACHE_SIZE", 1)
    torch.manual_seed(1)
    other = registry.save(EmbeddingModel("resnet18", 16, 32, small_stem=True), config={"ds": "2026-01-02"})
    assert E.cached_model(artifacts.artifacts, other, "cpu").embed_dim == 16  # evicts `version`
    assert E.model_loads() == loads + 2
    assert E.cached_model(artifacts.artifacts, version, "cpu") is not first
    assert E.model_loads() == loads + 3
    E.clear_model_cache()


def test_cached_model__cpu_optimised_model_gives_the_eager_embeddings(
    artifacts: Settings, version: str, images: list[bytes]
) -> None:
    from visearch.train.preprocess import preprocess

    E.clear_model_cache()
    eager = E.cached_model(artifacts.artifacts, version, "cpu")
    fast = E.cached_model(artifacts.artifacts, version, "cpu", cpu_optimize=True)
    assert fast is not eager and isinstance(fast.model, torch.jit.ScriptModule)
    assert E.cached_model(artifacts.artifacts, version, "cpu", cpu_optimize=True) is fast  # cached too
    batch = torch.stack([preprocess(b, eager.prep) for b in images])  # (10, 3, 32, 32)
    for rows in (batch[:1], batch[:3], batch):  # the traced batch size (2) is not baked in
        np.testing.assert_allclose(fast.embed_tensors(rows), eager.embed_tensors(rows), atol=1e-5)
    E.clear_model_cache()


def test_cached_model__unknown_version_is_an_error(artifacts: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        E.cached_model(artifacts.artifacts, "nope", "cpu")


# ---------------------------------------------------------------------------------------------
# The engine


def test_engine__equals_the_query_path_in_order(model: LoadedModel, registry: ModelRegistry, version: str,
                                                images: list[bytes]) -> None:
    query = registry.load(version).embed_images(images)  # (N, D), NCHW, one path for queries
    with E.BatchEmbedder(model, batch_size=4, decode_workers=2) as engine:
        ids, vectors, failures = engine.embed_all(E.EmbedItem(str(i), data) for i, data in enumerate(images))
    assert ids == [str(i) for i in range(len(images))]
    assert failures == []
    np.testing.assert_allclose(vectors, query, atol=TOLERANCE, rtol=0)
    assert engine.stats.batches == 3 and engine.stats.images == 10


@pytest.mark.parametrize(("prefetch", "workers"), [(0, 1), (3, 3)])
def test_engine__any_prefetch_depth_gives_the_query_path_vectors(
    model: LoadedModel, registry: ModelRegistry, version: str, images: list[bytes],
    prefetch: int, workers: int,
) -> None:
    reference = registry.load(version).embed_images(images)  # (N, D)
    items = [E.EmbedItem(str(i), data) for i, data in enumerate(images)]
    with E.BatchEmbedder(model, batch_size=3, prefetch_batches=prefetch, decode_workers=workers) as engine:
        _, vectors, _ = engine.embed_all(items)
    np.testing.assert_allclose(vectors, reference, atol=TOLERANCE, rtol=0)


def test_engine__decodes_ahead_of_the_batch_being_embedded(model: LoadedModel, images: list[bytes]) -> None:
    pulled = 0

    def source() -> Iterator[E.EmbedItem]:
        nonlocal pulled
        for i in range(20):
            pulled += 1
            yield E.EmbedItem(str(i), images[i % len(images)])

    with E.BatchEmbedder(model, batch_size=3, prefetch_batches=2) as engine:
        stream = engine.embed(source())
        first = next(stream)
        # The yielded batch, the two prefetched ones and the one queued when it was taken.
        assert len(first.image_ids) == 3
        assert pulled == 3 * (1 + 2 + 1)
        rest = list(stream)
    assert [len(b.image_ids) for b in rest] == [3, 3, 3, 3, 3, 2]


def test_engine__bad_images_come_back_as_failures_and_the_rest_is_embedded(
    model: LoadedModel, images: list[bytes], tmp_path: Path
) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(images[1])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images[1][: len(images[1]) // 3])
    items = [
        E.EmbedItem("good", good.as_uri(), sha256_bytes(images[1])),
        E.EmbedItem("garbage", b"not an image at all"),
        E.EmbedItem("truncated", broken.as_uri()),
        E.EmbedItem("missing", (tmp_path / "gone.jpg").as_uri()),
        E.EmbedItem("ftp", "ftp://host/picture.jpg"),
        E.EmbedItem("changed", good.as_uri(), sha256_bytes(images[2])),
        E.EmbedItem("bytes", images[3]),
    ]
    with E.BatchEmbedder(model, batch_size=4) as engine:
        ids, vectors, failures = engine.embed_all(items)
    assert ids == ["good", "bytes"]
    assert vectors.shape == (2, 32)
    reasons = {f.image_id: f.reason for f in failures}
    assert reasons == {"garbage": E.DECODE_ERROR, "truncated": E.DECODE_ERROR, "missing": MISSING_FILE,
                       "ftp": UNREADABLE, "changed": E.CONTENT_CHANGED}
    details = {f.image_id: f.detail for f in failures}
    assert "gone.jpg" in details["missing"]
    assert sha256_bytes(images[1]) in details["changed"]
    np.testing.assert_allclose(vectors[0], model.embed_images([images[1]])[0], atol=TOLERANCE, rtol=0)
    assert engine.stats.failed == 5


def test_engine__a_batch_of_only_failures_yields_no_vectors(model: LoadedModel) -> None:
    with E.BatchEmbedder(model, batch_size=2) as engine:
        batches = list(engine.embed([E.EmbedItem("a", b"x"), E.EmbedItem("b", b"y")]))
    assert len(batches) == 1
    assert batches[0].embeddings.shape == (0, 32)
    assert [f.reason for f in batches[0].failures] == [E.DECODE_ERROR, E.DECODE_ERROR]


@pytest.mark.parametrize("orientation", [1, 6])
def test_engine__crop_box_equals_the_pre_cropped_file(model: LoadedModel, orientation: int) -> None:
    array = photo(7, 96, 80)
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = encode(array, "JPEG", quality=92, exif=exif.tobytes())
    oriented = ImageOps.exif_transpose(Image.open(io.BytesIO(source)))  # full decode, as displayed
    assert oriented is not None
    box = (10, 8, 48, 40)  # (x, y, w, h) in the oriented image
    cropped = oriented.convert("RGB").crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))
    buffer = io.BytesIO()
    cropped.save(buffer, "PNG")  # lossless
    with E.BatchEmbedder(model, batch_size=4) as engine:
        _, vectors, failures = engine.embed_all([E.EmbedItem("crop", source, crop=box),
                                                 E.EmbedItem("file", buffer.getvalue()),
                                                 E.EmbedItem("whole", source)])
    assert failures == []
    np.testing.assert_allclose(vectors[0], vectors[1], atol=TOLERANCE, rtol=0)
    assert float(np.abs(vectors[0] - vectors[2]).max()) > 1e-3  # the crop is not the whole image


def test_engine__invalid_crop_box_raises(model: LoadedModel, images: list[bytes]) -> None:
    with E.BatchEmbedder(model) as engine, pytest.raises(ValueError, match="outside"):
        engine.embed_all([E.EmbedItem("x", images[1], crop=(0, 0, 500, 500))])


def test_engine__rejects_bad_sizes(model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        E.BatchEmbedder(model, batch_size=0)
    with pytest.raises(ValueError, match="decode_workers"):
        E.BatchEmbedder(model, decode_workers=0)


# ---------------------------------------------------------------------------------------------
# The Arrow (Spark executor) side


def test_embed_arrow__rows_out_match_rows_in_with_null_vectors_for_failures(
    artifacts: Settings, version: str, images: list[bytes], tmp_path: Path
) -> None:
    uris, shas = [], []
    for i, data in enumerate(images[:5]):
        path = tmp_path / f"{i}.img"
        path.write_bytes(data)
        uris.append(path.as_uri())
        shas.append(sha256_bytes(data))
    uris.append((tmp_path / "missing.jpg").as_uri())
    shas.append("0" * 64)
    ids = [f"id-{i}" for i in range(len(uris))]
    batch = pa.RecordBatch.from_pydict({"image_id": ids, "uri": uris, "sha256": shas})
    task = E.EmbedTask(settings_json=artifacts.to_json(), model_version=version, batch_size=4, cpu_threads=1)
    E.clear_model_cache()
    loads = E.model_loads()
    out = pa.Table.from_batches(list(E.embed_arrow(iter([batch.slice(0, 3), batch.slice(3)]), task)))
    again = pa.Table.from_batches(list(E.embed_arrow(iter([batch]), task)))
    assert E.model_loads() == loads + 1  # two tasks in one worker process: one load
    E.clear_model_cache()

    assert out.schema == E._result_schema()
    rows = {r["image_id"]: r for r in out.to_pylist()}
    assert set(rows) == set(ids)
    assert rows["id-5"]["embedding"] is None and rows["id-5"]["reason"] == MISSING_FILE
    assert all(rows[i]["reason"] is None and rows[i]["device"] == "cpu" for i in ids[:5])
    assert [rows[i]["sha256"] for i in ids] == shas
    vectors = np.array([rows[i]["embedding"] for i in ids[:5]], dtype=np.float32)  # (5, D)
    reference = ModelRegistry(open_store(artifacts.artifacts)).load(version).embed_images(images[:5])
    np.testing.assert_allclose(vectors, reference, atol=TOLERANCE, rtol=0)
    assert again.num_rows == out.num_rows
