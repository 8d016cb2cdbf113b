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
    assert block["add_vectors_per_sec_per_core"] == pytest.approx(
        20000 / ours["add_s"] / block["threads"], rel=1e-6)
    assert json.loads((tmp_path / "index.json").read_text())["planner"] == block
    measured = load_throughputs(tmp_path)
    assert measured.add_vectors_per_sec_per_core.value == pytest.approx(block["add_vectors_per_sec_per_core"])
    assert "index.json" in measured.add_vectors_per_sec_per_core.source


def test_bench_index__real_vectors_from_a_npy_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "emb.npy", rng.standard_normal((3000, 24)).astype(np.float32))
    result = run(_args(tmp_path, "--vectors", str(tmp_path / "emb.npy"), "--memory-mb", "1"))
    assert (result["n"], result["dim"], result["data"]) == (2900, 24, str(tmp_path / "emb.npy"))
    assert result["rows"][0]["recall@10"] > 0.5  # a small set: exact or near-exact index


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
