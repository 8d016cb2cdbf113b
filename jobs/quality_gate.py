"""Data-quality gate for a day: fail the run when the quarantine share is above the threshold.

The threshold is ``ingest.quarantine_share_max``; the counting is :func:`visearch.ingest.quality_gate.run`.

Try: python -m jobs.quality_gate --ds 2026-01-01
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.ingest.quality_gate import run


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds`` and ``--config``."""
    return job_parser("Fail the day when too many records were quarantined (before training/publishing). "
                      "Try: --ds 2026-01-01")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.quality_gate`` or ``spark-submit``)."""
    return run_job("quality_gate", build_parser(),
                   lambda ctx: run(ctx.settings, ctx.args.ds, timer=ctx.timer), argv)


if __name__ == "__main__":
    sys.exit(main())
