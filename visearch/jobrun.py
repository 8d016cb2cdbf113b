"""What every Spark job in ``jobs/`` shares: the common arguments, logging and the job report.

A job file stays a thin command: ``parser = job_parser(...)``, ``args = parser.parse_args()``,
``ctx = JobContext.start("name", args)``, one call into the library, ``ctx.finish(result)``.
The job's result (counts and URIs, never data) is printed as the last stdout line as JSON so
that Airflow can push it to XCom.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from visearch.config import Settings, load_settings
from visearch.timing import StageTimer

log = logging.getLogger(__name__)


def parse_ds(value: str) -> str:
    """Validate a ``YYYY-MM-DD`` logical date.

    Raises:
        argparse.ArgumentTypeError: for anything else.
    """
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--ds must be YYYY-MM-DD, got {value!r}") from exc
    if len(value) != 10:
        raise argparse.ArgumentTypeError(f"--ds must be YYYY-MM-DD, got {value!r}")
    return value


def job_parser(description: str, *, needs_ds: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes (``--ds``, ``--config``)."""
    parser = argparse.ArgumentParser(description=description)
    if needs_ds:
        parser.add_argument("--ds", required=True, type=parse_ds,
                            help="logical date of the run, YYYY-MM-DD (Airflow passes {{ ds }})")
    parser.add_argument("--config", default=None,
                        help="YAML settings file (default: $VISEARCH_CONFIG, then environment variables)")
    return parser


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr with timestamps; quiet the chatty libraries."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "s3transfer", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class JobContext:
    """A running job: its name, settings and stage timer."""

    name: str
    settings: Settings
    timer: StageTimer
    args: argparse.Namespace
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, name: str, args: argparse.Namespace) -> JobContext:
        """Set up logging and load settings for a job invocation."""
        setup_logging()
        settings = load_settings(getattr(args, "config", None))
        log.info("job %s starting with %s", name, {k: v for k, v in vars(args).items()})
        return cls(name=name, settings=settings, timer=StageTimer(name), args=args)

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Log the stage summary and print the result as the last stdout line (for XCom)."""
        result = {"job": self.name, **result, "stage_seconds": self.timer.seconds}
        log.info(self.timer.summary())
        text = json.dumps(result, sort_keys=True, default=str)
        ds = getattr(self.args, "ds", None)
        if ds:
            # The run record: what each job did for a day, read by `make run`'s summary and the report.
            from visearch.storage import open_store

            open_store(self.settings.artifacts, self.settings.s3).put_text(f"runs/{ds}/{self.name}.json", text)
        print(text, flush=True)
        return result
