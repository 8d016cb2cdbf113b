# visearch — the front door. `make help` lists the targets.
SHELL := /bin/bash
PY_VERSION ?= 3.11
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
JARS_CP := .jars.classpath
STAMP := $(VENV)/.visearch-setup-stamp
MVN_EXCLUDE_GROUPS := org.scala-lang,org.apache.logging.log4j,org.slf4j,org.apache.parquet,org.xerial.snappy,commons-logging,commons-pool,com.github.luben,io.airlift,javax.annotation,com.google.code.findbugs,org.locationtech.jts,org.roaringbitmap,com.fasterxml.jackson.core
MVN_EXCLUDE_ARTIFACTS := hadoop-client-runtime,hadoop-client-api
PYTEST_ARGS ?= --durations=40
export PYTHONPATH := $(CURDIR)

.PHONY: help setup run test test-fast lint bench bench-env bench-quality clean validate-infra lock

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(PY):
	python$(PY_VERSION) -m venv $(VENV)
	$(VENV)/bin/pip install -q uv

$(STAMP): $(PY) pyproject.toml requirements.lock infra/local/jars/pom.xml infra/local/s3proxy/pom.xml
	@# Packages: pinned by requirements.lock, downloaded once into uv's cache (~/.cache/uv).
	$(UV) pip install --python $(PY) -q -r requirements.lock
	$(UV) pip install --python $(PY) -q --no-deps -e .
	@# Spark's Delta + S3A jars and the S3Proxy test server: Maven Central into ~/.m2, once.
	cd infra/local/jars && mvn -q -B dependency:build-classpath -Dmdep.outputFile=$(CURDIR)/$(JARS_CP) \
	  -DincludeScope=runtime -DexcludeGroupIds=$(MVN_EXCLUDE_GROUPS) -DexcludeArtifactIds=$(MVN_EXCLUDE_ARTIFACTS)
	cd infra/local/s3proxy && mvn -q -B dependency:build-classpath -Dmdep.outputFile=$(CURDIR)/.s3proxy.classpath
	@# Headless Chromium (Debian package) for the report's browser test.
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@# PostgreSQL (Debian package) for the Airflow scheduler test's metadata database.
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	touch $(STAMP)

setup: $(STAMP) ## Create the venv, install pinned packages, resolve Spark jars, build the JVM class archive (cached)
	@# Class-data (AppCDS) archive of Spark and Delta for local drivers, in ~/.cache/visearch/cds:
	@# built once per JDK + jar set (a few minutes), instant afterwards; skipped when the JDK can't.
	@$(PY) -m visearch.core.jvm

run: setup ## Generate the demo corpus and run the nightly DAG through Airflow (embedded default)
	$(PY) -m visearch.cli demo-run

test: setup ## Run the whole test suite (unit, integration, end-to-end)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## Unit tests only (no Spark, no Airflow, no slow tests)
	$(PY) -m pytest -m "not slow and not spark and not airflow and not s3 and not browser" $(PYTEST_ARGS)

lint: setup ## ruff on everything, mypy strict on the package, the jobs and the DAGs
	$(VENV)/bin/ruff check visearch jobs dags tests
	$(VENV)/bin/mypy

BENCH_VENV := .venv-bench
# autofaiss (the index benchmark's comparison) pins numpy 1.x and an old faiss-cpu: its own venv.
$(BENCH_VENV)/bin/python: | $(PY)
	$(UV) venv -q --python $(PY_VERSION) $(BENCH_VENV)
	$(UV) pip install --python $(BENCH_VENV)/bin/python -q autofaiss==2.18.0 'pyarrow<20' faiss-cpu==1.8.0.post1

bench-env: $(BENCH_VENV)/bin/python ## The separate venv with autofaiss for `visearch bench index`

bench: setup bench-env ## All benchmarks (tables printed, JSON in bench-results/)
	$(PY) -m visearch.cli bench all --out bench-results

bench-quality: setup ## Retrieval quality on real photographs (../shared/data/cifar10-train)
	$(PY) -m visearch.cli bench quality --out bench-results

clean: ## Remove generated data (.visearch/) and caches in the tree
	rm -rf .visearch bench-results .venv-bench .pytest_cache .mypy_cache .ruff_cache

validate-infra: setup ## Check infra/ (Terraform fmt + HCL/IAM rules, YAML/schemas, Helm keys, Dockerfile lint)
	$(PY) -m pytest tests/infra -q

lock: $(PY) ## Re-pin requirements.lock from pyproject.toml (then commit it)
	$(UV) pip compile pyproject.toml --extra dev --python-version $(PY_VERSION) --no-header --no-annotate -o requirements.lock
