"""Airflow local settings of the visearch deployment: one identity and one Spark profile per job.

The Helm chart mounts this file as ``airflow_local_settings.py`` (``airflowLocalSettings`` in
``values.yaml`` holds the same text; ``tests/infra`` checks that they match). Its
``pod_mutation_hook`` runs in the scheduler on every pod the KubernetesExecutor launches. For the
tasks of the visearch DAGs it

- sets the pod's service account to the job's role (IRSA: ``visearch-etl``, ``visearch-ml`` or
  ``visearch-index``, each bound to a least-privilege IAM role by ``infra/terraform/iam.tf``);
- appends the job's Spark settings to ``VISEARCH_SPARK_CONF`` (read by ``visearch.core.config``): the
  executors' service account, the driver pod that owns them, and for GPU jobs the GPU resource,
  discovery script and GPU node pod template;
- sets job-specific ``VISEARCH_*`` knobs (e.g. distributed training on GPU executors).

The task pod is the Spark driver (``deploy-mode client``), so its executors inherit what is set
here. A task of a visearch DAG without a profile fails to launch: a new job must be given its
least-privilege identity before it runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

VISEARCH_DAGS = frozenset({"visearch_nightly", "visearch_reindex"})
SPARK_DIR = "/opt/visearch/infra/k8s/spark"
GPU_DISCOVERY_SCRIPT = f"{SPARK_DIR}/getGpusResources.sh"
GPU_EXECUTOR_POD_TEMPLATE = f"{SPARK_DIR}/executor-gpu-pod-template.yaml"

GPU_SPARK_CONF: dict[str, str] = {
    "spark.executor.resource.gpu.amount": "1",
    "spark.task.resource.gpu.amount": "1",
    "spark.executor.resource.gpu.vendor": "nvidia.com",
    "spark.executor.resource.gpu.discoveryScript": GPU_DISCOVERY_SCRIPT,
    "spark.kubernetes.executor.podTemplateFile": GPU_EXECUTOR_POD_TEMPLATE,
}


@dataclass(frozen=True)
class TaskProfile:
    """What a job's task pod runs as: its service account, GPU use, Spark settings and env."""

    service_account: str
    gpu: bool = False
    spark_conf: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def executor_service_account(self) -> str:
        """The executors' account: same IAM role (IRSA), no RoleBinding, no API token mounted.

        Only the driver (the task pod) may create pods; code running in an executor cannot start
        a pod under any account.
        """
        return f"{self.service_account}-executor"


ETL = TaskProfile("visearch-etl")
ML = TaskProfile("visearch-ml")
INDEX = TaskProfile("visearch-index")

TASK_PROFILES: dict[str, TaskProfile] = {
    "ingest_images": TaskProfile("visearch-etl", spark_conf={"spark.dynamicAllocation.maxExecutors": "128"}),
    "ingest_interactions": ETL,
    "online_metrics": ETL,
    "quality_gate": ETL,
    "build_pairs": ETL,
    # TorchDistributor runs one barrier task per GPU: barrier stages need a fixed executor count.
    "train": TaskProfile(
        "visearch-ml",
        gpu=True,
        spark_conf={
            "spark.dynamicAllocation.enabled": "false",
            "spark.executor.instances": "4",
            "spark.executor.cores": "8",
            "spark.executor.memory": "48g",
            "spark.executor.memoryOverhead": "16g",
        },
        env={"VISEARCH_TRAIN__USE_GPU": "true", "VISEARCH_TRAIN__NUM_PROCESSES": "4"},
    ),
    "evaluate": ML,
    "promote": ML,
    "embed": TaskProfile(
        "visearch-ml",
        gpu=True,
        spark_conf={
            "spark.dynamicAllocation.maxExecutors": "32",
            "spark.executor.cores": "8",
            "spark.executor.memory": "32g",
            "spark.executor.memoryOverhead": "16g",
        },
    ),
    # Faiss shards are built in the Python workers: memory goes to the overhead, not the JVM heap.
    "build_index": TaskProfile(
        "visearch-index",
        spark_conf={
            "spark.dynamicAllocation.maxExecutors": "256",
            "spark.executor.cores": "8",
            "spark.executor.memory": "16g",
            "spark.executor.memoryOverhead": "48g",
        },
    ),
    "publish_index": INDEX,
}


def parse_conf(text: str) -> dict[str, str]:
    """Parse ``key=value,key=value`` (the ``VISEARCH_SPARK_CONF`` format).

    Raises:
        ValueError: for an item without ``=``.
    """
    conf: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value in VISEARCH_SPARK_CONF, got {item!r}")
        conf[key.strip()] = value.strip()
    return conf


def format_conf(conf: dict[str, str]) -> str:
    """Inverse of :func:`parse_conf`.

    Raises:
        ValueError: for a key or value that the format cannot carry (a comma, or ``=`` in a key).
    """
    bad = {k: v for k, v in conf.items() if "," in k or "=" in k or "," in v}
    if bad:
        raise ValueError(f"VISEARCH_SPARK_CONF cannot carry commas (or '=' in keys): {bad}")
    return ",".join(f"{k}={v}" for k, v in conf.items())


def spark_conf_for(profile: TaskProfile, driver_pod_name: str) -> dict[str, str]:
    """The Spark settings a task pod adds for its job (the pod is the client-mode driver)."""
    conf = {
        "spark.kubernetes.authenticate.executor.serviceAccountName": profile.executor_service_account,
        "spark.kubernetes.driver.pod.name": driver_pod_name,
    }
    if profile.gpu:
        conf.update(GPU_SPARK_CONF)
    conf.update(profile.spark_conf)
    return conf


def profile_for(dag_id: str | None, task_id: str | None) -> TaskProfile | None:
    """The profile of a visearch task; ``None`` for pods of other DAGs.

    Raises:
        ValueError: for a task of a visearch DAG that has no profile.
    """
    if dag_id not in VISEARCH_DAGS:
        return None
    if task_id not in TASK_PROFILES:
        raise ValueError(
            f"task {task_id!r} of DAG {dag_id!r} has no entry in TASK_PROFILES "
            "(infra/k8s/airflow/airflow_local_settings.py): give it a service account first"
        )
    return TASK_PROFILES[task_id]


def pod_mutation_hook(pod: Any) -> None:
    """Give a visearch task pod its job's service account, Spark settings and environment.

    Raises:
        ValueError: for a task of a visearch DAG that has no profile (the pod is not launched).
    """
    from kubernetes.client import models as k8s

    meta = pod.metadata
    annotations = meta.annotations or {}
    labels = meta.labels or {}
    dag_id = annotations.get("dag_id") or labels.get("dag_id")
    task_id = annotations.get("task_id") or labels.get("task_id")
    profile = profile_for(dag_id, task_id)
    if profile is None:
        return
    pod.spec.service_account_name = profile.service_account
    containers = pod.spec.containers
    base = next((c for c in containers if c.name == "base"), containers[0])
    env = list(base.env or [])
    current = {e.name: e.value for e in env}
    conf = parse_conf(current.get("VISEARCH_SPARK_CONF") or "")
    conf.update(spark_conf_for(profile, meta.name))
    extra = {"VISEARCH_SPARK_CONF": format_conf(conf), **profile.env}
    if profile.gpu:
        extra["VISEARCH_SPARK_GPUS"] = "1"
    env = [e for e in env if e.name not in extra]
    env.extend(k8s.V1EnvVar(name=name, value=value) for name, value in extra.items())
    base.env = env
    log.info("visearch pod %s: dag=%s task=%s service_account=%s gpu=%s",
             meta.name, dag_id, task_id, profile.service_account, profile.gpu)
