"""``visearch bench overhead``: the fixed cost of every nightly job, with the start-up cuts off and on.

Each Spark job of ``visearch_nightly`` runs as Airflow runs it, a process of its own
(``python -m jobs.<name> --ds D``, which launches its own driver JVM), in DAG order, first on a
small demo day (:func:`visearch.demo.corpus.generate_demo`, ``--images`` images) and then on the
empty day after it (no new uploads or clicks: what remains is fixed cost). Every variant of
``--variants`` (``settings.spark.fast_start``: ``off`` is today's baseline, ``on`` every cut of
:mod:`visearch.core.jvm` and :mod:`visearch.core.spark`) has its own lake and artifacts, and the
variants take turns job by job (the first job runs off then on, the next on then off, ...) so
that a load that changes during the run hits both alike. ``os.getloadavg()`` is recorded with
every run.

Per job and variant, from the job's run record (``overhead_seconds`` and ``stage_seconds``) and
the wall clock around the process:

- ``start``: JVM launch (spark-submit's launcher, then the driver JVM up to its Py4J gateway)
  plus the Spark session with Delta (``jvm_s`` + ``session_s``);
- ``delta_log``: resolving table snapshots from Delta logs (``tables.exists/read/version``);
- ``work``: the job's timed stages less their Delta log reads (planning and execution);
- ``other``: the rest of the wall time (Python start and imports, the run record, exit).

The summary gives, per day and variant, the median over the jobs (``train`` is left out: its
time is training, not a fixed cost; it is listed on its own) and the ratio to the first variant.

Output: two tables and ``<out>/overhead.json``.
Try: ``visearch bench overhead --quick --jobs ingest_images,quality_gate`` (minutes) or
``visearch bench overhead`` (the whole chain, ~30-60 min on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# The Spark jobs of dags/visearch_nightly.py in dependency order (tests check it against the DAG).
CHAIN: tuple[str, ...] = (
    "ingest_images", "ingest_interactions", "online_metrics", "quality_gate", "build_pairs", "train",
    "evaluate", "promote", "embed", "build_index", "publish_index",
)
NOT_FIXED = frozenset({"train"})
"""Jobs whose time is their work whatever the day brings: reported, kept out of the medians."""
DEMO_DS = "2026-01-01"
DAYS = ("demo", "empty")
OK = "ok"


@dataclass(frozen=True)
class Variant:
    """A named ``settings.spark.fast_start`` value (``off``, ``on`` or parts joined by ``+``), and
    optionally extra Spark settings (``VISEARCH_SPARK_CONF``) to try a candidate before adopting it."""

    name: str
    fast_start: str
    spark_conf: str = ""


@dataclass
class JobTiming:
    """One job process of one variant on one day, split into where its seconds went."""

    day: str
    ds: str
    job: str
    variant: str
    status: str
    wall_s: float
    jvm_s: float = 0.0
    session_s: float = 0.0
    delta_log_s: float = 0.0
    delta_log_reads: int = 0
    stages_s: float = 0.0
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def start_s(self) -> float:
        """JVM launch plus Spark session."""
        return self.jvm_s + self.session_s

    @property
    def work_s(self) -> float:
        """The job's timed stages less the Delta log reads inside them."""
        return max(self.stages_s - self.delta_log_s, 0.0)

    @property
    def other_s(self) -> float:
        """Wall time outside the JVM, session, log reads and stages: Python start, imports, exit."""
        return max(self.wall_s - self.start_s - self.delta_log_s - self.work_s, 0.0)

    def as_row(self) -> dict[str, Any]:
        """The table/JSON form, with the derived columns."""
        row = asdict(self)
        row.update(start_s=self.start_s, work_s=self.work_s, other_s=self.other_s)
        return row


def parse_variants(text: str) -> list[Variant]:
    """``off,on`` or ``NAME=PARTS[;key=value...],...`` into variants.

    ``PARTS`` are ``fast_start`` parts joined by ``+`` (``jit=jit``, ``cds=cds``, ``sql=tiny_sql``,
    ``on``, ``off``); ``;key=value`` adds a Spark setting, e.g.
    ``nostats=on;spark.databricks.delta.stats.collect=false``.

    Raises:
        ValueError: for an empty list, a repeated name, a ``fast_start`` value settings refuse or a
            setting without ``=``.
    """
    from visearch.core.config import SparkSettings

    variants = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        spec, *confs = item.split(";")
        name, _, parts = spec.partition("=")
        parts = (parts or name).replace("+", ",")
        SparkSettings(fast_start=tuple(parts.split(",")))  # raises on an unknown part
        if any("=" not in c for c in confs):
            raise ValueError(f"--variants: settings must be key=value, got {item!r}")
        variants.append(Variant(name.strip(), parts, ",".join(confs)))
    names = [v.name for v in variants]
    if not variants or len(set(names)) != len(names):
        raise ValueError(f"--variants needs distinct names, got {text!r}")
    return variants


def parse_jobs(text: str | None) -> list[str]:
    """The ``--jobs`` subset in DAG order (all of :data:`CHAIN` when empty).

    Raises:
        ValueError: for a job that is not in the nightly chain.
    """
    if not text:
        return list(CHAIN)
    picked = {j.strip() for j in text.split(",") if j.strip()}
    unknown = sorted(picked - set(CHAIN))
    if unknown:
        raise ValueError(f"--jobs: not jobs of the nightly chain: {unknown}; choose from {CHAIN}")
    return [j for j in CHAIN if j in picked]


def timing_from_result(day: str, ds: str, job: str, variant: str, wall: float,
                       result: Mapping[str, Any], loadavg: tuple[float, float, float]) -> JobTiming:
    """A :class:`JobTiming` from a job's result line (``overhead_seconds``, ``stage_seconds``)."""
    overhead = result.get("overhead_seconds") or {}
    stages = {str(k): float(v) for k, v in (result.get("stage_seconds") or {}).items()}
    return JobTiming(
        day=day, ds=ds, job=job, variant=variant, status=OK, wall_s=wall,
        jvm_s=float(overhead.get("jvm_launch", 0.0)), session_s=float(overhead.get("spark_session", 0.0)),
        delta_log_s=float(overhead.get("delta_log", 0.0)), delta_log_reads=int(overhead.get("delta_log_n", 0)),
        stages_s=sum(stages.values()), loadavg=loadavg, stage_seconds=stages,
    )


def summarise(timings: Sequence[JobTiming], variants: Sequence[str]) -> list[dict[str, Any]]:
    """Per day and variant: medians over the jobs that ran in every variant (``train`` apart).

    ``ratio`` is the variant's median wall time over the first variant's, on the same jobs.
    """
    rows: list[dict[str, Any]] = []
    for day in dict.fromkeys(t.day for t in timings):
        by_job: dict[str, dict[str, JobTiming]] = {}
        for t in timings:
            if t.day == day and t.status == OK:
                by_job.setdefault(t.job, {})[t.variant] = t
        fixed = [j for j, runs in by_job.items() if j not in NOT_FIXED and all(v in runs for v in variants)]
        if not fixed:
            continue
        base = statistics.median(by_job[j][variants[0]].wall_s for j in fixed)
        for v in variants:
            runs = [by_job[j][v] for j in fixed]
            wall = statistics.median(r.wall_s for r in runs)
            rows.append({
                "day": day, "variant": v, "jobs": len(runs),
                "median_wall_s": wall,
                "median_start_s": statistics.median(r.start_s for r in runs),
                "median_delta_log_s": statistics.median(r.delta_log_s for r in runs),
                "median_work_s": statistics.median(r.work_s for r in runs),
                "median_other_s": statistics.median(r.other_s for r in runs),
                "total_wall_s": sum(r.wall_s for r in runs),
                "ratio": wall / base if base > 0 else float("nan"),
            })
    return rows


def variant_env(base: Mapping[str, str], root: Path, landing: Path, variant: Variant,
                train_steps: int) -> dict[str, str]:
    """The environment of a variant's job processes: its own lake and artifacts, one landing."""
    env = {k: v for k, v in base.items() if not k.startswith("VISEARCH_FAULT")}
    env.update({
        "VISEARCH_LANDING": str(landing),
        "VISEARCH_LAKE": str(root / "lake"),
        "VISEARCH_ARTIFACTS": str(root / "artifacts"),
        "VISEARCH_SPARK__FAST_START": variant.fast_start,
        "VISEARCH_SPARK_CONF": ",".join(c for c in (base.get("VISEARCH_SPARK_CONF", ""), variant.spark_conf) if c),
        "VISEARCH_TRAIN__STEPS": str(train_steps),
        "PYTHONPATH": str(REPO) + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else ""),
        "OMP_NUM_THREADS": base.get("OMP_NUM_THREADS", "2"),
        "TMPDIR": str(root / "tmp"),
    })
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def run_job_process(job: str, ds: str, env: Mapping[str, str], logs: Path,
                    timeout: float) -> tuple[int, float, str, str]:
    """Run ``python -m jobs.<job> --ds <ds>`` in a session of its own; ``(exit, seconds, stdout, stderr)``.

    The process group (the driver JVM and Python workers included) is killed on the way out.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{job}-{ds}.out", logs / f"{job}-{ds}.err"
    start = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", f"jobs.{job}", "--ds", ds], cwd=REPO, env=dict(env),
                                stdout=out, stderr=err, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = -signal.SIGKILL
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return code, time.perf_counter() - start, out_path.read_text(), err_path.read_text()


def measure(job: str, day: str, ds: str, variant: Variant, env: Mapping[str, str], logs: Path,
            timeout: float) -> JobTiming:
    """Run one job process and split its time (a failed run is kept with its error)."""
    load = os.getloadavg()
    code, wall, stdout, stderr = run_job_process(job, ds, env, logs, timeout)
    results = [line for line in stdout.splitlines() if line.startswith("{")]
    if code != 0 or not results:
        log.warning("%s %s (%s) failed with exit %d: %s", job, ds, variant.name, code, stderr[-1500:])
        return JobTiming(day=day, ds=ds, job=job, variant=variant.name, status=f"exit {code}", wall_s=wall,
                         loadavg=load, error=stderr[-1500:])
    return timing_from_result(day, ds, job, variant.name, wall, json.loads(results[-1]), load)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--jobs", default=None,
                        help=f"comma-separated subset of the nightly jobs (default all: {','.join(CHAIN)})")
    parser.add_argument("--variants", default="off,on",
                        help="fast_start variants, the first one the baseline: off,on (default), or NAME=PARTS "
                             "with PARTS from cds, jit, tiny_sql joined by + (e.g. off,jit=jit,cds=cds,on)")
    parser.add_argument("--days", default=",".join(DAYS),
                        help="which days: demo (a small demo day) and/or empty (the day after, no new data)")
    parser.add_argument("--images", type=int, default=150, help="demo images on the demo day (default 150)")
    parser.add_argument("--size", type=int, default=64, help="demo image side in pixels (default 64)")
    parser.add_argument("--train-steps", type=int, default=20,
                        help="training steps of the train job (default 20; train is reported apart)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per job process (default 1800)")
    parser.add_argument("--workdir", default=None, help="keep landing, lakes and job logs here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="24 images of 32 px, 5 training steps (tests)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the jobs on each day with each variant; print the tables and write ``<out>/overhead.json``.

    Raises:
        ValueError: for an unknown job, variant or day.
    """
    from visearch.bench import print_table, write_result
    from visearch.core.jobrun import setup_logging
    from visearch.core.jvm import archive_path, build_archive
    from visearch.demo.corpus import generate_demo

    setup_logging()
    jobs = parse_jobs(args.jobs)
    variants = parse_variants(args.variants)
    days = [d.strip() for d in args.days.split(",") if d.strip()]
    if not days or set(days) - set(DAYS):
        raise ValueError(f"--days takes demo and/or empty, got {args.days!r}")
    images, size, steps = (24, 32, 5) if args.quick else (args.images, args.size, args.train_steps)
    if any("cds" in v.fast_start or v.fast_start in ("on", "all") for v in variants):
        build_archive()  # instant when `make setup` made it
    archive = archive_path()
    ds_of = {"demo": DEMO_DS, "empty": (dt.date.fromisoformat(DEMO_DS) + dt.timedelta(days=1)).isoformat()}
    load_start = os.getloadavg()
    started = time.perf_counter()
    timings: list[JobTiming] = []
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="visearch-overhead-")))
        landing = work / "landing"
        # Quick: no bad records (the 9 of a demo day would fail the quality gate on 24 images).
        generate_demo(landing, images=images, days=1, seed=0, size=size, start_ds=DEMO_DS, progress=False,
                      bad_share=0.0 if args.quick else 0.02)
        for v in variants:  # a kept --workdir starts from empty lakes too
            shutil.rmtree(work / v.name, ignore_errors=True)
        envs = {v.name: variant_env(os.environ, work / v.name, landing, v, steps) for v in variants}
        for day in days:
            for i, job in enumerate(jobs):
                order = variants if i % 2 == 0 else variants[::-1]
                for v in order:
                    print(f"  {day:<5} {job:<20} {v.name:<8} ...", end="", flush=True)
                    timing = measure(job, day, ds_of[day], v, envs[v.name], work / v.name / "logs", args.timeout)
                    timings.append(timing)
                    print(f" {timing.wall_s:6.1f}s {timing.status} (load {timing.loadavg[0]:.1f})", flush=True)
    rows = [t.as_row() for t in timings]
    columns = ["day", "job", "variant", "status", "wall_s", "start_s", "jvm_s", "session_s", "delta_log_s",
               "delta_log_reads", "work_s", "other_s"]
    print_table([{c: (round(r[c], 2) if isinstance(r[c], float) else r[c]) for c in columns} for r in rows], columns)
    summary = summarise(timings, [v.name for v in variants])
    print()
    print_table([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in summary])
    result: dict[str, Any] = {
        "jobs": jobs, "days": {d: ds_of[d] for d in days}, "images": images, "size": size, "train_steps": steps,
        "variants": [asdict(v) for v in variants],
        "cds_archive": str(archive) if archive and archive.is_file() else None,
        "not_fixed": sorted(NOT_FIXED), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "seconds": time.perf_counter() - started, "runs": rows, "summary": summary,
    }
    write_result(args.out, "overhead", result, sys.argv)
    return result
