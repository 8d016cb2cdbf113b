"""DAG tests in the style of Airflow's own example-DAG tests, plus the task graph of the design."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))

PARSE_PROBE = r"""
import importlib.util, json, sys
import airflow.sdk

def refuse(*a, **k):
    raise RuntimeError("looked up at parse time")

airflow.sdk.BaseHook.get_connection = classmethod(refuse)
airflow.sdk.Variable.get = staticmethod(refuse)
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
print(json.dumps({
    "dag_id": dag.dag_id,
    "heavy": sorted(m for m in ("torch", "pyspark", "faiss", "pandas", "numpy") if m in sys.modules),
    "edges": sorted([t.task_id, d] for t in dag.tasks for d in t.downstream_task_ids),
    "tasks": sorted(t.task_id for t in dag.tasks),
    "max_active_runs": dag.max_active_runs,
    "schedule": str(dag.schedule if hasattr(dag, "schedule") else None),
    "retries": {t.task_id: t.retries for t in dag.tasks},
    "args": {t.task_id: list(getattr(t, "application_args", []) or []) for t in dag.tasks},
    "pools": {t.task_id: t.pool for t in dag.tasks},
}))
"""


def _parse(dag_file: Path, tmp_path: Path) -> dict[str, object]:
    # A metadata DB URL that cannot work: any query at parse time would fail the probe.
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent-dir/visearch/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    proc = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(dag_file)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag__imports_without_db_connections_or_heavy_libraries(dag_file: Path, tmp_path: Path) -> None:
    info = _parse(dag_file, tmp_path)
    assert info["dag_id"] == dag_file.stem
    assert info["heavy"] == []
    assert info["max_active_runs"] == 1
    for task, args in info["args"].items():  # type: ignore[union-attr]
        assert args[:2] == ["--ds", "{{ ds }}"], task


def test_nightly__task_graph_is_the_designed_chain(tmp_path: Path) -> None:
    info = _parse(REPO / "dags" / "visearch_nightly.py", tmp_path)
    edges = {tuple(e) for e in info["edges"]}  # type: ignore[union-attr]
    chain = ["quality_gate", "build_pairs", "train", "evaluate", "promote", "embed", "build_index",
             "publish_index"]
    expected = {("ingest_images", "ingest_interactions"), ("ingest_interactions", "online_metrics"),
                ("ingest_interactions", "quality_gate")}
    expected |= set(itertools.pairwise(chain))
    assert edges == expected
    assert info["pools"]["train"] == info["pools"]["embed"] == "visearch_gpu"  # type: ignore[index]
    assert set(info["retries"].values()) == {2}  # type: ignore[union-attr]  # default retries
    for task in info["tasks"]:  # type: ignore[union-attr]
        assert (REPO / "jobs" / f"{task}.py").is_file(), f"task {task} has no job file"


def test_reindex__manual_and_full(tmp_path: Path) -> None:
    info = _parse(REPO / "dags" / "visearch_reindex.py", tmp_path)
    assert info["schedule"] in ("None", "")
    assert {tuple(e) for e in info["edges"]} == {("embed", "build_index"),  # type: ignore[union-attr]
                                                 ("build_index", "publish_index")}
    assert "--full" in info["args"]["embed"]  # type: ignore[index]
