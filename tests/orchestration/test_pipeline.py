"""visearch.orchestration.pipeline: the chain as data matches the job files and the DAG."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from visearch.orchestration.pipeline import LIBRARY, NIGHTLY, library_run

REPO = Path(__file__).resolve().parents[2]


def test_library__names_the_module_each_job_file_calls() -> None:
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py")} - {"__init__"}
    assert set(NIGHTLY) == set(LIBRARY) == jobs
    for job in NIGHTLY:
        tree = ast.parse((REPO / "jobs" / f"{job}.py").read_text())
        sources = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)
                   and any(a.name == "run" for a in n.names)}
        assert sources == {LIBRARY[job]}, job


def test_library_run__imports_the_run_function_and_refuses_unknown_jobs() -> None:
    from visearch.ingest import quality_gate

    assert library_run("quality_gate") is quality_gate.run
    with pytest.raises(KeyError, match="no job 'nope'"):
        library_run("nope")
