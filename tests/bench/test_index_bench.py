"""`visearch bench index` on a small synthetic set (ours only) and the figures it hands the planner."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from visearch.bench.index import add_arguments, matched_budget, run


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    add_arguments(parser)
    return parser.parse_args(["--out", str(tmp_path), "--no-autofaiss", "--queries", "100",
                              "--target-recall", "0.8", *extra])


def test_bench_index__ours_on_synthetic_data_feeds_the_planner(tmp_path: Path) -> None:
    from visearch.plan.capacity import load_throughputs

    result = run(_args(tmp_path, "--n", "20000", "--dim", "32", "--clusters", "50"))
    (ours,) = result["rows"]
    assert ours["system"] == "visearch" and ours["n"] == 20000 == result["n"]
    assert 0.0 < ours["recall@10"] <= 1.0 and ours["p50_ms"] <= ours["p99_ms"]
    assert ours["build_s"] >= ours["train_s"] + ours["add_s"]
    block = result["planner"]
    import faiss

    # The rate is of the 20000 database vectors (not the 100 held-out queries) per faiss thread.
    assert block["threads"] == faiss.omp_get_max_threads() == result["faiss_threads"]
    assert block["add_vectors_per_sec_per_core"] * ours["add_s"] * block["threads"] == pytest.approx(20000)
    assert json.loads((tmp_path / "index.json").read_text())["planner"] == block
    measured = load_throughputs(tmp_path)
    assert measured.add_vectors_per_sec_per_core.value == pytest.approx(block["add_vectors_per_sec_per_core"])
    assert "index.json" in measured.add_vectors_per_sec_per_core.source


def test_bench_index__real_vectors_from_a_npy_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "emb.npy", rng.standard_normal((3000, 24)).astype(np.float32))
    result = run(_args(tmp_path, "--vectors", str(tmp_path / "emb.npy"), "--memory-mb", "1"))
    assert (result["n"], result["dim"], result["data"]) == (2900, 24, str(tmp_path / "emb.npy"))
    (row,) = result["rows"]
    # 2900 x 24 floats fit the 1 MB budget: an exact (Flat) index, so recall against exact search
    # must be 1.0, and the index holds 24 floats + an 8-byte id a vector (+ a small header).
    assert row["factory"] == "IDMap,Flat" and row["params"] == ""
    assert row["recall@10"] == 1.0
    assert 24 * 4 + 8 <= row["bytes/vector"] < 24 * 4 + 8 + 1


def test_planner_block__hand_worked_rates_per_core() -> None:
    from visearch.bench.index import planner_block

    ours = {"n": 20000, "add_s": 2.0, "train_s": 0.5, "train_size": 1000, "nlist": 50,
            "bytes/vector": 40.0, "recall@10": 0.93}
    block = planner_block(ours, dim=32, threads=4)
    assert block == {"train_device": "cpu", "threads": 4,
                     "add_vectors_per_sec_per_core": 2500.0,  # 20000 / 2 s / 4 threads
                     "train_dim_products_per_sec": 800_000.0,  # 1000 x 50 x 32 / 0.5 s / 4
                     "bytes_per_vector": 40.0, "recall_at_10": 0.93}
    flat = planner_block({**ours, "train_size": 0, "nlist": 0}, dim=32, threads=1)
    assert "train_dim_products_per_sec" not in flat and flat["add_vectors_per_sec_per_core"] == 10000.0


def test_bench_index__also_memory_mb_adds_a_row_of_ours_inside_the_smaller_budget(tmp_path: Path) -> None:
    result = run(_args(tmp_path, "--n", "20000", "--dim", "32", "--clusters", "50", "--memory-mb", "0.6",
                       "--also-memory-mb", "0.3"))
    full, small = result["rows"]
    assert (full["system"], small["system"]) == ("visearch", "visearch@0.3MB")
    assert small["budget_bytes"] == int(0.3 * 1024 * 1024)
    assert small["bytes/vector"] * 20000 <= small["budget_bytes"] < full["bytes/vector"] * 20000
    assert 0.0 < small["recall@10"] <= 1.0
    assert result["planner"]["bytes_per_vector"] == full["bytes/vector"]  # the planner reads the main row


@pytest.mark.parametrize(("extra", "message"), [
    (("--match-memory",), "drop --no-autofaiss"),
    (("--also-memory-mb", "0"), "must be positive"),
])
def test_bench_index__bad_memory_options_are_refused(tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(_args(tmp_path, "--n", "2000", "--dim", "8", *extra))


def test_bench_all__index_also_compares_at_autofaiss_size(tmp_path: Path) -> None:
    from visearch.bench import all_arguments

    args = all_arguments("index", str(tmp_path), quick=True)
    assert args.match_memory and args.quick and not args.no_autofaiss and args.out == str(tmp_path)


def test_matched_budget__rebuild_only_when_autofaiss_came_out_smaller() -> None:
    assert matched_budget(125_000_000, 98_000_000) == 98_000_000
    assert matched_budget(26_000, 44_000) is None
    assert matched_budget(50_000, 50_000) is None
