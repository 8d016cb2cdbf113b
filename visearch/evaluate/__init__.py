"""Evaluation: retrieval metrics, baselines, evaluating embedders on judged sets, promotion policy
and the HTML report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.evaluate.baselines import ColorHistogramEmbedder as ColorHistogramEmbedder
    from visearch.evaluate.cli import evaluate_folder as evaluate_folder
    from visearch.evaluate.cli import format_table as format_table
    from visearch.evaluate.evaluation import Embedder as Embedder
    from visearch.evaluate.evaluation import MetricRow as MetricRow
    from visearch.evaluate.evaluation import check_ks as check_ks
    from visearch.evaluate.evaluation import check_protocols as check_protocols
    from visearch.evaluate.evaluation import embed_ids as embed_ids
    from visearch.evaluate.evaluation import evaluate_embedders as evaluate_embedders
    from visearch.evaluate.evaluation import evaluate_vectors as evaluate_vectors
    from visearch.evaluate.evaluation import exact_top_k as exact_top_k
    from visearch.evaluate.evaluation import group_judgments as group_judgments
    from visearch.evaluate.evaluation import knn_accuracy_at as knn_accuracy_at
    from visearch.evaluate.evaluation import metrics_by_embedder as metrics_by_embedder
    from visearch.evaluate.evaluation import normalise as normalise
    from visearch.evaluate.evaluation import parse_judgments_csv as parse_judgments_csv
    from visearch.evaluate.evaluation import random_init_embedder as random_init_embedder
    from visearch.evaluate.evaluation import rank_judged as rank_judged
    from visearch.evaluate.evaluation import restrict_judgments as restrict_judgments
    from visearch.evaluate.evaluation import stable_sample as stable_sample
    from visearch.evaluate.metrics import evaluate_rankings as evaluate_rankings
    from visearch.evaluate.metrics import knn_accuracy as knn_accuracy
    from visearch.evaluate.metrics import metric_name as metric_name
    from visearch.evaluate.metrics import rank_by_scores as rank_by_scores
    from visearch.evaluate.promotion import PromotionDecision as PromotionDecision
    from visearch.evaluate.promotion import decide_promotion as decide_promotion
    from visearch.evaluate.promotion import reference_champion as reference_champion
    from visearch.evaluate.report import write_report as write_report

_EXPORTS = {
    "ColorHistogramEmbedder": "baselines",
    "evaluate_folder": "cli",
    "format_table": "cli",
    "Embedder": "evaluation",
    "MetricRow": "evaluation",
    "check_ks": "evaluation",
    "check_protocols": "evaluation",
    "embed_ids": "evaluation",
    "evaluate_embedders": "evaluation",
    "evaluate_vectors": "evaluation",
    "exact_top_k": "evaluation",
    "group_judgments": "evaluation",
    "knn_accuracy_at": "evaluation",
    "metrics_by_embedder": "evaluation",
    "normalise": "evaluation",
    "parse_judgments_csv": "evaluation",
    "random_init_embedder": "evaluation",
    "rank_judged": "evaluation",
    "restrict_judgments": "evaluation",
    "stable_sample": "evaluation",
    "evaluate_rankings": "metrics",
    "knn_accuracy": "metrics",
    "metric_name": "metrics",
    "rank_by_scores": "metrics",
    "PromotionDecision": "promotion",
    "decide_promotion": "promotion",
    "reference_champion": "promotion",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
