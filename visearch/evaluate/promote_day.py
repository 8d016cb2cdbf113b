"""Promotion of a day's model: does the evaluated version become the champion (``models/CHAMPION``)?

The policy is :mod:`visearch.evaluate.promotion`; this applies it to a day, with the registry
holding the records and the pointer. Steps for ``ds``:

1. **Challenger**: the newest version trained for ``ds`` (or ``model_version``). None → no-op.
2. **Already decided** (``models/<challenger>/promotion.json`` exists, and not ``force``): the
   recorded decision stands, so a rerun gives the same decision and pointer. The only pointer
   write a rerun may do is finishing an interrupted promotion: the record says "promote" and
   CHAMPION still names the champion recorded at decision time. A pointer that has since moved
   on (a later day's promotion, a manual rollback) is left alone.
3. **Scores** from ``gold.model_metrics`` (eval set ``settings.eval.eval_set``, protocol
   ``settings.eval.promote_protocol``): the challenger's ``model`` rows, the baselines
   (``random_init``, ``color_histogram``) of the same run, and the champion's scores on the same
   queries and corpus (``champion`` rows of the challenger's evaluation); when the evaluation had
   no champion rows for the current champion (it was promoted later), the champion's own
   evaluation rows are used instead and the record says so.
4. **Decision**: :func:`visearch.evaluate.promotion.decide_promotion` with ``settings.eval.promote_tolerance``
   (first model: must beat both baselines; otherwise: not worse than the champion by more than
   the tolerance on nDCG@10). A challenger that already is the champion stays so.
5. **Record** ``models/<challenger>/promotion.json`` (both scores, baselines, reason, versions),
   then, when promoted, flip ``models/CHAMPION`` (written last).

Run by ``jobs/promote.py``; try: python -m jobs.promote --ds 2026-01-02
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from visearch.core import tables as T
from visearch.core.config import Settings
from visearch.core.jobrun import check_ds
from visearch.core.storage import open_store
from visearch.core.timing import StageTimer
from visearch.evaluate.evaluation import CHAMPION, COLOR_HISTOGRAM, MODEL, RANDOM_INIT
from visearch.evaluate.metrics import metric_name
from visearch.evaluate.promotion import PROMOTION_METRIC, PromotionDecision, decide_promotion

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from visearch.train.registry import ModelRegistry

log = logging.getLogger(__name__)

BASELINES = (RANDOM_INIT, COLOR_HISTOGRAM)


def _metrics(rows: list[Any], embedder: str, embedder_version: str | None = None) -> dict[str, float]:
    """``{"ndcg@10": ...}`` of one embedder's rows (optionally only those of one model version)."""
    return {metric_name(r["metric"], r["k"]): float(r["value"]) for r in rows
            if r["embedder"] == embedder
            and (embedder_version is None or r["embedder_version"] == embedder_version)}


def _finish_pointer(registry: ModelRegistry, challenger: str, record: dict[str, Any]) -> bool:
    """Apply a recorded decision to CHAMPION if a previous run stopped before doing so; whether it wrote."""
    current = registry.champion()
    if record.get("promote") and current != challenger:
        if current == record.get("champion_version"):
            log.info("finishing the recorded promotion of %s (CHAMPION still %s)", challenger, current)
            registry.set_champion(challenger)
            return True
        log.info("recorded promotion of %s is superseded: CHAMPION is now %s", challenger, current)
    return False


def run(settings: Settings, ds: str, *, spark: SparkSession | None = None, timer: StageTimer | None = None,
        model_version: str | None = None, force: bool = False) -> dict[str, Any]:
    """Decide and record the promotion of the day's model version (see the module docstring).

    Returns:
        ``decided`` (False with ``reason`` when there is no challenger); otherwise ``challenger``,
        ``champion_version`` (the incumbent the challenger was compared with), ``promoted``,
        ``reason``, ``challenger_ndcg10``, ``champion_ndcg10``, ``baseline_ndcg10``, ``reused``
        (a recorded decision was kept), ``champion`` (CHAMPION after the run) and ``record`` (URI).

    Raises:
        ValueError: for a bad ``ds``, a challenger without metrics in ``gold.model_metrics`` (run
            the evaluate job first), or an incumbent champion without any metrics.
        FileNotFoundError: for an explicit ``model_version`` that does not exist.
        LookupError: for ``model_version="CHAMPION"`` before any promotion.
    """
    from pyspark.sql import functions as F

    from visearch.core.spark import get_spark
    from visearch.train.registry import ModelRegistry

    check_ds(ds)
    timer = timer or StageTimer("promote")
    registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
    challenger = registry.resolve(model_version) if model_version else registry.newest_of_day(ds)
    if challenger is None:
        log.info("no model version trained for %s: nothing to promote", ds)
        return {"ds": ds, "decided": False, "reason": f"no model version of {ds}",
                "champion": registry.champion()}
    record = None if force else registry.promotion_record(challenger)
    reused = record is not None
    if record is None:
        eval_set, protocol = settings.eval.eval_set, settings.eval.promote_protocol
        incumbent = registry.champion()
        spark = spark or get_spark(settings, "visearch-promote")
        with timer.stage("read metrics"):
            wanted = [challenger] + ([incumbent] if incumbent and incumbent != challenger else [])
            rows = (T.read(spark, settings, T.GOLD_MODEL_METRICS)
                    .where(F.col("model_version").isin(wanted) & (F.col("eval_set") == eval_set)
                           & (F.col("protocol") == protocol))
                    .collect())
            ours = [r for r in rows if r["model_version"] == challenger]
            challenger_metrics = _metrics(ours, MODEL)
            if PROMOTION_METRIC not in challenger_metrics:
                raise ValueError(f"no {PROMOTION_METRIC} of {challenger} (set {eval_set!r}, protocol "
                                 f"{protocol!r}) in gold.model_metrics: run jobs.evaluate for {ds} first")
            baselines = {b: m for b in BASELINES if (m := _metrics(ours, b))}

        source: str | None = None
        champion_metrics: dict[str, float] | None = None
        if incumbent and incumbent != challenger:
            champion_metrics = _metrics(ours, CHAMPION, incumbent)
            source = "same_run"
            if PROMOTION_METRIC not in champion_metrics:
                theirs = [r for r in rows if r["model_version"] == incumbent]
                champion_metrics, source = _metrics(theirs, MODEL), "own_evaluation"
                if PROMOTION_METRIC not in champion_metrics:
                    raise ValueError(f"champion {incumbent} has no {PROMOTION_METRIC} in gold.model_metrics: "
                                     f"evaluate it (python -m jobs.evaluate --ds {ds} --model-version {incumbent})")
                log.warning("comparing with champion %s's own evaluation (it was not in %s's run)",
                            incumbent, challenger)

        if incumbent == challenger:
            score = challenger_metrics[PROMOTION_METRIC]
            base = {b: m[PROMOTION_METRIC] for b, m in baselines.items() if PROMOTION_METRIC in m}
            decision = PromotionDecision(True, f"{challenger} already is the champion", score, score, base,
                                         settings.eval.promote_tolerance)
        else:
            decision = decide_promotion(challenger_metrics, champion_metrics, baselines,
                                        settings.eval.promote_tolerance)
        record = {
            **decision.to_dict(),
            "challenger_version": challenger,
            "champion_version": incumbent if incumbent != challenger else None,
            "champion_metrics_from": source,
            "eval_set": eval_set,
            "protocol": protocol,
            "ds": ds,
        }
        with timer.stage("record"):
            # The record first, the pointer last: a crash in between is finished by the next run.
            registry.write_promotion_record(challenger, record)
            if decision.promote and registry.champion() != challenger:
                registry.set_champion(challenger)
    else:
        log.info("promotion of %s was decided before: %s", challenger, record.get("reason"))
        _finish_pointer(registry, challenger, record)

    return {
        "ds": ds,
        "decided": True,
        "challenger": challenger,
        "champion_version": record.get("champion_version"),
        "promoted": bool(record["promote"]),
        "reason": record["reason"],
        "challenger_ndcg10": record["challenger_ndcg10"],
        "champion_ndcg10": record["champion_ndcg10"],
        "baseline_ndcg10": record["baseline_ndcg10"],
        "reused": reused,
        "champion": registry.champion(),
        "record": registry.promotion_record_uri(challenger),
    }
