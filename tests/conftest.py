"""Shared fixtures: settings on a temporary lake, one Spark session per test run, S3Proxy."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from visearch.core.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose landing, lake and artifacts roots live in a fresh temporary folder."""
    return load_settings(
        env={
            "VISEARCH_LANDING": str(tmp_path / "landing"),
            "VISEARCH_LAKE": str(tmp_path / "lake"),
            "VISEARCH_ARTIFACTS": str(tmp_path / "artifacts"),
        }
    )


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session with Delta for the whole run (JVM start-up is the cost)."""
    from visearch.core.spark import get_spark

    session = get_spark(load_settings(env={}), "visearch-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real S3-compatible server (S3Proxy) on loopback, with environment pointing at it."""
    from tests.support.s3proxy import start_s3proxy

    server = start_s3proxy(tmp_path_factory.mktemp("s3proxy"))
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The real CIFAR-10 photographs in ../shared/data (present locally and in CI)."""
    path = SHARED_DATA / "cifar10-train"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the shared data folder must sit beside the repository")
    return path
