"""Evaluate the day's new model version beside two baselines and the champion into gold.model_metrics.

Judged and corpus protocols, nDCG/mAP/MRR/P/R at ``settings.eval.ks``; the steps are in
:mod:`visearch.evaluate.evaluate_day`.

Try: python -m jobs.evaluate --ds 2026-01-02 [--model-version v-2026-01-02-1a2b3c4d]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.evaluate.evaluate_day import MAX_CORPUS, run


def build_parser() -> argparse.ArgumentParser:
    """Options of ``jobs/evaluate.py`` (the DAG's arguments are tested against it)."""
    parser = job_parser(
        "Evaluate the day's model version (judged and corpus protocols, nDCG/mAP/MRR/P/R at "
        "settings.eval.ks) beside a random-weight network, a colour histogram and the champion, "
        "into gold.model_metrics. Try: --ds 2026-01-02"
    )
    parser.add_argument("--model-version", "--model", dest="model_version", default=None, metavar="VERSION",
                        help="evaluate this model version (or CHAMPION) instead of the newest one trained "
                             "for --ds")
    parser.add_argument("--max-corpus", type=int, default=MAX_CORPUS,
                        help=f"cap on corpus images (judged ones always kept; default {MAX_CORPUS})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.evaluate`` or ``spark-submit jobs/evaluate.py``)."""
    return run_job("evaluate", build_parser(), lambda ctx: run(
        ctx.settings, ctx.args.ds, timer=ctx.timer, model_version=ctx.args.model_version,
        max_corpus=ctx.args.max_corpus), argv)


if __name__ == "__main__":
    sys.exit(main())
