"""Ingest a day's click log into silver.interactions (the ds partition replaced).

Lines are validated and deduplicated by event_id; rejects go to silver.quarantine with their
reason. The steps and decisions are on :mod:`visearch.ingest.click_log`.

Try: python -m jobs.ingest_interactions --ds 2026-01-01
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from visearch.core.jobrun import job_parser, run_job
from visearch.ingest.click_log import run


def build_parser() -> argparse.ArgumentParser:
    """The job's options: ``--ds`` and ``--config``."""
    return job_parser(
        "Ingest a day's click log: validate, dedupe by event_id, flag unknown images, replace the ds "
        "partition of silver.interactions; rejects to silver.quarantine. Try: --ds 2026-01-01"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m jobs.ingest_interactions`` or ``spark-submit``)."""
    return run_job("ingest_interactions", build_parser(),
                   lambda ctx: run(ctx.settings, ctx.args.ds, timer=ctx.timer), argv)


if __name__ == "__main__":
    sys.exit(main())
