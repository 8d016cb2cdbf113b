"""End to end: the demo corpus through the whole nightly DAG, run by Airflow (`airflow dags test`).

One day runs; then the same day runs again and every table and the published pointers must be
unchanged (idempotence of the whole DAG for its ds).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from visearch.core.config import load_settings

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def _snapshot(settings: Any) -> dict[str, Any]:
    """Every Delta table's rows (sorted) and the published pointers, for comparing reruns."""
    from visearch.core import tables as T
    from visearch.core.spark import get_spark
    from visearch.core.storage import open_store

    spark = get_spark(settings, "snapshot")
    out: dict[str, Any] = {}
    for table in T.ALL_TABLES:
        if T.exists(spark, settings, table):
            rows = T.read(spark, settings, table).collect()
            out[table.name] = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str)
                                     for r in rows)
    store = open_store(settings.artifacts)
    out["CHAMPION"] = store.read_pointer("models/CHAMPION")
    out["CURRENT"] = store.read_pointer(f"indexes/{settings.index.name}/CURRENT")
    return out


def test_nightly_dag__day_then_rerun_is_identical(tmp_path: Path, spark: Any) -> None:
    from visearch.demo.corpus import generate_demo
    from visearch.orchestration.airflow_env import airflow_env, dags_test, init_airflow

    env_roots = {
        "VISEARCH_LANDING": str(tmp_path / "landing"),
        "VISEARCH_LAKE": str(tmp_path / "lake"),
        "VISEARCH_ARTIFACTS": str(tmp_path / "artifacts"),
        "VISEARCH_TRAIN__STEPS": "20",
        "OMP_NUM_THREADS": "1",
        "VISEARCH_TRAIN__BATCH_SIZE": "16",
        "VISEARCH_MODEL__IMAGE_SIZE": "32",
    }
    os.environ.update(env_roots)
    try:
        settings = load_settings()
        generate_demo(tmp_path / "landing", images=80, days=1, seed=1, size=32)
        env = airflow_env(tmp_path / "airflow")
        log = tmp_path / "airflow.log"
        init_airflow(env, log)
        dags_test("visearch_nightly", "2026-01-01", env, log_path=log)
        first = _snapshot(settings)
        assert first["CHAMPION"], "no model was promoted"
        assert first["CURRENT"], "no index was published"
        assert len(first["silver.images"]) >= 80
        assert first.get("gold.embeddings")
        dags_test("visearch_nightly", "2026-01-01", env, log_path=log)
        second = _snapshot(settings)
        for name in first:
            assert second[name] == first[name], f"{name} changed on rerun"
    finally:
        for key in env_roots:
            os.environ.pop(key, None)
