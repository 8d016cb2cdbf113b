"""The embedded Airflow's environment and how its commands' output is followed (no Airflow started)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from visearch.core.jvm import JIT_OPTIONS
from visearch.orchestration.airflow_env import _stream, airflow_env


@pytest.fixture(autouse=True)
def _no_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISEARCH_CDS_DIR", str(tmp_path / "cds"))
    monkeypatch.delenv("SPARK_SUBMIT_OPTS", raising=False)
    monkeypatch.delenv("VISEARCH_SPARK__FAST_START", raising=False)


def test_airflow_env__local_drivers_get_the_fast_start_jvm_options(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "home", spark_master="local[2]")
    assert env["SPARK_SUBMIT_OPTS"] == " ".join(JIT_OPTIONS)


def test_airflow_env__cluster_drivers_and_fast_start_off_get_none(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert "SPARK_SUBMIT_OPTS" not in airflow_env(tmp_path / "a", spark_master="spark://10.0.0.1:7077")
    monkeypatch.setenv("VISEARCH_SPARK__FAST_START", "off")
    assert "SPARK_SUBMIT_OPTS" not in airflow_env(tmp_path / "b", spark_master="local[2]")


def test_airflow_env__keeps_existing_submit_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_SUBMIT_OPTS", "-Dmine=1")
    env = airflow_env(tmp_path / "home")
    assert env["SPARK_SUBMIT_OPTS"].split() == ["-Dmine=1", *JIT_OPTIONS]


def test_stream__every_line_to_the_log_and_the_callback_as_it_comes() -> None:
    log, seen = io.StringIO(), []
    code = _stream([sys.executable, "-c", "import sys; print('a'); print('b', file=sys.stderr); sys.exit(3)"],
                   {}, log, seen.append, timeout=60)
    assert code == 3
    assert sorted(seen) == ["a\n", "b\n"] and sorted(log.getvalue().splitlines()) == ["a", "b"]


def test_stream__kills_a_command_past_its_timeout() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        _stream([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"], {}, io.StringIO(),
                lambda _line: None, timeout=1)
