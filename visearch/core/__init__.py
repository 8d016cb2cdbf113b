"""Shared ground of every stage: settings, object storage, Spark sessions, Delta tables,
provenance, timing, fault points and the job entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.core.config import EmbedSettings as EmbedSettings
    from visearch.core.config import EvalSettings as EvalSettings
    from visearch.core.config import IngestSettings as IngestSettings
    from visearch.core.config import ModelSettings as ModelSettings
    from visearch.core.config import S3Settings as S3Settings
    from visearch.core.config import SearchSettings as SearchSettings
    from visearch.core.config import Settings as Settings
    from visearch.core.config import SparkSettings as SparkSettings
    from visearch.core.config import TrainSettings as TrainSettings
    from visearch.core.config import load_settings as load_settings
    from visearch.core.config import settings_from_json as settings_from_json
    from visearch.core.config import to_uri as to_uri
    from visearch.core.jobrun import JobContext as JobContext
    from visearch.core.jobrun import StrictArgumentParser as StrictArgumentParser
    from visearch.core.jobrun import check_ds as check_ds
    from visearch.core.jobrun import job_parser as job_parser
    from visearch.core.jobrun import parse_ds as parse_ds
    from visearch.core.jobrun import positive_int as positive_int
    from visearch.core.jobrun import run_job as run_job
    from visearch.core.jobrun import setup_logging as setup_logging
    from visearch.core.jvm import archive_path as archive_path
    from visearch.core.jvm import build_archive as build_archive
    from visearch.core.jvm import driver_java_options as driver_java_options
    from visearch.core.provenance import git_sha as git_sha
    from visearch.core.spark import extra_jars as extra_jars
    from visearch.core.spark import fast_start_conf as fast_start_conf
    from visearch.core.spark import fit_to_input as fit_to_input
    from visearch.core.spark import get_spark as get_spark
    from visearch.core.spark import local_cores as local_cores
    from visearch.core.spark import s3a_conf as s3a_conf
    from visearch.core.spark import spark_conf as spark_conf
    from visearch.core.spark import tiny_sql_active as tiny_sql_active
    from visearch.core.spark import to_spark_path as to_spark_path
    from visearch.core.storage import LocalStore as LocalStore
    from visearch.core.storage import ObjectStore as ObjectStore
    from visearch.core.storage import PointerConflictError as PointerConflictError
    from visearch.core.storage import S3Store as S3Store
    from visearch.core.storage import StorageError as StorageError
    from visearch.core.storage import join as join
    from visearch.core.storage import make_s3_client as make_s3_client
    from visearch.core.storage import open_store as open_store
    from visearch.core.storage import read_uri as read_uri
    from visearch.core.storage import sha256_bytes as sha256_bytes
    from visearch.core.storage import sha256_file as sha256_file
    from visearch.core.storage import split_uri as split_uri
    from visearch.core.timing import CostMeter as CostMeter
    from visearch.core.timing import StageTimer as StageTimer

_EXPORTS = {
    "EmbedSettings": "config",
    "EvalSettings": "config",
    "IngestSettings": "config",
    "ModelSettings": "config",
    "S3Settings": "config",
    "SearchSettings": "config",
    "Settings": "config",
    "SparkSettings": "config",
    "TrainSettings": "config",
    "load_settings": "config",
    "settings_from_json": "config",
    "to_uri": "config",
    "JobContext": "jobrun",
    "StrictArgumentParser": "jobrun",
    "check_ds": "jobrun",
    "job_parser": "jobrun",
    "parse_ds": "jobrun",
    "positive_int": "jobrun",
    "run_job": "jobrun",
    "setup_logging": "jobrun",
    "archive_path": "jvm",
    "build_archive": "jvm",
    "driver_java_options": "jvm",
    "git_sha": "provenance",
    "extra_jars": "spark",
    "fast_start_conf": "spark",
    "fit_to_input": "spark",
    "get_spark": "spark",
    "local_cores": "spark",
    "s3a_conf": "spark",
    "spark_conf": "spark",
    "tiny_sql_active": "spark",
    "to_spark_path": "spark",
    "LocalStore": "storage",
    "ObjectStore": "storage",
    "PointerConflictError": "storage",
    "S3Store": "storage",
    "StorageError": "storage",
    "join": "storage",
    "make_s3_client": "storage",
    "open_store": "storage",
    "read_uri": "storage",
    "sha256_bytes": "storage",
    "sha256_file": "storage",
    "split_uri": "storage",
    "CostMeter": "timing",
    "StageTimer": "timing",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
