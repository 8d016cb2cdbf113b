"""`visearch bench embed` on a tiny corpus: every mode measured, the frozen CPU model beside the eager one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from visearch.bench.embed import GOAL_OVER_MODEL_ONLY, GOAL_OVER_NAIVE, add_arguments, run


def test_bench_embed__demo_model_rows_ratios_and_json(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--models", "demo", "--images", "12", "--count", "12",
                              "--side", "96", "--repeats", "1", "--batch-size", "4", "--threads", "1"])
    result = run(args)
    modes = {r["mode"]: r for r in result["rows"]}
    assert set(modes) == {"model_only", "pipeline", "naive", "pipeline_eager"}
    assert all(r["images"] == 12 and r["images_per_sec"] > 0 for r in modes.values())
    assert modes["pipeline"]["graph"] == "frozen" and modes["pipeline_eager"]["graph"] == "eager"
    assert modes["naive"]["layout"] == "NCHW" and modes["naive"]["batch_size"] == 1
    # Rates and ratios against the measured seconds (12 images each; seconds kept to 4 decimals).
    for row in modes.values():
        assert row["images_per_sec"] == pytest.approx(12 / row["seconds"], rel=1e-2), row["mode"]
    (ratio,) = result["ratios"]
    seconds = {mode: row["seconds"] for mode, row in modes.items()}
    assert ratio["pipeline_over_naive"] == pytest.approx(seconds["naive"] / seconds["pipeline"], rel=2e-2)
    assert ratio["pipeline_over_model_only"] == pytest.approx(seconds["model_only"] / seconds["pipeline"],
                                                              rel=2e-2)
    assert ratio["eager_pipeline_over_naive"] == pytest.approx(seconds["naive"] / seconds["pipeline_eager"],
                                                               rel=2e-2)
    assert ratio["meets_goals"] == (ratio["pipeline_over_model_only"] >= GOAL_OVER_MODEL_ONLY
                                    and ratio["pipeline_over_naive"] >= GOAL_OVER_NAIVE)
    written = json.loads((tmp_path / "embed.json").read_text())
    assert written["rows"] == result["rows"]

    args.cpu_optimize = False
    eager = run(args)
    assert {r["mode"] for r in eager["rows"]} == {"model_only", "pipeline", "naive"}
    assert {r["graph"] for r in eager["rows"]} == {"eager"}
