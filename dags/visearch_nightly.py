"""visearch_nightly: ingest, train, evaluate, embed, index and publish — one day at a time.

Wiring only: each task is one spark-submit of a file in jobs/ with ``--ds {{ ds }}``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from visearch.orchestration.operators import DEFAULT_ARGS, spark_jars, spark_job

with DAG(
    dag_id="visearch_nightly",
    description="Nightly refresh of the visual-search index",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    user_defined_macros={"visearch_jars": spark_jars},
    params={
        "retrain_every_days": Param(1, type="integer", minimum=1,
                                    description="train a challenger every N days (1 = every run)"),
    },
    tags=["visearch"],
) as dag:
    ingest_images = spark_job("ingest_images", "ingest_images")
    ingest_interactions = spark_job("ingest_interactions", "ingest_interactions")
    online_metrics = spark_job("online_metrics", "online_metrics")
    quality_gate = spark_job("quality_gate", "quality_gate")
    build_pairs = spark_job("build_pairs", "build_pairs")
    train = spark_job("train", "train", ["--retrain-every", "{{ params.retrain_every_days }}"], gpu=True)
    evaluate = spark_job("evaluate", "evaluate")
    promote = spark_job("promote", "promote")
    embed = spark_job("embed", "embed", gpu=True)
    build_index = spark_job("build_index", "build_index")
    publish_index = spark_job("publish_index", "publish_index")

    ingest_images >> ingest_interactions
    ingest_interactions >> online_metrics
    ingest_interactions >> quality_gate
    quality_gate >> build_pairs >> train >> evaluate >> promote >> embed >> build_index >> publish_index
