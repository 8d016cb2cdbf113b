"""The capacity planner's arithmetic on hand-worked cases, its inputs and its benchmark reading."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from visearch.cli import main
from visearch.plan.capacity import (
    DEFAULT_ADD_VECTORS_PER_SEC_PER_CORE,
    DEFAULT_EMBED_IMAGES_PER_SEC_PER_GPU,
    Measure,
    PlanInputs,
    Throughputs,
    format_plan,
    load_throughputs,
    parse_count,
    plan_capacity,
    shard_layout,
    shard_vectors_for_memory,
)


def _measured(**rates: float) -> Throughputs:
    """Throughputs where the named figures are 'measured' (source test) and the rest defaults."""
    return Throughputs(**{k: Measure(v, "test: given") for k, v in rates.items()})


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("2e11", 2e11), ("200e9", 2e11), ("1_000_000", 1e6), ("1,000", 1e3), ("5M", 5e6), ("2B", 2e9),
    ("1.5T", 1.5e12), (" 64 ", 64.0), (3, 3.0),
])
def test_parse_count__scientific_underscores_and_suffixes(text: str, value: float) -> None:
    assert parse_count(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-5", "0", "abc", "inf", "nan", "", "1e", "2X"])
def test_parse_count__rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="number"):
        parse_count(text)


# --- index layout and shard memory -----------------------------------------------------------


def test_shard_layout__1e9_vectors_pq64_hand_worked() -> None:
    # n = 1e9, dim 256, 64 code bytes:
    #   nlist = largest power of two <= 16·sqrt(1e9) = 505,964 -> 262,144 (HNSW quantizer from 1M on)
    #   codes = 1e9 × 64 B = 64 GB; ids = 1e9 × 8 B = 8 GB
    #   lists = 262,144 × 80 B = 20,971,520 B
    #   quantizer = centroids 262,144 × 256 × 4 = 268,435,456
    #             + HNSW32 graph 262,144 × 2·32 × 4 × 1.1 = 73,819,750.4 -> 73,819,751
    #             + PQ codebooks 256 × 256 × 4 = 262,144 + OPQ rotation 256 × 256 × 4 = 262,144
    #             = 342,779,495 B
    layout = shard_layout(1_000_000_000, 256, 64)
    assert layout.factory == "OPQ64,IVF262144_HNSW32,PQ64"
    assert layout.nlist == 262_144
    assert layout.code_bytes == 64
    assert layout.codes_bytes == 64_000_000_000
    assert layout.ids_bytes == 8_000_000_000
    assert layout.lists_overhead_bytes == 20_971_520
    assert layout.quantizer_bytes == pytest.approx(342_779_495, abs=2)
    assert layout.total_bytes == pytest.approx(72_363_751_015, abs=2)


def test_plan__2e11_images_shards_hosts_and_storage() -> None:
    # 2e11 images at 5e8 a shard -> ceil(2e11 / 5e8) = 400 shards of 5e8 vectors.
    # One shard: codes 5e8 × 64 = 32e9, ids 5e8 × 8 = 4e9, lists 262,144 × 80 = 20,971,520,
    #   quantizer 342,779,495 (same nlist as above: 16·sqrt(5e8) = 357,771 -> 262,144)
    #   = 36,363,751,015 B.
    # Host: 512 GB × 0.8 = 409.6e9 usable -> floor(409.6e9 / 36.36e9) = 11 shards a host;
    #   hosts = ceil(400 × 2 replicas / 11) = ceil(72.7) = 73.
    # Storage: images 2e11 × 200e3 = 4e16 B; embeddings fp32 2e11 × 256 × 4 = 2.048e14,
    #   fp16 = 1.024e14; index builds 2 × (400 × 36,363,751,015 + 2e11 × 24 B id map);
    #   models 10 × 100e6 = 1e9.
    plan = plan_capacity(PlanInputs(images=200_000_000_000), Throughputs())
    assert plan.shards == 400
    assert plan.vectors_per_shard == 500_000_000
    assert plan.shard_codes_bytes == 32_000_000_000
    assert plan.shard_ids_bytes == 4_000_000_000
    assert plan.shard_bytes == pytest.approx(36_363_751_015, abs=2)
    assert plan.shards_per_host == 11
    assert plan.hosts == 73
    assert plan.index_bytes == 400 * plan.shard_bytes
    assert plan.serving_memory_bytes == 2 * plan.index_bytes
    assert plan.images_storage_bytes == 40_000_000_000_000_000
    assert plan.embeddings_fp32_bytes == 204_800_000_000_000
    assert plan.embeddings_fp16_bytes == 102_400_000_000_000
    assert plan.index_storage_bytes == 2 * (400 * plan.shard_bytes + 200_000_000_000 * 24)
    assert plan.models_storage_bytes == 1_000_000_000
    assert plan.storage_bytes == (plan.images_storage_bytes + plan.embeddings_fp32_bytes
                                  + plan.index_storage_bytes + plan.models_storage_bytes)


def test_plan__shards_round_up_and_balance() -> None:
    # 1e9 + 1 vectors at 5e8 a shard -> ceil(2.000000002) = 3 shards of ceil((1e9 + 1) / 3) = 333,333,334.
    plan = plan_capacity(PlanInputs(images=1_000_000_001, shard_vectors=500_000_000), Throughputs())
    assert plan.shards == 3
    assert plan.vectors_per_shard == 333_333_334


def test_plan__shard_sized_from_host_memory_fits_one_host() -> None:
    # 128 GB × 0.8 = 102.4e9 usable; at 72 B a vector that is ~1.42e9 vectors minus the quantizer,
    # rounded down to a million.
    n = shard_vectors_for_memory(102.4e9, 256, 64)
    assert n % 1_000_000 == 0
    assert 1_400_000_000 <= n <= 1_422_000_000
    assert shard_layout(n, 256, 64).total_bytes <= 102.4e9 < shard_layout(n + 1_000_000, 256, 64).total_bytes
    inputs = PlanInputs(images=10_000_000_000, shard_vectors=None, host_memory_gb=128)
    plan = plan_capacity(inputs, Throughputs())
    assert plan.shards_per_host == 1
    assert plan.shards == math.ceil(10_000_000_000 / n)


# --- compute and time -------------------------------------------------------------------------


def test_plan__gpu_hours_and_cost_hand_worked() -> None:
    # GPU-hours = N / (images/s/GPU × 3600) = 2e11 / (1000 × 3600) = 55,555.6 h;
    # wall = 55,555.6 / 100 GPUs = 555.6 h; cost = 55,555.6 × $2 = $111,111.1.
    inputs = PlanInputs(images=200_000_000_000, gpus=100, gpu_hour_usd=2.0)
    plan = plan_capacity(inputs, _measured(embed_images_per_sec_per_gpu=1000.0))
    assert plan.embed_gpu_hours == pytest.approx(2e11 / 3.6e6)
    assert plan.embed_wall_hours == pytest.approx(2e11 / 3.6e6 / 100)
    assert plan.costs.embed_full_usd == pytest.approx(111_111.11, rel=1e-6)
    # No CPU price: every line that needs one is absent, not zero.
    assert plan.costs.build_full_usd is None
    assert plan.costs.storage_month_usd is None


def test_plan__index_build_hours_hand_worked() -> None:
    # Add: 1e10 vectors / (10,000 vectors/s/core × 3600) = 277.8 core-hours; on 10 × 10 cores: 2.778 h.
    # Train (one GPU): 1e10 / 5e8 = 20 shards of 5e8 -> nlist 262,144, train_size 30 × 262,144 =
    #   7,864,320; 7,864,320 × 262,144 × 256 / (4e11 × 3600) = 0.3665 h.
    plan = plan_capacity(
        PlanInputs(images=10_000_000_000, executors=10, executor_cores=10, gpus=1),
        _measured(add_vectors_per_sec_per_core=10_000.0, train_dim_products_per_sec_gpu=4e11),
    )
    assert plan.train_size == 7_864_320
    assert plan.add_core_hours == pytest.approx(1e10 / 3.6e7)
    assert plan.add_wall_hours == pytest.approx(1e10 / 3.6e7 / 100)
    assert plan.train_hours == pytest.approx(7_864_320 * 262_144 * 256 / (4e11 * 3600))
    assert plan.build_wall_hours == pytest.approx(plan.train_hours + plan.add_wall_hours)


def test_plan__cpu_only_embeds_on_executor_cores_and_trains_on_one_executor() -> None:
    # gpus = 0: embed wall = N / (4 images/s/core × 3600) / (50 × 16 cores);
    # train on one executor's 16 cores at 1e9 products/s a core.
    inputs = PlanInputs(images=1_000_000_000, gpus=0, cpu_core_hour_usd=0.05)
    plan = plan_capacity(inputs, Throughputs())
    assert not plan.embed_on_gpu and not plan.train_on_gpu
    assert plan.embed_wall_hours == pytest.approx(1e9 / (4 * 3600) / 800)
    assert plan.train_hours == pytest.approx(plan.train_size * plan.nlist * 256 / (1e9 * 16 * 3600))
    assert plan.costs.embed_full_usd == pytest.approx(plan.embed_cpu_core_hours * 0.05)
    assert plan.costs.build_full_usd == pytest.approx((plan.train_hours * 16 + plan.add_core_hours) * 0.05)


def test_plan__more_executors_means_fewer_hours() -> None:
    hours = [plan_capacity(PlanInputs(images=10**11, executors=e), Throughputs()) for e in (10, 20, 40)]
    builds = [p.build_wall_hours for p in hours]
    nightly = [p.nightly_hours for p in hours]
    assert builds[0] > builds[1] > builds[2]
    assert nightly[0] > nightly[1] > nightly[2]
    # The train part does not shrink with executors, so the build does not halve exactly.
    assert builds[0] / builds[1] < 2.0


def test_plan__more_gpus_means_shorter_embedding() -> None:
    a = plan_capacity(PlanInputs(images=10**11, gpus=32), Throughputs())
    b = plan_capacity(PlanInputs(images=10**11, gpus=64), Throughputs())
    assert b.embed_wall_hours == pytest.approx(a.embed_wall_hours / 2)
    assert b.embed_gpu_hours == pytest.approx(a.embed_gpu_hours)


def test_plan__nightly_increment_hand_worked() -> None:
    # 2e11 × 0.005 = 1e9 new images a day -> ceil(1e9 / 5e8) = 2 delta shards;
    # embed: 1e9 / (800 × 3600) / 64 GPUs = 5.425 h; ingest: 1e9 / (100 × 3600) / 800 cores = 3.472 h;
    # add: 1e9 / (5000 × 3600) / 800 = 0.0694 h.
    plan = plan_capacity(PlanInputs(images=200_000_000_000), Throughputs())
    assert plan.nightly_images == 1_000_000_000
    assert plan.nightly_delta_shards == 2
    assert plan.nightly_embed_hours == pytest.approx(1e9 / (DEFAULT_EMBED_IMAGES_PER_SEC_PER_GPU * 3600) / 64)
    assert plan.nightly_ingest_hours == pytest.approx(1e9 / (100 * 3600) / 800)
    assert plan.nightly_add_hours == pytest.approx(1e9 / (DEFAULT_ADD_VECTORS_PER_SEC_PER_CORE * 3600) / 800)
    assert plan.nightly_hours == pytest.approx(
        plan.nightly_embed_hours + plan.nightly_ingest_hours + plan.nightly_add_hours)
    assert not any("longer than a day" in n for n in plan.notes)


def test_plan__nightly_longer_than_a_day_is_flagged() -> None:
    plan = plan_capacity(PlanInputs(images=200_000_000_000, gpus=2), Throughputs())
    assert plan.nightly_hours > 24
    assert any("longer than a day" in n for n in plan.notes)


def test_plan__costs_hand_worked_with_every_price() -> None:
    # storage a month = storage GB × price; serving = 73 hosts × 730 h × $3.
    inputs = PlanInputs(images=200_000_000_000, gpu_hour_usd=2.0, cpu_core_hour_usd=0.04,
                        storage_gb_month_usd=0.02, host_hour_usd=3.0)
    plan = plan_capacity(inputs, Throughputs())
    assert plan.costs.storage_month_usd == pytest.approx(plan.storage_bytes / 1e9 * 0.02)
    assert plan.costs.serving_month_usd == pytest.approx(73 * 730 * 3.0)
    assert plan.costs.nightly_usd is not None and plan.costs.nightly_month_usd is not None
    assert plan.costs.nightly_month_usd == pytest.approx(30 * plan.costs.nightly_usd)
    # nightly = (ingest + add core-hours + embed GPU-hours) × 0.5 % × prices
    expected = 0.005 * (plan.ingest_core_hours * 0.04 + plan.add_core_hours * 0.04
                        + plan.embed_gpu_hours * 2.0)
    assert plan.costs.nightly_usd == pytest.approx(expected)


# --- nonsense inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"images": 0}, {"images": -5}, {"dim": 0}, {"bytes_per_vector": -1}, {"gpus": -1}, {"executors": 0},
    {"executor_cores": 0}, {"replicas": 0}, {"shard_vectors": 0}, {"host_memory_gb": 0.0},
    {"usable_memory_share": 1.5}, {"daily_new_share": -0.1}, {"gpu_hour_usd": -1.0},
    {"image_bytes": float("nan")},
])
def test_plan__nonsense_inputs_raise_value_error(change: dict[str, float]) -> None:
    inputs = dataclasses.replace(PlanInputs(images=1_000_000), **change)
    with pytest.raises(ValueError, match=next(iter(change))):
        plan_capacity(inputs, Throughputs())


def test_plan__shard_larger_than_a_host_raises() -> None:
    # 1e10 vectors × 72 B = 720 GB > 64 GB × 0.8 usable.
    with pytest.raises(ValueError, match="lower shard_vectors"):
        plan_capacity(PlanInputs(images=10**10, shard_vectors=10**10, host_memory_gb=64), Throughputs())


def test_measure__rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        Measure(0.0, "x")


# --- benchmark files: measured vs default ------------------------------------------------------


def test_load_throughputs__missing_folder_is_all_defaults(tmp_path: Path) -> None:
    measured = load_throughputs(tmp_path / "nothing-here")
    assert all(not m.measured for _, m in measured.items())
    assert measured.embed_images_per_sec_per_gpu.value == DEFAULT_EMBED_IMAGES_PER_SEC_PER_GPU


def test_load_throughputs__planner_block_is_measured_and_labelled(tmp_path: Path) -> None:
    (tmp_path / "embed.json").write_text(json.dumps({"planner": {
        "pipeline_images_per_sec_per_gpu": 1234.0, "pipeline_images_per_sec_per_cpu_core": 7.5}}))
    (tmp_path / "index.json").write_text(json.dumps({"planner": {
        "add_vectors_per_sec_per_core": 20_000.0, "train_dim_products_per_sec": 3e9, "train_device": "cpu",
        "bytes_per_vector": 73.2, "recall_at_10": 0.93}}))
    measured = load_throughputs(tmp_path)
    assert measured.embed_images_per_sec_per_gpu == Measure(
        1234.0, f"{tmp_path / 'embed.json'}: planner.pipeline_images_per_sec_per_gpu")
    assert measured.add_vectors_per_sec_per_core.value == 20_000.0
    assert measured.train_dim_products_per_sec_per_core.value == 3e9
    assert not measured.train_dim_products_per_sec_gpu.measured
    assert measured.measured_recall_at_10 is not None and measured.measured_recall_at_10.value == 0.93
    assert not measured.ingest_images_per_sec_per_core.measured  # no ingest.json
    inputs = PlanInputs(images=10**9)
    text = format_plan(inputs, measured, plan_capacity(inputs, measured))
    lines = {line.split()[0]: line for line in text.splitlines() if line and not line.startswith("[")}
    assert "MEASURED" in lines["embed_images_per_sec_per_gpu"] and "embed.json" in lines[
        "embed_images_per_sec_per_gpu"]
    assert lines["ingest_images_per_sec_per_core"].rstrip().endswith("DEFAULT")


def test_load_throughputs__rows_take_the_slowest_pipeline_per_core(tmp_path: Path) -> None:
    # Rows as a bench might write them: ResNet-50 20 images/s on 2 cores -> 10 a core; the demo model
    # 200 on 2 cores -> 100; the naive loop is a baseline and is skipped; a cuda row counts per GPU.
    doc = {"machine": {"cpus": 2}, "rows": [
        {"model": "resnet50", "mode": "pipeline", "device": "cpu", "images_per_sec": 20.0},
        {"model": "demo", "mode": "pipeline", "device": "cpu", "images_per_sec": 200.0},
        {"model": "resnet50", "mode": "naive", "device": "cpu", "images_per_sec": 1.0},
        {"model": "resnet50", "mode": "pipeline", "device": "cuda", "images_per_sec": 2500.0},
    ]}
    (tmp_path / "embed.json").write_text(json.dumps(doc))
    (tmp_path / "ingest.json").write_text(json.dumps({"machine": {"cpus": 2}, "rows": [
        {"variant": "optimised", "images_per_sec": 300.0, "workers": 2},
        {"variant": "full-decode baseline", "images_per_sec": 50.0, "workers": 2}]}))
    (tmp_path / "index.json").write_text(json.dumps({"machine": {"cpus": 2}, "rows": [
        {"system": "visearch", "add_vectors_per_sec": 40_000.0, "train_seconds": 10.0, "nlist": 4096,
         "train_size": 262_144, "dim": 256, "bytes_per_vector": 72.5, "recall_at_10": 0.91},
        {"system": "autofaiss", "add_vectors_per_sec": 90_000.0, "recall_at_10": 0.5}]}))
    measured = load_throughputs(tmp_path)
    assert measured.embed_images_per_sec_per_cpu_core.value == pytest.approx(10.0)
    assert "rows[0]" in measured.embed_images_per_sec_per_cpu_core.source
    assert measured.embed_images_per_sec_per_gpu.value == pytest.approx(2500.0)
    assert measured.ingest_images_per_sec_per_core.value == pytest.approx(150.0)
    assert measured.add_vectors_per_sec_per_core.value == pytest.approx(20_000.0)
    # 262,144 × 4096 × 256 / 10 s / 2 cores
    assert measured.train_dim_products_per_sec_per_core.value == pytest.approx(262_144 * 4096 * 256 / 10 / 2)
    assert measured.measured_recall_at_10 is not None and measured.measured_recall_at_10.value == 0.91


def test_load_throughputs__broken_json_raises(tmp_path: Path) -> None:
    (tmp_path / "embed.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_throughputs(tmp_path)


# --- output and command line ---------------------------------------------------------------------


def test_format_plan__cost_section_only_with_prices() -> None:
    inputs = PlanInputs(images=10**10)
    text = format_plan(inputs, Throughputs(), plan_capacity(inputs, Throughputs()))
    assert "[cost" not in text and "$" not in text
    priced = dataclasses.replace(inputs, gpu_hour_usd=2.0)
    text = format_plan(priced, Throughputs(), plan_capacity(priced, Throughputs()))
    assert "embed everything" in text
    assert "full index build" not in text  # needs a core-hour price too


def test_cli_plan__prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    rc = main(["plan", "--images", "2e11", "--bench-dir", str(tmp_path), "--json", str(out),
               "--gpu-hour-usd", "2.5"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "OPQ64,IVF262144_HNSW32,PQ64" in text and "DEFAULT" in text
    data = json.loads(out.read_text())
    assert data["plan"]["shards"] == 400
    assert data["inputs"]["images"] == 200_000_000_000
    assert data["throughputs"]["embed_images_per_sec_per_gpu"]["measured"] is False
    assert data["plan"]["costs"]["embed_full_usd"] == pytest.approx(2e11 / (800 * 3600) * 2.5)


def test_cli_plan__rejects_negative_images(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--images", "-1"])
    assert exc.value.code == 2
    assert "positive" in capsys.readouterr().err


def test_load_throughputs__bench_ingest_rows_are_one_core(tmp_path: Path) -> None:
    # `visearch bench ingest` writes rows {"path": "optimised"|"baseline", "images_per_s"} from one
    # single-threaded loop: 180 images/s is 180 a core even on a 2-cpu machine; the baseline is skipped.
    (tmp_path / "ingest.json").write_text(json.dumps({"bench": "ingest", "machine": {"cpus": 2}, "rows": [
        {"path": "optimised", "images": 40, "images_per_s": 180.0},
        {"path": "baseline", "images": 40, "images_per_s": 30.0}]}))
    measured = load_throughputs(tmp_path)
    assert measured.ingest_images_per_sec_per_core.value == pytest.approx(180.0)
    assert measured.ingest_images_per_sec_per_core.source.endswith("rows[0].images_per_s / 1 cores")
