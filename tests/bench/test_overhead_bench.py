"""``visearch bench overhead``: the job chain, variants, the split of a job's seconds, a real quick run."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from visearch.bench.overhead import (
    CHAIN,
    JobTiming,
    Variant,
    add_arguments,
    parse_jobs,
    parse_variants,
    run,
    summarise,
    timing_from_result,
)

REPO = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_chain__is_the_nightly_dags_spark_jobs_in_order() -> None:
    tree = ast.parse((REPO / "dags" / "visearch_nightly.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "spark_job"]
    jobs = [c.args[1].value for c in sorted(calls, key=lambda c: c.lineno) if isinstance(c.args[1], ast.Constant)]
    assert tuple(jobs) == CHAIN


def test_parse_variants__names_parts_and_settings() -> None:
    variants = parse_variants("off,jit=jit,both=cds+jit,nostats=on;spark.databricks.delta.stats.collect=false")
    assert variants == [Variant("off", "off"), Variant("jit", "jit"), Variant("both", "cds,jit"),
                        Variant("nostats", "on", "spark.databricks.delta.stats.collect=false")]


@pytest.mark.parametrize("text", ["", "off,off", "x=aot", "on;novalue"])
def test_parse_variants__refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_variants(text)


def test_parse_jobs__dag_order_and_unknown_refused() -> None:
    assert parse_jobs("quality_gate, ingest_images") == ["ingest_images", "quality_gate"]
    assert parse_jobs(None) == list(CHAIN)
    with pytest.raises(ValueError, match="report"):
        parse_jobs("ingest_images,report")


def test_timing_from_result__splits_the_wall_time() -> None:
    result = {"job": "quality_gate", "stage_seconds": {"count": 5.0, "gate": 1.0},
              "overhead_seconds": {"jvm_launch": 2.0, "spark_session": 3.0, "delta_log": 1.5, "delta_log_n": 3}}
    t = timing_from_result("empty", "2026-01-02", "quality_gate", "off", 14.0, result, (1.0, 2.0, 3.0))
    assert (t.start_s, t.delta_log_s, t.work_s, t.other_s) == (5.0, 1.5, 4.5, 3.0)
    assert t.delta_log_reads == 3
    assert t.start_s + t.delta_log_s + t.work_s + t.other_s == pytest.approx(t.wall_s)
    assert t.as_row()["work_s"] == 4.5


def _t(job: str, variant: str, wall: float, day: str = "empty", status: str = "ok") -> JobTiming:
    return JobTiming(day=day, ds="2026-01-02", job=job, variant=variant, status=status, wall_s=wall)


def test_summarise__medians_without_train_and_failed_jobs_and_ratio_to_the_first_variant() -> None:
    timings = [_t("a", "off", 10), _t("a", "on", 4), _t("b", "off", 20), _t("b", "on", 6),
               _t("c", "off", 30), _t("c", "on", 8), _t("train", "off", 300), _t("train", "on", 290),
               _t("d", "off", 99), _t("d", "on", 1, status="exit 1")]
    rows = summarise(timings, ["off", "on"])
    assert [(r["variant"], r["jobs"], r["median_wall_s"]) for r in rows] == [("off", 3, 20), ("on", 3, 6)]
    assert rows[1]["ratio"] == pytest.approx(0.3) and rows[0]["ratio"] == 1.0


@pytest.mark.spark
def test_bench_overhead__quick_run_of_one_job_off_and_on(tmp_path: Path) -> None:
    result = run(_args("--out", str(tmp_path), "--quick", "--jobs", "ingest_interactions"))
    saved = json.loads((tmp_path / "overhead.json").read_text())
    assert saved["bench"] == "overhead" and saved["jobs"] == ["ingest_interactions"]
    runs = result["runs"]
    assert sorted((r["day"], r["variant"]) for r in runs) == [
        ("demo", "off"), ("demo", "on"), ("empty", "off"), ("empty", "on")]
    assert all(r["status"] == "ok" for r in runs), [r["error"] for r in runs]
    for r in runs:
        assert r["jvm_s"] > 0 and r["session_s"] > 0 and r["wall_s"] > r["start_s"]
        assert r["delta_log_reads"] > 0 and len(r["loadavg"]) == 3
    assert [(s["day"], s["variant"]) for s in result["summary"]] == [
        ("demo", "off"), ("demo", "on"), ("empty", "off"), ("empty", "on")]
    assert len(saved["loadavg_start"]) == 3
