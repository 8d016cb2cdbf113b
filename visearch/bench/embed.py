"""``visearch bench embed``: batch-embedding throughput — model only, full pipeline, naive loop.

For ResNet-50 at 224 and the demo model (the settings' ``model`` section), on the JPEG files of a
generated demo corpus (``--side`` pixels, default 512, so that decoding costs what it costs; the
files are cycled to reach ``--count`` images per mode, every one read and decoded again, so that
the pipeline runs several batches — the first batch's decoding can never be hidden):

- ``model_only`` (a): the model on pre-decoded, preprocessed tensors in batches (channels-last,
  ``inference_mode``; bf16 autocast on CUDA): the ceiling of the pipeline.
- ``pipeline`` (b): :class:`visearch.embed.embedder.BatchEmbedder` from the image files — read, JPEG
  draft decode, preprocess in a thread pool, overlapped with batched channels-last inference.
  What ``jobs/embed.py`` runs on each executor.
- ``pipeline_bf16`` (with ``--bf16-cpu``, CPU only): (b) under bf16 autocast — what lower
  precision would buy on a CPU with AVX512-BF16/AMX; its embeddings differ from the fp32 ones
  (~1e-2), so the job does not do it and the planner does not read it.
- ``naive`` (c): one image at a time — read, full-size decode (``fast_decode=False``), one NCHW
  fp32 forward call per image under ``torch.no_grad``.

It prints (b)/(a) (goal ≥ 0.8: decoding and I/O hidden behind compute) and (b)/(c) (goal ≥ 3).
Modes are interleaved within each repeat and the best repeat counts, so that load from other
processes hurts every mode alike; the load average before and after is recorded. Rows on CUDA are
added when a GPU is present. ``embed.json`` has a top-level ``planner`` block (the keys
:mod:`visearch.plan.capacity` reads): the slowest (ResNet-50) pipeline images/s per GPU and per CPU core.

Try: visearch bench embed --quick --out bench-results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GOAL_OVER_MODEL_ONLY = 0.8
GOAL_OVER_NAIVE = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument("--images", type=int, default=96,
                        help="demo images to generate (the JPEGs among them are the files; default 96)")
    parser.add_argument("--count", type=int, default=640,
                        help="images the demo model embeds per mode, cycling over the files (default 640)")
    parser.add_argument("--resnet50-count", type=int, default=128,
                        help="images ResNet-50 embeds per mode (it is slow on CPU; default 128)")
    parser.add_argument("--side", type=int, default=512, help="side of the generated images in pixels")
    parser.add_argument("--models", default="resnet50,demo",
                        help="comma-separated: resnet50 (at 224) and/or demo (the settings' model)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per forward pass (default: settings embed.batch_size)")
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="decode threads of the pipeline (default: settings embed.decode_workers)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per mode; the best counts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus and the models")
    parser.add_argument("--config", default=None, help="settings YAML (for the demo model and embed knobs)")
    parser.add_argument("--bf16-cpu", action="store_true",
                        help="add a pipeline_bf16 row on CPU (bf16 autocast: faster on AVX512-BF16/AMX CPUs, "
                             "but not the job's fp32 embeddings)")
    parser.add_argument("--no-cpu-optimize", dest="cpu_optimize", action="store_false",
                        help="measure (a) and (b) with the eager model instead of the job's default "
                             "frozen CPU model (embed.cpu_optimize)")
    parser.add_argument("--quick", action="store_true",
                        help="48 files, 256 images per mode (32 for ResNet-50), one repeat (`bench all`)")


@dataclasses.dataclass(frozen=True)
class Case:
    """One model on one device."""

    name: str
    backbone: str
    image_size: int
    embed_dim: int
    small_stem: bool
    device: str
    images: int


def _corpus(folder: Path, images: int, side: int, seed: int) -> list[Path]:
    """The JPEG files of a generated one-day demo corpus (CMYK and EXIF-rotated ones included)."""
    from visearch.demo.corpus import generate_demo

    generate_demo(folder, images=images, days=1, seed=seed, size=side, bad_share=0.0, progress=False)
    truth = json.loads((folder / "demo_truth.json").read_text())
    paths = [folder / record["path"] for record in truth["images"].values()
             if record["format"] == "JPEG" and not record["deleted"]]
    if not paths:
        raise ValueError(f"the demo corpus at {folder} holds no JPEG; raise --images")
    return sorted(paths)


def _timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn()
    return time.perf_counter() - start, count


def _measure(case: Case, paths: list[Path], *, batch_size: int, workers: int, threads: int,
             repeats: int, seed: int, bf16_cpu: bool,
             cpu_optimize: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for modes (a), (b), (c) of one case, and the ratio row.

    (a) and (b) use the model as the job does: channels-last, and on CPU with ``cpu_optimize``
    frozen for inference; a ``pipeline_eager`` row then shows (b) with the eager model.
    """
    import torch

    from visearch.embed.embedder import BatchEmbedder, EmbedItem, optimize_for_cpu
    from visearch.train.model import EmbeddingModel
    from visearch.train.preprocess import Preprocessing, preprocess
    from visearch.train.registry import LoadedModel

    torch.manual_seed(seed)
    device = torch.device(case.device)
    prep = Preprocessing(size=case.image_size)
    eager = EmbeddingModel(case.backbone, case.embed_dim, case.image_size, case.small_stem, prep=prep).eval()
    naive_model = eager.to(device)
    fast = LoadedModel(
        model=EmbeddingModel(case.backbone, case.embed_dim, case.image_size, case.small_stem, prep=prep)
        .eval().to(device).to(memory_format=torch.channels_last),  # type: ignore[call-overload]
        prep=prep, config={"embed_dim": case.embed_dim}, version=f"bench-{case.name}", device=device,
    )
    fast.model.load_state_dict(naive_model.state_dict())
    eager_cl = fast
    optimised = cpu_optimize and device.type == "cpu"
    if optimised:
        fast = dataclasses.replace(eager_cl, model=optimize_for_cpu(eager_cl.model, case.image_size))
    amp = device.type == "cuda"
    paths = [paths[i % len(paths)] for i in range(case.images)]  # files cycled: read and decoded each time
    n = len(paths)
    tensors = torch.stack([preprocess(p.read_bytes(), prep) for p in paths])  # (N, 3, S, S)
    tensors = tensors.contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def model_only() -> int:
        for start in range(0, n, batch_size):
            fast.embed_tensors(tensors[start:start + batch_size], amp=amp)  # (b, D)
        sync()
        return n

    stats: dict[str, Any] = {}

    def pipeline() -> int:
        with BatchEmbedder(fast, batch_size=batch_size, decode_workers=workers, amp=amp) as engine:
            done = sum(len(b.image_ids) for b in engine.embed(EmbedItem(p.name, p.as_uri()) for p in paths))
            stats.update(engine.stats.as_dict())
        sync()
        return done

    def pipeline_eager() -> int:
        with BatchEmbedder(eager_cl, batch_size=batch_size, decode_workers=workers, amp=amp) as engine:
            done = sum(len(b.image_ids) for b in engine.embed(EmbedItem(p.name, p.as_uri()) for p in paths))
        return done

    def pipeline_bf16() -> int:
        with BatchEmbedder(eager_cl, batch_size=batch_size, decode_workers=workers, cpu_amp=True) as engine:
            done = sum(len(b.image_ids) for b in engine.embed(EmbedItem(p.name, p.as_uri()) for p in paths))
        return done

    def naive() -> int:
        with torch.no_grad():
            for path in paths:
                x = preprocess(path.read_bytes(), prep, fast_decode=False).unsqueeze(0)  # (1, 3, S, S)
                naive_model(x.contiguous().to(device))  # NCHW (1, 3, S, S) -> (1, D)
        sync()
        return n

    modes: dict[str, Callable[[], int]] = {"model_only": model_only, "pipeline": pipeline, "naive": naive}
    if optimised:
        modes["pipeline_eager"] = pipeline_eager
    if device.type == "cpu" and bf16_cpu:
        modes["pipeline_bf16"] = pipeline_bf16
    # Warm-up: one batch through each path (allocator, oneDNN/cuDNN primitive caches).
    fast.embed_tensors(tensors[:batch_size], amp=amp)
    eager_cl.embed_tensors(tensors[:batch_size], amp=amp)
    with torch.no_grad():
        naive_model(tensors[:1].contiguous().to(device))
    best: dict[str, float] = {}
    pipeline_stats: dict[str, Any] = {}
    for _ in range(repeats):
        for mode, fn in modes.items():
            seconds, count = _timed(fn)
            if count != n:
                raise RuntimeError(f"{mode} embedded {count} of {n} images")
            if mode not in best or seconds < best[mode]:
                best[mode] = seconds
                if mode == "pipeline":
                    pipeline_stats = dict(stats)
    rows = []
    for mode, seconds in best.items():
        row: dict[str, Any] = {
            "model": case.name, "backbone": case.backbone, "image_size": case.image_size,
            "device": case.device, "mode": mode, "images": n, "seconds": round(seconds, 4),
            "images_per_sec": round(n / seconds, 3),
            "batch_size": 1 if mode == "naive" else batch_size,
            "threads": threads if device.type == "cpu" else None,
            "precision": "bf16-autocast" if (amp and mode != "naive") or mode == "pipeline_bf16" else "fp32",
            "layout": "NCHW" if mode == "naive" else "channels_last",
            "graph": "frozen" if optimised and mode in ("model_only", "pipeline") else "eager",
        }
        if mode == "pipeline":
            row["decode_workers"] = workers
            row["engine"] = pipeline_stats
        rows.append(row)
    rate = {r["mode"]: r["images_per_sec"] for r in rows}
    ratio = {
        "model": case.name, "device": case.device,
        "pipeline_over_model_only": round(rate["pipeline"] / rate["model_only"], 3),
        "pipeline_over_naive": round(rate["pipeline"] / rate["naive"], 3),
    }
    if "pipeline_eager" in rate:
        ratio["eager_pipeline_over_naive"] = round(rate["pipeline_eager"] / rate["naive"], 3)
    if "pipeline_bf16" in rate:
        ratio["bf16_pipeline_over_naive"] = round(rate["pipeline_bf16"] / rate["naive"], 3)
    ratio["meets_goals"] = (ratio["pipeline_over_model_only"] >= GOAL_OVER_MODEL_ONLY
                            and ratio["pipeline_over_naive"] >= GOAL_OVER_NAIVE)
    return rows, ratio


def _planner(rows: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """The slowest pipeline rate per GPU and per CPU core (what :mod:`visearch.plan.capacity` reads)."""
    block: dict[str, Any] = {}
    gpu = [r["images_per_sec"] for r in rows if r["mode"] == "pipeline" and r["device"].startswith("cuda")]
    cpu = [r["images_per_sec"] / max(1, r["threads"] or cores) for r in rows
           if r["mode"] == "pipeline" and r["device"] == "cpu"]
    if gpu:
        block["pipeline_images_per_sec_per_gpu"] = round(min(gpu), 3)
    if cpu:
        block["pipeline_images_per_sec_per_cpu_core"] = round(min(cpu), 3)
    return block


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every case; print a table and write ``<out>/embed.json``.

    Raises:
        ValueError: for non-positive sizes or an unknown model name.
    """
    import torch

    from visearch.bench import print_table, write_result
    from visearch.core.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    images = 48 if args.quick else args.images
    count = 256 if args.quick else args.count
    resnet50_images = 32 if args.quick else args.resnet50_count
    repeats = 1 if args.quick else args.repeats
    batch_size = args.batch_size or settings.embed.batch_size
    workers = args.decode_workers or settings.embed.decode_workers
    cores = os.cpu_count() or 1
    threads = args.threads or cores
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if min(images, count, resnet50_images, repeats, batch_size, workers, threads, args.side) < 1:
        raise ValueError(f"sizes must be positive: images={images}, count={count}, "
                         f"resnet50={resnet50_images}, repeats={repeats}, batch={batch_size}, "
                         f"workers={workers}, threads={threads}")
    unknown = set(names) - {"resnet50", "demo"}
    if unknown or not names:
        raise ValueError(f"--models takes resnet50 and/or demo, got {args.models!r}")
    torch.set_num_threads(threads)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    m = settings.model
    cases = []
    for device in devices:
        for name in names:
            if name == "resnet50":
                cases.append(Case("resnet50@224", "resnet50", 224, m.embed_dim, False, device,
                                  resnet50_images))
            else:
                label = f"demo:{m.backbone}@{m.image_size}"
                cases.append(Case(label, m.backbone, m.image_size, m.embed_dim, m.small_stem, device, count))

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="visearch-bench-embed-") as tmp:
        start = time.perf_counter()
        paths = _corpus(Path(tmp) / "demo", images, args.side, args.seed)
        corpus = {"files": len(paths), "side": args.side, "mean_bytes": round(
            sum(p.stat().st_size for p in paths) / len(paths)), "generated_in_s": round(
            time.perf_counter() - start, 1), "source": "visearch.demo.corpus.generate_demo JPEGs"}
        log.info("corpus: %s", corpus)
        rows: list[dict[str, Any]] = []
        ratios: list[dict[str, Any]] = []
        for case in cases:
            log.info("measuring %s on %s (%d images from %d files)", case.name, case.device, case.images,
                     len(paths))
            case_rows, ratio = _measure(case, paths, batch_size=batch_size, workers=workers, threads=threads,
                                        repeats=repeats, seed=args.seed, bf16_cpu=args.bf16_cpu,
                                        cpu_optimize=getattr(args, "cpu_optimize", True))
            rows += case_rows
            ratios.append(ratio)
    load_after = os.getloadavg()

    print_table(rows, ["model", "device", "mode", "images", "seconds", "images_per_sec", "batch_size",
                       "threads", "precision", "layout", "graph"])
    print()
    print_table(ratios)
    print(f"goals: pipeline/model_only >= {GOAL_OVER_MODEL_ONLY}, pipeline/naive >= {GOAL_OVER_NAIVE}; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after on {cores} CPUs", flush=True)
    result: dict[str, Any] = {
        "quick": bool(args.quick),
        "corpus": corpus,
        "settings": {"batch_size": batch_size, "decode_workers": workers, "threads": threads,
                     "repeats": repeats},
        "load_average": {"before": [round(v, 2) for v in load_before],
                         "after": [round(v, 2) for v in load_after], "cpus": cores},
        "rows": rows,
        "ratios": ratios,
        "goals": {"pipeline_over_model_only": GOAL_OVER_MODEL_ONLY, "pipeline_over_naive": GOAL_OVER_NAIVE},
        "planner": _planner(rows, cores),
    }
    write_result(args.out, "embed", result, argv=sys.argv)
    return result
