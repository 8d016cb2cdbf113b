"""JVM options of local drivers: the class-data archive is used only when it exists for these jars."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from visearch.core import jvm


def _fake_java(folder: Path, version: str) -> Path:
    java = folder / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


@pytest.fixture
def cds_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VISEARCH_CDS_DIR", str(tmp_path / "cds"))
    return tmp_path / "cds"


def test_driver_java_options__cds_only_when_the_archive_exists(cds_dir: Path) -> None:
    assert jvm.driver_java_options(["cds"]) == ""
    path = jvm.archive_path()
    assert path is not None and path.parent == cds_dir and path.name.startswith("spark-")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    assert jvm.driver_java_options(["cds", "jit"]) == f"-XX:SharedArchiveFile={path} " + " ".join(jvm.JIT_OPTIONS)
    assert jvm.driver_java_options([]) == ""


def test_archive_key__changes_with_a_jar(tmp_path: Path) -> None:
    jar = tmp_path / "delta.jar"
    jar.write_bytes(b"v1")
    java = jvm.java_binary() or str(_fake_java(tmp_path, "17.0.15"))
    first = jvm.archive_key(java, [str(jar)])
    assert jvm.archive_key(java, [str(jar)]) == first
    jar.write_bytes(b"v2 longer")
    os.utime(jar, (1, 1))
    assert jvm.archive_key(java, [str(jar)]) != first


@pytest.mark.parametrize(("version", "major"), [("17.0.15", 17), ("1.8.0_392", 8), ("21", 21)])
def test_java_major_version(tmp_path: Path, version: str, major: int) -> None:
    assert jvm.java_major_version(str(_fake_java(tmp_path, version))) == major


def test_java_major_version__not_runnable(tmp_path: Path) -> None:
    assert jvm.java_major_version(str(tmp_path / "nope")) is None


def test_build_archive__old_jdk_gives_none_and_no_file(tmp_path: Path, cds_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    java = _fake_java(tmp_path, "1.8.0_392")
    monkeypatch.setenv("JAVA_HOME", str(java.parent.parent))
    assert jvm.build_archive() is None
    assert not cds_dir.exists() or not list(cds_dir.iterdir())
    assert jvm.driver_java_options(["cds"]) == ""


def test_build_archive__existing_archive_is_kept(cds_dir: Path) -> None:
    path = jvm.archive_path()
    assert path is not None
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    assert jvm.build_archive() == path and path.read_bytes() == b"archive"
