"""``visearch bench scale``: each pipeline stage's time and peak memory over growing demo corpora.

For every size in ``--sizes`` a fresh demo corpus is generated (:func:`visearch.demo.corpus.generate_demo`)
into its own landing/lake/artifacts folders, then the nightly jobs run in DAG order, in this
process, on one Spark session: ``ingest_images``, ``ingest_interactions``, ``build_pairs``,
``train``, ``embed``, ``build_index``, ``publish_index`` (each ``run(settings, ds, spark=, timer=)``).
A job whose module does not exist yet is reported as "not available" and the stages after it are
skipped for that size.

Per stage and size: wall seconds and the peak resident memory of this process and all its children
(the Spark JVM and its Python workers) sampled with psutil. Per stage: the growth exponent ``b`` of
``time ≈ a · n^b`` fitted by least squares on log–log axes over all sizes, and the local exponent
between the two largest sizes (fixed start-up costs flatten the full fit at small sizes; the last
step shows where the curve is heading). A stage whose exponent passes ``SUPERLINEAR`` is named.

Output: a table, ``<out>/scale.json`` and the log–log plot ``<out>/scale.png``.
Try: ``visearch bench scale --quick`` (500, 1000, 2000 images) or ``--sizes 1000,4000,16000,64000``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from visearch.orchestration.pipeline import LIBRARY, NIGHTLY

log = logging.getLogger(__name__)

DEFAULT_SIZES = (1000, 4000, 16000, 64000)
QUICK_SIZES = (500, 1000, 2000)
SUPERLINEAR = 1.15
"""A stage whose time grows faster than ``n^1.15`` is reported as superlinear."""
MIN_TAIL_SECONDS = 1.0
"""The last-step exponent is only judged when both of its times are at least this long (noise)."""
DEMO = "demo"

# (stage, module): the nightly DAG's jobs in order (their library modules); the demo generator comes first.
STAGES: tuple[tuple[str, str], ...] = (
    (DEMO, "visearch.demo.corpus"),
    *((job, LIBRARY[job]) for job in NIGHTLY if job not in ("online_metrics", "quality_gate")),
)

OK = "ok"
NOT_AVAILABLE = "not available"


# ---------------------------------------------------------------------------------------------
# Pure parts: parsing, fitting, summarising


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"1000,4000"`` -> ``(1000, 4000)``: distinct, ascending, each at least 12 (the demo's minimum).

    Raises:
        ValueError: for an empty list, a non-integer, a size below 12 or a repeated size.
    """
    try:
        sizes = tuple(int(float(part)) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"--sizes must be comma-separated integers, got {text!r}") from exc
    if not sizes:
        raise ValueError(f"--sizes is empty: {text!r}")
    if min(sizes) < 12:
        raise ValueError(f"every size must be at least 12 images, got {text!r}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--sizes repeats a size: {text!r}")
    return tuple(sorted(sizes))


@dataclass(frozen=True)
class GrowthFit:
    """``value ≈ prefactor · n ** exponent``, fitted on log–log axes."""

    exponent: float
    prefactor: float
    r2: float
    points: int


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> GrowthFit:
    """Least-squares line through ``(log n, log value)``: the slope is the growth exponent.

    Raises:
        ValueError: with fewer than two points, two distinct sizes, or a non-positive value.
    """
    if len(sizes) != len(values):
        raise ValueError(f"sizes and values differ in length: {len(sizes)} vs {len(values)}")
    if len(sizes) < 2 or len(set(sizes)) < 2:
        raise ValueError(f"need at least two distinct sizes to fit an exponent, got {list(sizes)}")
    bad = [v for v in (*sizes, *values) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"sizes and values must be finite and positive for a log-log fit, got {bad[0]!r}")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return GrowthFit(exponent=slope, prefactor=math.exp(intercept), r2=r2, points=len(xs))


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: time and memory exponents, last-step exponent and the verdict.

    ``rows`` are the measurement rows (``stage``, ``images``, ``seconds``, ``peak_rss_mb``,
    ``status``); only ``ok`` rows count. A stage with fewer than two sizes gets no fit.
    """
    by_stage: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_stage.setdefault(str(row["stage"]), [])
        if row["status"] == OK:
            by_stage[str(row["stage"])].append(row)
    out: dict[str, dict[str, Any]] = {}
    for stage, ok in by_stage.items():
        ok = sorted(ok, key=lambda r: int(r["images"]))
        entry: dict[str, Any] = {"sizes": [int(r["images"]) for r in ok], "time": None, "memory": None,
                                 "tail_exponent": None, "superlinear": False, "reason": ""}
        if len({int(r["images"]) for r in ok}) >= 2:
            sizes = [float(r["images"]) for r in ok]
            seconds = [max(float(r["seconds"]), 1e-6) for r in ok]
            entry["time"] = asdict(fit_exponent(sizes, seconds))
            rss = [float(r["peak_rss_mb"]) for r in ok]
            if all(v > 0 for v in rss):
                entry["memory"] = asdict(fit_exponent(sizes, rss))
            tail = fit_exponent(sizes[-2:], seconds[-2:]).exponent
            entry["tail_exponent"] = tail
            if entry["time"]["exponent"] > SUPERLINEAR:
                entry["superlinear"] = True
                entry["reason"] = f"time grows as n^{entry['time']['exponent']:.2f} over all sizes"
            elif tail > SUPERLINEAR and min(seconds[-2:]) >= MIN_TAIL_SECONDS:
                entry["superlinear"] = True
                entry["reason"] = (f"time grows as n^{tail:.2f} between the two largest sizes "
                                   f"({int(sizes[-2])} -> {int(sizes[-1])})")
        out[stage] = entry
    return out


def superlinear_stages(fits: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the stages flagged superlinear, in pipeline order."""
    order = {name: i for i, (name, _) in enumerate(STAGES)}
    return sorted((s for s, f in fits.items() if f["superlinear"]), key=lambda s: order.get(s, len(order)))


def fit_rows(fits: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fits as table rows."""
    rows = []
    for stage, fit in fits.items():
        time_fit, mem_fit = fit["time"], fit["memory"]
        rows.append({
            "stage": stage,
            "sizes": len(fit["sizes"]),
            "time_exponent": "-" if time_fit is None else round(time_fit["exponent"], 3),
            "time_r2": "-" if time_fit is None else round(time_fit["r2"], 3),
            "last_step_exponent": "-" if fit["tail_exponent"] is None else round(fit["tail_exponent"], 3),
            "rss_exponent": "-" if mem_fit is None else round(mem_fit["exponent"], 3),
            "verdict": "SUPERLINEAR" if fit["superlinear"] else ("-" if time_fit is None else "<= linear"),
        })
    return rows


# ---------------------------------------------------------------------------------------------
# Measuring


class PeakRss:
    """Context manager sampling the resident memory of this process and all its descendants.

    A background thread sums ``rss`` over the process tree every ``interval`` seconds; ``peak``
    and ``start`` are in bytes.
    """

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.interval = interval
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start = 0
        self.peak = 0

    def sample(self) -> int:
        """Bytes resident now in the process tree (processes that vanish mid-walk are skipped)."""
        import psutil

        procs = [self._proc]
        with contextlib.suppress(psutil.Error):  # the tree can change while it is walked
            procs += self._proc.children(recursive=True)
        total = 0
        for proc in procs:
            try:
                total += int(proc.memory_info().rss)
            except psutil.Error:
                continue
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self.sample()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.sample())


def stage_available(module: str) -> bool:
    """Whether the stage's module exists (it is imported only when the stage runs)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _ds_list(start_ds: str, days: int) -> list[str]:
    import datetime as dt

    start = dt.date.fromisoformat(start_ds)
    return [(start + dt.timedelta(days=d)).isoformat() for d in range(days)]


def _ensure_champion(settings: Any, promote_result: Mapping[str, Any]) -> str:
    """Make the day's model the champion when promote kept none, so embed and the index can be timed.

    The bench measures time and memory, not quality: a model of a few steps may lose to the colour
    histogram, and the promote job then rightly leaves ``models/CHAMPION`` unset. Returns a note.
    """
    from visearch.core.storage import open_store
    from visearch.train.registry import ModelRegistry

    registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
    challenger = promote_result.get("challenger")
    if registry.champion() is None and challenger:
        registry.set_champion(str(challenger))
        log.warning("bench scale: %s was not promoted (%s); made champion for the timing of later stages",
                    challenger, promote_result.get("reason"))
        return f"not promoted ({promote_result.get('reason')}); the bench made it champion"
    return ""


def measure_size(size: int, root: Path, base_settings: Any, stages: Sequence[tuple[str, str]], *,
                 days: int, seed: int, image_px: int, start_ds: str,
                 spark_factory: Callable[[Any], Any]) -> list[dict[str, Any]]:
    """Generate a demo corpus of ``size`` images under ``root`` and run ``stages`` on it.

    Returns one row per stage. A stage after one that is not available or failed is skipped.
    """
    from visearch.core.config import to_uri
    from visearch.core.timing import StageTimer

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    settings = base_settings.replace(landing=to_uri(str(root / "landing")), lake=to_uri(str(root / "lake")),
                                     artifacts=to_uri(str(root / "artifacts")))
    ds_list = _ds_list(start_ds, days)
    rows: list[dict[str, Any]] = []
    blocked = ""
    for stage, module in stages:
        row: dict[str, Any] = {"stage": stage, "images": size, "seconds": None, "peak_rss_mb": None,
                               "rss_before_mb": None, "status": OK, "runs": 0, "substages": {},
                               "result": None}
        rows.append(row)
        if blocked:
            row["status"] = f"skipped: {blocked}"
            continue
        if not stage_available(module):
            row["status"] = NOT_AVAILABLE
            blocked = f"{stage} not available"
            log.warning("stage %s: module %s not available, skipping it and the stages after it",
                        stage, module)
            continue
        try:
            mod = importlib.import_module(module)
            spark = None if stage == DEMO else spark_factory(settings)
            timer = StageTimer(stage)
            results: list[Any] = []
            with PeakRss() as rss:
                started = time.perf_counter()
                if stage == DEMO:
                    summary = mod.generate_demo(root / "landing", images=size, days=days, seed=seed,
                                                size=image_px, start_ds=start_ds, progress=False)
                    results.append(summary.to_dict() if hasattr(summary, "to_dict") else summary)
                else:
                    for ds in ds_list:
                        results.append(mod.run(settings, ds, spark=spark, timer=timer))
                elapsed = time.perf_counter() - started
        except Exception as exc:  # recorded in the row; run() raises after writing the results
            log.exception("stage %s failed at %d images", stage, size)
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            row["status"] = f"failed: {type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
            row["error"] = str(exc)[-4000:]  # a Python worker's traceback ends with the real error
            blocked = f"{stage} failed"
            continue
        row.update(seconds=elapsed, peak_rss_mb=rss.peak / 1e6, rss_before_mb=rss.start / 1e6,
                   runs=len(results), substages=dict(timer.seconds),
                   result=_json_safe(results[-1]) if results else None)
        if stage == "promote":
            row["note"] = _ensure_champion(settings, results[-1] if results else {})
        elif stage == "train" and "promote" not in {name for name, _ in stages}:
            from visearch.core.storage import open_store
            from visearch.train.registry import ModelRegistry

            registry = ModelRegistry(open_store(settings.artifacts, settings.s3))
            trained = registry.newest_of_day(ds_list[-1])
            row["note"] = _ensure_champion(settings, {"challenger": trained, "reason": "promote not run"})
        log.info("scale %d images: %s %.2fs, peak RSS %.0f MB", size, stage, elapsed, rss.peak / 1e6)
    return rows


# ---------------------------------------------------------------------------------------------
# Output


def plot(rows: Sequence[Mapping[str, Any]], fits: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Log–log plot of seconds and peak RSS against corpus size, one line a stage; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    for stage in fits:
        ok = sorted((r for r in rows if r["stage"] == stage and r["status"] == OK), key=lambda r: r["images"])
        if not ok:
            continue
        xs = [r["images"] for r in ok]
        fit = fits[stage]["time"]
        tail = fits[stage]["tail_exponent"]
        label = stage if fit is None else f"{stage} (n^{fit['exponent']:.2f}, last step n^{tail:.2f})"
        ax_t.plot(xs, [max(r["seconds"], 1e-3) for r in ok], marker="o", label=label)
        ax_m.plot(xs, [r["peak_rss_mb"] for r in ok], marker="o", label=stage)
    sizes = sorted({int(r["images"]) for r in rows})
    if len(sizes) >= 2:  # a slope-1 guide through the first size at 1 s
        ax_t.plot([sizes[0], sizes[-1]], [1.0, sizes[-1] / sizes[0]], "k:", label="linear (slope 1)")
    panels = ((ax_t, "stage wall time", "seconds"), (ax_m, "peak RSS of the process tree", "MB"))
    for ax, title, ylabel in panels:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("demo corpus size (images)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(rows: Sequence[Mapping[str, Any]], out: str | Path, meta: Mapping[str, Any],
           argv: list[str] | None = None) -> dict[str, Any]:
    """Print the tables, draw the plot and write ``<out>/scale.json``; return the result."""
    from visearch.bench import print_table, write_result

    fits = summarise(rows)
    table = [{"stage": r["stage"], "images": r["images"],
              "seconds": "-" if r["seconds"] is None else round(float(r["seconds"]), 3),
              "peak_rss_mb": "-" if r["peak_rss_mb"] is None else round(float(r["peak_rss_mb"]), 1),
              "status": r["status"]} for r in rows]
    print_table(table, ["stage", "images", "seconds", "peak_rss_mb", "status"])
    print()
    print_table(fit_rows(fits))
    flagged = superlinear_stages(fits)
    for stage in flagged:
        print(f"SUPERLINEAR: {stage}: {fits[stage]['reason']}", flush=True)
    if not flagged:
        print(f"no stage grows faster than n^{SUPERLINEAR}", flush=True)
    png = plot(rows, fits, Path(out) / "scale.png")
    result: dict[str, Any] = {**meta, "rows": [dict(r) for r in rows], "fits": fits, "superlinear": flagged,
                              "superlinear_threshold": SUPERLINEAR, "plot": png.name}
    write_result(out, "scale", result, argv=argv)
    return result


# ---------------------------------------------------------------------------------------------
# Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``visearch bench scale`` (no heavy imports here)."""
    parser.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                        help="demo corpus sizes, comma-separated (default 1000,4000,16000,64000)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {','.join(map(str, QUICK_SIZES))}")
    parser.add_argument("--days", type=int, default=1, help="days of demo data; the jobs run once a day")
    parser.add_argument("--image-px", type=int, default=64, help="side of the demo images in pixels")
    parser.add_argument("--seed", type=int, default=0, help="demo seed")
    parser.add_argument("--start-ds", default="2026-01-01", help="first day of the demo data")
    parser.add_argument("--stages", default=",".join(s for s, _ in STAGES),
                        help="comma-separated stages to run, in pipeline order")
    parser.add_argument("--workdir", default=None,
                        help="where the corpora are generated (default <out>/scale-work; removed after "
                             "each size unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep each size's landing/lake/artifacts")
    parser.add_argument("--warmup", type=int, default=200,
                        help="images of a throwaway ingest run before measuring, so the first size is not "
                             "charged the JVM's start-up (0: none)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: fit, print and plot the rows of the --include files")
    parser.add_argument("--include", action="append", default=[], metavar="SCALE_JSON",
                        help="add the rows of an earlier run (its scale.json or scale-partial.json) before "
                             "fitting, e.g. the largest size measured on its own; repeatable (a stage and size "
                             "in several files: the last file's row)")


def _selected_stages(text: str) -> tuple[tuple[str, str], ...]:
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    known = dict(STAGES)
    unknown = [s for s in wanted if s not in known]
    if unknown or not wanted:
        raise ValueError(f"unknown stages {unknown} in --stages {text!r}; known: {list(known)}")
    return tuple((s, m) for s, m in STAGES if s in wanted)


def included_rows(paths: Sequence[str | Path], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Rows of earlier runs (``scale.json`` or ``scale-partial.json``) for sizes this run does not measure.

    A (stage, size) found in several files is taken from the last one, so a stage remeasured on its
    own (e.g. after a fix) replaces its older rows.

    Raises:
        ValueError: when a file has no ``rows`` or repeats a size this run measures.
    """
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if not isinstance(data.get("rows"), list):
            raise ValueError(f"{path}: no 'rows' list; expected a scale.json or scale-partial.json")
        clash = sorted({int(r["images"]) for r in data["rows"]} & set(sizes))
        if clash:
            raise ValueError(f"{path}: sizes {clash} are measured again by this run; drop them from --sizes")
        for r in data["rows"]:
            key = (str(r["stage"]), int(r["images"]))
            rows.pop(key, None)  # the later file's row, in the later file's place
            rows[key] = dict(r)
    return list(rows.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every stage at every size, then print, plot and write ``<out>/scale.json``.

    Raises:
        ValueError: for bad ``--sizes``, ``--days`` or ``--stages``.
        RuntimeError: after writing the results, when a stage failed (its error is in the JSON).
    """
    from visearch.core.config import load_settings

    sizes: tuple[int, ...] = QUICK_SIZES if args.quick else tuple(args.sizes)
    if getattr(args, "report_only", False):
        if not args.include:
            raise ValueError("--report-only needs --include: the rows of earlier runs to fit and plot")
        sizes = ()
    stages = _selected_stages(args.stages)
    if sizes and (args.days < 1 or args.days > min(sizes) // 2):
        raise ValueError(f"--days must be between 1 and {min(sizes) // 2} (half the smallest size), "
                         f"got {args.days}")
    out = Path(getattr(args, "out", None) or "bench-results")
    workdir = Path(args.workdir) if args.workdir else out / "scale-work"
    base = load_settings()
    session: dict[str, Any] = {}

    def spark_factory(settings: Any) -> Any:
        if "spark" not in session:
            from pyspark.sql import SparkSession

            from visearch.core.spark import get_spark

            session["owned"] = SparkSession.getActiveSession() is None
            session["spark"] = get_spark(settings, "visearch-bench-scale")
        return session["spark"]

    available = {name: stage_available(module) for name, module in stages}
    log.info("bench scale: sizes %s, stages %s", sizes, available)
    rows: list[dict[str, Any]] = included_rows(getattr(args, "include", None) or [], sizes)
    out.mkdir(parents=True, exist_ok=True)
    try:
        warm = [(s, m) for s, m in stages if s in (DEMO, "ingest_images")]
        warmup: int = getattr(args, "warmup", 0)
        if sizes and warmup and len(warm) == 2:
            # The first Spark stage of a process pays for the JVM's start, class loading and JIT;
            # a small throwaway corpus takes that cost so that it is not charged to the first size.
            log.info("bench scale: warm-up on %d images (not recorded)", args.warmup)
            measure_size(args.warmup, workdir / "warmup", base, warm, days=1, seed=args.seed + 1,
                         image_px=args.image_px, start_ds=args.start_ds, spark_factory=spark_factory)
            shutil.rmtree(workdir / "warmup", ignore_errors=True)
        for size in sizes:
            root = workdir / f"n{size}"
            rows += measure_size(size, root, base, stages, days=args.days, seed=args.seed,
                                 image_px=args.image_px, start_ds=args.start_ds, spark_factory=spark_factory)
            # Written after every size, so a long run that is stopped keeps what it measured.
            (out / "scale-partial.json").write_text(json.dumps({"rows": rows}, indent=1, default=str))
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if session.get("owned"):
            session["spark"].stop()
    meta = {"sizes": sorted({int(r["images"]) for r in rows}), "days": args.days, "image_px": args.image_px,
            "seed": args.seed,
            "stages": [s for s, _ in stages], "available": available,
            "spark_master": base.spark.master, "workdir": str(workdir)}
    result = report(rows, out, meta, argv=sys.argv)
    failed = [f"{r['stage']}@{r['images']}: {r['status']}" for r in rows
              if str(r["status"]).startswith("failed")]
    if failed:
        raise RuntimeError(f"bench scale: stages failed (results written to {out}/scale.json): {failed}")
    return result
