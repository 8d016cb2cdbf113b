"""``visearch bench scale``: the growth-exponent fit, the verdicts, the outputs, and a tiny real run."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from visearch.bench.scale import (
    NOT_AVAILABLE,
    OK,
    SUPERLINEAR,
    PeakRss,
    add_arguments,
    fit_exponent,
    measure_size,
    parse_sizes,
    report,
    run,
    stage_available,
    summarise,
    superlinear_stages,
)


def _row(stage: str, images: int, seconds: float | None, rss: float | None = 100.0,
         status: str = OK) -> dict[str, Any]:
    return {"stage": stage, "images": images, "seconds": seconds, "peak_rss_mb": rss, "status": status}


def test_fit_exponent__recovers_an_exact_power_law() -> None:
    # t = 0.003 · n^1.5 at n = 1000, 4000, 16000 -> slope 1.5, prefactor 0.003, r² = 1.
    sizes = [1000, 4000, 16000]
    fit = fit_exponent(sizes, [0.003 * n**1.5 for n in sizes])
    assert fit.exponent == pytest.approx(1.5)
    assert fit.prefactor == pytest.approx(0.003)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.points == 3


def test_fit_exponent__two_points_hand_worked() -> None:
    # log(40 / 10) / log(4000 / 1000) = log 4 / log 4 = 1.0
    assert fit_exponent([1000, 4000], [10.0, 40.0]).exponent == pytest.approx(1.0)
    # quadrupling n, time × 16 -> exponent 2
    assert fit_exponent([1000, 4000], [1.0, 16.0]).exponent == pytest.approx(2.0)


def test_fit_exponent__noisy_linear_is_close_to_one() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = [500, 1000, 2000, 4000, 8000, 16000]
    values = [0.01 * n * float(rng.uniform(0.9, 1.1)) for n in sizes]
    fit = fit_exponent(sizes, values)
    assert abs(fit.exponent - 1.0) < 0.05
    assert 0.99 < fit.r2 <= 1.0


@pytest.mark.parametrize(("sizes", "values"), [
    ([1000], [1.0]), ([1000, 1000], [1.0, 2.0]), ([1000, 2000], [0.0, 1.0]), ([1000, 2000], [1.0, -1.0]),
    ([1000, 2000], [1.0]), ([1000, 2000], [1.0, math.nan]),
])
def test_fit_exponent__rejects_what_cannot_be_fitted(sizes: list[float], values: list[float]) -> None:
    with pytest.raises(ValueError):
        fit_exponent(sizes, values)


def test_parse_sizes__sorted_and_validated() -> None:
    assert parse_sizes("4000,1000, 16000") == (1000, 4000, 16000)
    assert parse_sizes("1e3,2e3") == (1000, 2000)
    for bad in ("", "10,100", "100,100", "abc"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_summarise__names_the_superlinear_stage_only() -> None:
    sizes = [1000, 4000, 16000]
    rows = [_row("ingest_images", n, 0.01 * n) for n in sizes]  # linear
    rows += [_row("build_pairs", n, 1e-6 * n**2) for n in sizes]  # quadratic
    rows += [_row("train", n, 30.0) for n in sizes]  # constant (fixed steps)
    rows += [_row("embed", n, None, None, NOT_AVAILABLE) for n in sizes]
    fits = summarise(rows)
    assert fits["ingest_images"]["time"]["exponent"] == pytest.approx(1.0)
    assert fits["build_pairs"]["time"]["exponent"] == pytest.approx(2.0)
    assert fits["train"]["time"]["exponent"] == pytest.approx(0.0, abs=1e-9)
    assert fits["embed"]["time"] is None and not fits["embed"]["superlinear"]
    assert superlinear_stages(fits) == ["build_pairs"]
    assert "n^2.00" in fits["build_pairs"]["reason"]


def test_summarise__last_step_catches_growth_hidden_by_fixed_cost() -> None:
    # t = 5 s start-up + 1e-7·n²: the full fit is flat-ish, the last step (16k -> 64k) is ~1.9.
    sizes = [1000, 4000, 16000, 64000]
    fits = summarise([_row("build_index", n, 5.0 + 1e-7 * n**2) for n in sizes])
    fit = fits["build_index"]
    assert fit["time"]["exponent"] < SUPERLINEAR < fit["tail_exponent"]
    assert fit["superlinear"] and "between the two largest sizes" in fit["reason"]


def test_summarise__last_step_ignored_when_too_short_to_trust() -> None:
    fits = summarise([_row("demo", 100, 0.01), _row("demo", 200, 0.03)])  # n^1.58 but 10-30 ms
    assert fits["demo"]["time"]["exponent"] > SUPERLINEAR
    assert fits["demo"]["superlinear"]  # the full fit alone names it
    fits = summarise([_row("demo", 100, 0.2), _row("demo", 200, 0.2), _row("demo", 400, 0.6)])
    assert fits["demo"]["tail_exponent"] > SUPERLINEAR and fits["demo"]["time"]["exponent"] < SUPERLINEAR
    assert not fits["demo"]["superlinear"]  # last step is below MIN_TAIL_SECONDS


def test_report__writes_json_plot_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = [1000, 4000]
    rows = [_row("ingest_images", n, 0.02 * n, rss=500.0 + n / 100) for n in sizes]
    rows += [_row("build_pairs", n, 1e-5 * n**2) for n in sizes]
    rows += [_row("embed", n, None, None, NOT_AVAILABLE) for n in sizes]
    result = report(rows, tmp_path, {"sizes": sizes}, argv=["test"])
    text = capsys.readouterr().out
    assert "SUPERLINEAR: build_pairs" in text
    assert "not available" in text
    data = json.loads((tmp_path / "scale.json").read_text())
    assert data["bench"] == "scale" and data["command"] == ["test"]
    assert data["superlinear"] == ["build_pairs"] == result["superlinear"]
    assert data["fits"]["ingest_images"]["time"]["exponent"] == pytest.approx(1.0)
    assert data["fits"]["ingest_images"]["memory"]["exponent"] > 0
    png = tmp_path / data["plot"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_rss__sees_an_allocation_in_a_child_process() -> None:
    # A fresh child, so the allocation cannot be served from pages this (long-lived) test process
    # already holds: in a full suite run the parent's heap has freed memory that numpy reuses.
    import subprocess
    import sys

    code = ("import time, numpy as np; b = np.ones(128 * 1024 * 1024 // 8); b.sum(); "
            "time.sleep(0.5); print(b[0])")
    with PeakRss(interval=0.01) as rss:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert rss.peak >= rss.start + 100e6


def test_measure_size__missing_module_is_not_available_and_blocks_later_stages(
        tmp_path: Path, settings: Any) -> None:
    stages = (("demo", "visearch.demo.corpus"), ("embed", "jobs.no_such_job_module"), ("build_index", "jobs.x"))
    rows = measure_size(24, tmp_path / "n24", settings, stages, days=1, seed=0, image_px=32,
                        start_ds="2026-01-01", spark_factory=lambda s: None)
    assert [r["status"] for r in rows] == [OK, NOT_AVAILABLE, "skipped: embed not available"]
    demo = rows[0]
    assert demo["seconds"] > 0 and demo["peak_rss_mb"] > 0 and demo["result"]["images"] == 24
    assert (tmp_path / "n24" / "landing" / "demo_truth.json").is_file()
    assert not stage_available("jobs.no_such_job_module")


def test_stages__every_stage_module_of_the_project_exists() -> None:
    # The project's own modules: a missing one is a bug (a renamed module, a typo in STAGES),
    # never a reason to skip; run() would report it only as "not available".
    from visearch.bench.scale import STAGES

    names = [stage for stage, _ in STAGES]
    assert names[0] == "demo" and "ingest_images" in names and "build_index" in names
    missing = [module for _, module in STAGES if not stage_available(module)]
    assert not missing, f"stage modules not found: {missing}"


def _args(tmp_path: Path, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(tmp_path / "out"))
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_run__rejects_unknown_stages_and_too_many_days(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stages"):
        run(_args(tmp_path, "--sizes", "100,200", "--stages", "demo,nope"))
    with pytest.raises(ValueError, match="--days"):
        run(_args(tmp_path, "--sizes", "100,200", "--days", "51"))


@pytest.mark.spark
@pytest.mark.slow
def test_run__tiny_sizes_through_ingest(tmp_path: Path, spark: Any) -> None:
    args = _args(tmp_path, "--sizes", "100,200", "--image-px", "32", "--stages", "demo,ingest_images")
    result = run(args)
    ok = {(r["stage"], r["images"]) for r in result["rows"] if r["status"] == OK}
    assert ("demo", 200) in ok and ("ingest_images", 200) in ok
    ingest = next(r for r in result["rows"] if r["stage"] == "ingest_images" and r["images"] == 200)
    assert ingest["peak_rss_mb"] > ingest["rss_before_mb"] * 0.5 > 0  # the JVM is in the tree
    assert result["fits"]["demo"]["time"] is not None
    assert (tmp_path / "out" / "scale.json").is_file() and (tmp_path / "out" / "scale.png").is_file()
    assert not (tmp_path / "out" / "scale-work" / "n100").exists()  # removed without --keep


def test_included_rows__adds_earlier_sizes_and_refuses_a_repeated_size(tmp_path: Path) -> None:
    from visearch.bench.scale import included_rows

    earlier = tmp_path / "scale-partial.json"
    earlier.write_text(json.dumps({"rows": [{"stage": "embed", "images": 64000, "seconds": 9.0,
                                             "peak_rss_mb": 900.0, "status": "ok"}]}))
    rows = included_rows([earlier], sizes=(1000, 4000))
    assert [(r["stage"], r["images"]) for r in rows] == [("embed", 64000)]
    with pytest.raises(ValueError, match="64000"):
        included_rows([earlier], sizes=(64000,))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'rows'"):
        included_rows([tmp_path / "bad.json"], sizes=(1000,))
    later = tmp_path / "demo-again.json"
    later.write_text(json.dumps({"rows": [{"stage": "demo", "images": 64000, "seconds": 5.0},
                                          {"stage": "embed", "images": 64000, "seconds": 7.0}]}))
    rows = included_rows([earlier, later], sizes=())
    assert [(r["stage"], r["seconds"]) for r in rows] == [("demo", 5.0), ("embed", 7.0)]  # the last file wins
