"""The nightly chain as data: each job's name, in run order, and the library module behind it.

``jobs/<name>.py`` is the command Airflow submits; :data:`LIBRARY` names the module whose ``run``
it calls, so tests and benchmarks can run the same chain in-process (one Spark session, no
spark-submit) without importing ``jobs``. Names are strings: orchestration imports no stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# The nightly DAG's jobs in one valid topological order of its dependencies.
NIGHTLY: tuple[str, ...] = (
    "ingest_images", "ingest_interactions", "online_metrics", "quality_gate", "build_pairs", "train",
    "evaluate", "promote", "embed", "build_index", "publish_index",
)
# job -> the library module whose ``run(settings, ds, *, spark=None, timer=None, ...)`` it calls.
LIBRARY: dict[str, str] = {
    "ingest_images": "visearch.ingest.images",
    "ingest_interactions": "visearch.ingest.click_log",
    "online_metrics": "visearch.evaluate.online_metrics",
    "quality_gate": "visearch.ingest.quality_gate",
    "build_pairs": "visearch.train.pair_table",
    "train": "visearch.train.train_day",
    "evaluate": "visearch.evaluate.evaluate_day",
    "promote": "visearch.evaluate.promote_day",
    "embed": "visearch.embed.embed_day",
    "build_index": "visearch.index.build",
    "publish_index": "visearch.index.publish",
}


def library_run(job: str) -> Callable[..., dict[str, Any]]:
    """The ``run`` function behind ``jobs/<job>.py`` (imported on call).

    Raises:
        KeyError: for a name that is not a job of the chain.
    """
    if job not in LIBRARY:
        raise KeyError(f"no job {job!r}; the jobs are {', '.join(NIGHTLY)}")
    run: Callable[..., dict[str, Any]] = importlib.import_module(LIBRARY[job]).run
    return run
