"""DAG tests in the style of Airflow's own example-DAG tests, plus the task graph of the design."""

from __future__ import annotations

import importlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
SAMPLE_DS = "2026-01-02"
# Each DAG with its default params, and with these overrides (a run triggered with a conf).
SAMPLE_PARAMS: dict[str, list[dict[str, object]]] = {
    "visearch_nightly": [{}, {"retrain_every_days": 3}],
    "visearch_reindex": [{}, {"model_version": "v-2026-01-02-1a2b3c4d"}],
}

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
    "jobs": {t.task_id: getattr(t, "application", "").rsplit("/", 1)[-1].removesuffix(".py") for t in dag.tasks},
    "params": {k: dag.params[k] for k in dag.params.keys()},
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
    assert info["pools"]["train"] == "visearch_gpu"  # type: ignore[index]
    assert set(info["retries"].values()) == {2}  # type: ignore[union-attr]  # default retries
    for task in info["tasks"]:  # type: ignore[union-attr]
        assert (REPO / "jobs" / f"{task}.py").is_file(), f"task {task} has no job file"


# Jobs writing a shared Delta table or pointer (read off the library: T.replace_partition / T.merge /
# set_champion / swap_pointer). Listed here, not imported, so that the DAG wiring is checked against it.
WRITER_JOBS = {"ingest_images", "ingest_interactions", "online_metrics", "build_pairs", "evaluate", "promote",
               "embed", "publish_index"}


def test_dags__every_shared_writer_takes_the_one_writers_pool(tmp_path: Path) -> None:
    from visearch.orchestration.operators import SHARED_WRITERS, WRITERS_POOL

    assert set(SHARED_WRITERS) == WRITER_JOBS
    writers_seen = set()
    for dag_file in DAG_FILES:
        info = _parse(dag_file, tmp_path)
        for task, job in info["jobs"].items():  # type: ignore[union-attr]
            pool = info["pools"][task]  # type: ignore[index]
            if job in WRITER_JOBS:
                assert pool == WRITERS_POOL, f"{dag_file.stem}.{task} writes shared tables in pool {pool}"
                writers_seen.add((dag_file.stem, job))
            else:
                assert pool != WRITERS_POOL, f"{dag_file.stem}.{task} needs no writer slot"
    # Both DAGs write gold.embeddings and CURRENT: the pool is what keeps them apart.
    assert {("visearch_nightly", "embed"), ("visearch_reindex", "embed"),
            ("visearch_nightly", "publish_index"), ("visearch_reindex", "publish_index")} <= writers_seen


def test_spark_job__refuses_another_pool_for_a_writer() -> None:
    pytest.importorskip("airflow.providers.apache.spark")
    from visearch.orchestration.operators import spark_job

    with pytest.raises(ValueError, match=r"gold\.embeddings.*visearch_writers"):
        spark_job("embed", "embed", gpu=True, pool="default_pool")


def test_reindex__manual_and_full(tmp_path: Path) -> None:
    info = _parse(REPO / "dags" / "visearch_reindex.py", tmp_path)
    assert info["schedule"] in ("None", "")
    assert {tuple(e) for e in info["edges"]} == {("embed", "build_index"),  # type: ignore[union-attr]
                                                 ("build_index", "publish_index")}
    assert "--full" in info["args"]["embed"]  # type: ignore[index]
    for task in ("embed", "build_index"):  # the option in full: `--model` was once taken for another
        assert info["args"][task][2:4] == ["--model-version", "{{ params.model_version }}"]  # type: ignore[index]


def render(template: str, ds: str, params: dict[str, object]) -> str:
    """An application argument as Airflow renders it (``{{ ds }}``, ``{{ params.x }}``); unknown names fail."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(ds=ds, params=params)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag__every_tasks_rendered_arguments_parse_with_its_jobs_parser(dag_file: Path, tmp_path: Path) -> None:
    """What the DAG passes is what the job takes: no abbreviation, no unknown option, values through."""
    info = _parse(dag_file, tmp_path)
    jobs: dict[str, str] = info["jobs"]  # type: ignore[assignment]
    templates: dict[str, list[str]] = info["args"]  # type: ignore[assignment]
    parsed: set[str] = set()
    for overrides in SAMPLE_PARAMS[dag_file.stem]:
        params = {**info["params"], **overrides}  # type: ignore[dict-item]
        for task, job in sorted(jobs.items()):
            module = importlib.import_module(f"jobs.{job}")
            argv = [render(a, SAMPLE_DS, params) for a in templates[task]]
            args = module.build_parser().parse_args(argv)
            assert args.ds == SAMPLE_DS, task
            if "--model-version" in argv:
                assert args.model_version == params["model_version"], task
            if job == "embed" and dag_file.stem == "visearch_reindex":
                assert args.full is True
            parsed.add(job)
    assert parsed == set(jobs.values())  # every task's job, through its own parser
