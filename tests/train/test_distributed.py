"""The distributed-training glue: world parsing, pair assembly, the spec, a direct worker run."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visearch.core.config import ModelSettings, Settings, TrainSettings, load_settings
from visearch.core.storage import open_store
from visearch.train.distributed import (
    PairRow,
    TrainSpec,
    WorkerOutput,
    World,
    assemble_records,
    backend_for,
    device_for,
    leave_worker,
    make_spec,
    records_digest,
    records_from_parquet,
    records_to_parquet,
    run_id,
    train_worker,
    world_from_env,
)
from visearch.train.trainer import PairRecord, TrainConfig, list_checkpoints

# ------------------------------------------------------------------------------------ world


def test_world_from_env__no_torchrun_variables_is_a_single_process() -> None:
    assert world_from_env({}) == World(rank=0, local_rank=0, world_size=1)
    assert not world_from_env({}).distributed


def test_world_from_env__reads_what_torchrun_sets() -> None:
    env = {
        "RANK": "3",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "4",
        "MASTER_ADDR": "10.0.0.2",
        "MASTER_PORT": "29500",
    }
    world = world_from_env(env)
    assert world == World(rank=3, local_rank=1, world_size=4, master_addr="10.0.0.2", master_port=29500)
    assert world.distributed and not world.is_main


def test_world_from_env__local_rank_defaults_to_rank() -> None:
    env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "1234"}
    assert world_from_env(env).local_rank == 1


def test_world_from_env__world_of_one_needs_no_master() -> None:
    assert world_from_env({"WORLD_SIZE": "1"}) == World()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be >= 1, got 0"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK 2 is outside"),
        ({"WORLD_SIZE": "2", "RANK": "-1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK -1 is outside"),
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK is not set"),
        ({"RANK": "1"}, "RANK='1' is set but WORLD_SIZE is not"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "1"}, "MASTER_ADDR is not set"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h"}, "MASTER_PORT must be a port number"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, "got 70000"),
        (
            {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-3", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "LOCAL_RANK must be >= 0, got -3",
        ),
    ],
)
def test_world_from_env__bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        world_from_env(env)


def test_backend_and_device__gloo_on_cpu_nccl_with_one_gpu_per_local_rank() -> None:
    assert backend_for(use_gpu=False) == "gloo"
    assert backend_for(use_gpu=True) == "nccl"
    assert device_for(World(rank=5, local_rank=1, world_size=8), use_gpu=True, cuda_devices=2) == "cuda:1"
    assert device_for(World(rank=5, local_rank=1, world_size=8), use_gpu=False, cuda_devices=2) == "cpu"
    with pytest.raises(ValueError, match="local rank 2 has no GPU"):
        device_for(World(rank=2, local_rank=2, world_size=3), use_gpu=True, cuda_devices=2)


def _output() -> WorkerOutput:
    return WorkerOutput(state_dict={}, losses=[1.0], result={}, world_size=2, backend="gloo", device="cpu")


def test_leave_worker__rank_zero_returns_the_others_exit_cleanly_without_returning() -> None:
    output = _output()
    assert leave_worker(World(rank=0, world_size=2), output) is output
    with pytest.raises(SystemExit) as exited:
        leave_worker(World(rank=1, local_rank=1, world_size=2), output)
    assert exited.value.code == 0


# ------------------------------------------------------------------------------------ pairs

URIS = {f"i{k}": f"file:///img/i{k}.jpg" for k in range(8)}


def test_assemble_records__drops_pairs_of_unusable_images_and_filters_negatives() -> None:
    rows = [
        PairRow("i1", "i2", "click", 0.5, ("i3", "gone", "i1", "i4")),
        PairRow("i1", "gone", "click", 1.0, ()),
        PairRow("gone", "i2", "human", 1.0, ()),
        PairRow("i0", "i0", "self", 1.0, ()),
        PairRow("i1", "i5", "click", 0.8, ("i3",)),
    ]
    out = assemble_records(rows, URIS)
    assert out.dropped == 2
    assert out.dropped_negatives == 2  # "gone" has no URI, "i1" is the pair's own query
    assert out.by_source() == {"click": 2, "self": 1}
    assert out.sources == ["click", "click", "self"]
    first = out.records[0]
    assert (first.query_uri, first.positive_uri, first.weight) == (URIS["i1"], URIS["i2"], 0.5)
    assert first.hard_negative_uris == (URIS["i3"], URIS["i4"])
    # One group per query image: both click pairs of i1 share it, the self pair of i0 has its own.
    assert out.records[0].group_id == out.records[1].group_id == 1
    assert out.records[2].group_id == 0


def test_assemble_records__order_of_the_rows_does_not_matter() -> None:
    rng = np.random.default_rng(0)
    rows = [
        PairRow(f"i{q}", f"i{p}", s, 1.0, ()) for q in range(4) for p in range(4) for s in ("self", "click")
    ]
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    assert assemble_records(rows, URIS) == assemble_records(shuffled, URIS)
    assert records_digest(assemble_records(rows, URIS).records) == records_digest(
        assemble_records(shuffled, URIS).records
    )


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_assemble_records__refuses_non_positive_or_non_finite_weights(weight: float) -> None:
    with pytest.raises(ValueError, match="weights must be positive and finite"):
        assemble_records([PairRow("i1", "i2", "click", weight, ())], URIS)


def test_records_parquet__round_trip_keeps_every_field() -> None:
    records = [
        PairRecord("s3://b/a.jpg", "s3://b/b.jpg", 0.25, 7, ("s3://b/c.jpg", "s3://b/d.jpg")),
        PairRecord("file:///x/é.png", "file:///x/é.png", 1.0, 0, ()),
    ]
    assert records_from_parquet(records_to_parquet(records)) == records


def test_records_digest__changes_with_any_field() -> None:
    base = [PairRecord("a", "b", 1.0, 0, ("c",))]
    digest = records_digest(base)
    for changed in (
        PairRecord("a", "b", 0.5, 0, ("c",)),
        PairRecord("a", "b", 1.0, 1, ("c",)),
        PairRecord("a", "b", 1.0, 0, ()),
        PairRecord("a", "x", 1.0, 0, ("c",)),
    ):
        assert records_digest([changed]) != digest


# ------------------------------------------------------------------------------------- spec


def _settings(tmp_path: Path, **train: object) -> Settings:
    base = load_settings(
        env={
            "VISEARCH_LANDING": str(tmp_path / "landing"),
            "VISEARCH_LAKE": str(tmp_path / "lake"),
            "VISEARCH_ARTIFACTS": str(tmp_path / "artifacts"),
        }
    )
    model = ModelSettings(backbone="resnet18", embed_dim=16, image_size=32, small_stem=False)
    knobs = {"steps": 3, "batch_size": 4, "checkpoint_every": 2, "lr": 1e-3, **train}
    return base.replace(model=model, train=TrainSettings(**knobs))  # type: ignore[arg-type]


def test_make_spec__small_sets_travel_inline_big_ones_as_parquet(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = open_store(settings.artifacts)
    records = [PairRecord(f"u{i}", f"u{i}", 1.0, i, ("n1", "n2", "n3") if i == 0 else ()) for i in range(5)]
    inline = make_spec(settings, "2026-01-02", records, store=store)
    assert inline.records == tuple(records) and inline.records_key is None
    assert inline.num_hard_negatives == 2  # min(settings' 2, longest list 3)
    assert inline.checkpoint_prefix.startswith("checkpoints/2026-01-02/run-")
    assert store.list("checkpoints/") == []

    shipped = make_spec(settings, "2026-01-02", records, store=store, inline_max=4)
    assert shipped.records == () and shipped.records_key == f"{shipped.checkpoint_prefix}/pairs.parquet"
    assert store.exists(shipped.records_key)
    assert shipped.load_records(store) == records
    assert shipped.checkpoint_prefix == inline.checkpoint_prefix  # the same run, shipped differently


def test_make_spec__without_negatives_uses_no_slots_and_refuses_no_pairs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = open_store(settings.artifacts)
    spec = make_spec(settings, "2026-01-02", [PairRecord("a", "a", 1.0, 0)], store=store)
    assert spec.num_hard_negatives == 0
    with pytest.raises(ValueError, match="no training pairs for 2026-01-02"):
        make_spec(settings, "2026-01-02", [], store=store)
    with pytest.raises(ValueError, match="spec says 2 records but carries 1"):
        TrainSpec(
            settings.to_json(), "2026-01-02", TrainConfig(), "p", 2, records=(PairRecord("a", "a", 1.0, 0),)
        )


def test_run_id__a_checkpoint_is_only_resumed_by_the_same_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    records = [PairRecord("a", "a", 1.0, 0)]
    cfg = TrainConfig.from_settings(settings.train)
    base = run_id(settings, cfg, 1, records, 0)
    assert run_id(settings, cfg, 1, records, 0) == base
    assert run_id(settings, TrainConfig.from_settings(settings.train, steps=4), 1, records, 0) != base
    assert run_id(settings, cfg, 2, records, 0) != base
    assert run_id(settings, cfg, 1, [PairRecord("b", "b", 1.0, 0)], 0) != base
    other_model = settings.replace(model=ModelSettings(backbone="resnet18", embed_dim=8, image_size=32))
    assert run_id(other_model, cfg, 1, records, 0) != base
    # Storage roots are not part of the run: the same run elsewhere resumes the same way.
    assert run_id(settings.replace(artifacts=str(tmp_path / "other")), cfg, 1, records, 0) == base


# ----------------------------------------------------------------------------------- worker


def _write_images(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    uris = []
    for i in range(count):
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(blocks).resize((40, 40), Image.Resampling.NEAREST).save(buf, "PNG")
        (folder / f"{i}.png").write_bytes(buf.getvalue())
        uris.append(f"file://{folder / f'{i}.png'}")
    return uris


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread: two spin-wait on each other on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_train_worker__called_directly_trains_as_one_process_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = _settings(tmp_path)
    uris = _write_images(tmp_path / "images", 6)
    records = [PairRecord(u, u, 1.0, i, (uris[(i + 1) % 6],)) for i, u in enumerate(uris)]
    store = open_store(settings.artifacts)
    spec = make_spec(settings, "2026-01-02", records, store=store, inline_max=0)

    out = train_worker(spec)

    assert out.world_size == 1 and out.backend == "none" and out.device == "cpu"
    assert len(out.losses) == 3 and all(np.isfinite(out.losses))
    assert out.result["steps_done"] == 3 and out.result["resumed_from"] == 0
    assert all(t.device.type == "cpu" for t in out.state_dict.values())
    assert [step for step, _ in list_checkpoints(store, spec.checkpoint_prefix)] == [2, 3]
    # A second call finds the final checkpoint: no step is trained again, same weights come back.
    again = train_worker(spec)
    assert again.result["resumed_from"] == 3 and again.losses == out.losses
    assert all(torch.equal(again.state_dict[k], v) for k, v in out.state_dict.items())
