"""The Spark configuration of a job: fast start for local masters only, pure (no JVM started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from visearch.core.config import FAST_START_PARTS, SparkSettings, load_settings
from visearch.core.spark import TINY_SQL_CONF, fast_start_conf, local_cores, spark_conf


@pytest.fixture(autouse=True)
def _no_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISEARCH_CDS_DIR", str(tmp_path / "cds"))  # no archive there


def test_fast_start__on_by_default_for_a_local_master() -> None:
    settings = load_settings(env={})
    assert settings.spark.fast_start == FAST_START_PARTS
    conf = spark_conf(settings, "x")
    assert {k: conf[k] for k in TINY_SQL_CONF} == TINY_SQL_CONF
    assert conf["spark.sql.shuffle.partitions"] == "2", "one partition per core of local[2]"
    assert conf["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData"


def test_fast_start__off_is_todays_configuration() -> None:
    on = spark_conf(load_settings(env={}), "x")
    off = spark_conf(load_settings(env={"VISEARCH_SPARK__FAST_START": "off"}), "x")
    assert "spark.driver.extraJavaOptions" not in off and "spark.sql.codegen.wholeStage" not in off
    assert off["spark.sql.shuffle.partitions"] == "4"
    assert set(on) - set(off) == {"spark.driver.extraJavaOptions", *TINY_SQL_CONF}


def test_fast_start__never_for_a_cluster_master() -> None:
    settings = load_settings(env={"VISEARCH_SPARK_MASTER": "spark://10.0.0.1:7077"})
    assert fast_start_conf(settings) == {}
    assert "spark.driver.extraJavaOptions" not in spark_conf(settings, "x")


def test_fast_start__parts_one_by_one_and_explicit_settings_win() -> None:
    jit = load_settings(env={"VISEARCH_SPARK__FAST_START": "jit"})
    assert jit.spark.fast_start == ("jit",)
    assert "spark.sql.codegen.wholeStage" not in fast_start_conf(jit)
    sql = load_settings(env={"VISEARCH_SPARK__FAST_START": "tiny_sql",
                             "VISEARCH_SPARK_CONF": "spark.sql.codegen.wholeStage=true"})
    conf = spark_conf(sql, "x")
    assert "spark.driver.extraJavaOptions" not in conf
    assert conf["spark.sql.codegen.wholeStage"] == "true", "settings.spark.conf overrides fast start"


@pytest.mark.parametrize("value", ["on", "all", "ON", "cds,jit,tiny_sql"])
def test_fast_start__on_means_every_part(value: str) -> None:
    assert load_settings(env={"VISEARCH_SPARK__FAST_START": value}).spark.fast_start == FAST_START_PARTS


def test_fast_start__yaml_booleans(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("spark:\n  fast_start: off\n")
    assert load_settings(path, env={}).spark.fast_start == ()


def test_fast_start__unknown_part_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parts \\['aot'\\]"):
        SparkSettings(fast_start=("jit", "aot"))


@pytest.mark.parametrize(("master", "cores"), [("local", 1), ("local[3]", 3), ("local[2,4]", 2)])
def test_local_cores(master: str, cores: int) -> None:
    assert local_cores(master) == cores
    assert SparkSettings(master=master).is_local


def test_local_cores__star_and_cluster() -> None:
    assert local_cores("local[*]") >= 1
    assert not SparkSettings(master="spark://h:7077").is_local
    with pytest.raises(ValueError, match="not a local master"):
        local_cores("yarn")


@pytest.mark.spark
def test_tables_read__a_table_over_tiny_input_mb_turns_code_generation_back_on(spark: Any, settings: Any) -> None:
    from visearch.core import tables as T
    from visearch.core.spark import tiny_sql_active

    before = {k: spark.conf.get(k, None) for k in TINY_SQL_CONF}
    try:
        for key, value in TINY_SQL_CONF.items():
            spark.conf.set(key, value)
        rows = spark.createDataFrame([("2026-01-01", "ctr", None, 0.5)], T.GOLD_ONLINE_METRICS.schema)
        T.replace_partition(spark, settings, T.GOLD_ONLINE_METRICS, rows, "ds = '2026-01-01'")
        size = T.size_bytes(settings, T.GOLD_ONLINE_METRICS)
        assert size is not None and size > 0
        assert T.read(spark, settings, T.GOLD_ONLINE_METRICS).count() == 1
        assert tiny_sql_active(spark), "a few hundred bytes are under the default 64 MB"
        zero = settings.replace(spark=SparkSettings(tiny_input_mb=0))
        assert T.read(spark, zero, T.GOLD_ONLINE_METRICS).count() == 1
        assert not tiny_sql_active(spark)
        assert spark.conf.get("spark.sql.codegen.wholeStage") == "true"
        assert T.size_bytes(settings, T.GOLD_EMBEDDINGS) is None, "no table, no checksum"
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
