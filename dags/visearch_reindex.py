"""visearch_reindex: manual full re-embed, full index build and publish for a chosen model version."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from visearch.orchestration.operators import DEFAULT_ARGS, spark_jars, spark_job

with DAG(
    dag_id="visearch_reindex",
    description="Manual re-index: full re-embed with a model version, full build, publish",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros={"visearch_jars": spark_jars},
    params={
        "model_version": Param("CHAMPION", type="string",
                               description="model version to index with (CHAMPION: the promoted one)"),
    },
    tags=["visearch"],
) as dag:
    # The option's full name: job parsers take no abbreviation. Each job resolves CHAMPION itself.
    embed = spark_job("embed", "embed", ["--model-version", "{{ params.model_version }}", "--full"], gpu=True)
    build_index = spark_job("build_index", "build_index",
                            ["--model-version", "{{ params.model_version }}", "--mode", "full"])
    publish_index = spark_job("publish_index", "publish_index")
    embed >> build_index >> publish_index
