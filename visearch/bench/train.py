"""``visearch bench train``: training images per second, model alone and through the real data path.

Two model configurations:

- ``demo``: the settings defaults (``ModelSettings()`` / ``TrainSettings()``: ResNet-18, 64 px,
  128-d embeddings, 32 pairs a step) — what the nightly demo trains;
- ``resnet50``: ResNet-50 at 224 px, 128-d embeddings (batch from ``--r50-batch``).

Two paths for each, on the CPU and, when ``torch.cuda.is_available()``, on the GPU (bf16 autocast,
channels-last, as the trainer does there):

- ``synthetic``: random input tensors already in memory; forward of 2B views, symmetric InfoNCE,
  backward, AdamW step. The model's ceiling.
- ``pipeline``: :func:`visearch.train.trainer.train` on a :class:`~visearch.train.trainer.PairDataset` of
  self-pairs of demo images (rendered at the model's size, read from files): decode, SimCLR
  augmentation of two views, collate, then the same step. What a training job gets (no
  checkpoints in the timed window; DataLoader workers from ``--num-workers``).

Each row times ``--steps`` steps after ``--warmup`` untimed ones. Images per second count views:
``2 × batch`` per step (a pair is two images through the network).

Try: visearch bench train --quick --out bench-results
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visearch.bench import print_table, write_result
from visearch.core.config import ModelSettings, TrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    """One model configuration to time."""

    name: str
    model: ModelSettings
    batch_size: int


def configs(names: list[str], *, demo_batch: int | None, r50_batch: int) -> list[BenchConfig]:
    """The named configurations (``demo``, ``resnet50``).

    Raises:
        ValueError: for an unknown name or a batch below 2 (InfoNCE needs in-batch negatives).
    """
    defaults = TrainSettings()
    known = {
        "demo": BenchConfig("demo", ModelSettings(), demo_batch or defaults.batch_size),
        "resnet50": BenchConfig("resnet50", ModelSettings(backbone="resnet50", image_size=224), r50_batch),
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; choose from {sorted(known)}")
    chosen = [known[n] for n in names]
    small = [c.name for c in chosen if c.batch_size < 2]
    if small:
        raise ValueError(f"batch size must be >= 2 for {small}")
    return chosen


def images_per_second(batch_size: int, step_seconds: list[float]) -> float:
    """Views per second: ``2 × batch`` images per step over the mean step time.

    Raises:
        ValueError: without timed steps or with a non-positive time.
    """
    if not step_seconds:
        raise ValueError("no timed steps")
    mean = statistics.fmean(step_seconds)
    if not mean > 0:
        raise ValueError(f"step times must be positive, got mean {mean}")
    return 2 * batch_size / mean


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the benchmark's options."""
    parser.add_argument(
        "--configs",
        default="demo,resnet50",
        help="comma-separated: demo (settings defaults), resnet50 (224 px)",
    )
    parser.add_argument(
        "--paths", default="synthetic,pipeline", help="synthetic tensors and/or the PairDataset path"
    )
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (cpu, plus cuda when present)")
    parser.add_argument(
        "--demo-batch",
        type=int,
        default=None,
        help="pairs per step of the demo config (default: the settings' train.batch_size, 32)",
    )
    parser.add_argument("--r50-batch", type=int, default=16, help="pairs per step of ResNet-50 (default 16)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument(
        "--images", type=int, default=64, help="demo images for the pipeline path (default 64)"
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the pipeline path")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 warm-up + 2 timed steps, demo batch 16, ResNet-50 batch 2, 24 images",
    )


def _devices(spec: str) -> list[str]:
    import torch

    if spec == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    bad = [d for d in devices if d not in ("cpu", "cuda")]
    if bad:
        raise ValueError(f"--devices must name cpu and/or cuda, got {bad}")
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("--devices cuda given but torch.cuda.is_available() is False")
    return devices


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_synthetic(cfg: BenchConfig, device: str, warmup: int, steps: int, seed: int = 0) -> list[float]:
    """Seconds of each timed step on random inputs already on ``device``."""
    import torch

    from visearch.train.loss import InfoNCELoss
    from visearch.train.model import build_model

    torch.manual_seed(seed)
    train = TrainSettings()
    model = build_model(cfg.model).to(device).train()
    amp = device == "cuda"
    if amp:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    loss_fn = InfoNCELoss(train.temperature, "cosine", symmetric=True)
    size, b = cfg.model.image_size, cfg.batch_size
    x = torch.randn(2 * b, 3, size, size, device=device)  # (2B, 3, S, S): B queries then B positives
    if amp:
        x = x.contiguous(memory_format=torch.channels_last)
    times: list[float] = []
    for step in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            z = model(x)  # (2B, D)
        loss = loss_fn(z[:b], z[b:])  # (B, D), (B, D) -> scalar
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def time_pipeline(
    cfg: BenchConfig, device: str, warmup: int, steps: int, uris: list[str], num_workers: int, workdir: Path
) -> list[float]:
    """Seconds of each timed step of :func:`visearch.train.trainer.train` on self-pairs of ``uris``.

    The trainer writes its checkpoint after the last step, so one more step runs after the timed
    ones and is not counted.
    """
    import torch

    from visearch.core.storage import open_store
    from visearch.train.augment import SimCLRAugment
    from visearch.train.distributed import UriReader
    from visearch.train.model import build_model
    from visearch.train.preprocess import Preprocessing
    from visearch.train.trainer import PairDataset, PairRecord, TrainConfig, train

    torch.manual_seed(0)
    settings = TrainSettings()
    prep = Preprocessing.from_settings(cfg.model)
    augment = SimCLRAugment(
        prep.size, strength=settings.augment_strength, prep=prep, blur=settings.augment_blur
    )
    records = [PairRecord(u, u, 1.0, i) for i, u in enumerate(uris)]
    dataset = PairDataset(records, UriReader(), prep, augment, seed=0)
    total = warmup + steps + 1
    run_cfg = TrainConfig.from_settings(
        settings,
        steps=total,
        batch_size=cfg.batch_size,
        checkpoint_every=total,
        device=device,
        num_workers=num_workers,
        log_every=total,
    )
    stamps: list[float] = []

    def on_step(step: int, loss: float) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    model = build_model(cfg.model)
    store = open_store("file://" + str(workdir / f"ckpt-{cfg.name}-{device}"))
    _sync(device)
    start = time.perf_counter()
    train(
        model,
        dataset,
        run_cfg,
        checkpoint_store=store,
        checkpoint_prefix="bench",
        resume=False,
        progress=False,
        on_step=on_step,
    )
    marks = [start, *stamps]  # marks[k] = end of step k (marks[0]: start)
    return [marks[k + 1] - marks[k] for k in range(warmup, warmup + steps)]


def demo_uris(workdir: Path, images: int, size: int) -> list[str]:
    """URIs of the good images of a demo corpus rendered at ``size`` pixels."""
    import json

    from visearch.demo.corpus import generate_demo

    out = workdir / f"demo-{size}"
    generate_demo(out, images=images, days=1, size=size, seed=0, bad_share=0.0, progress=False)
    truth = json.loads((out / "demo_truth.json").read_text())
    return [info["uri"] for _, info in sorted(truth["images"].items()) if not info["deleted"]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every (configuration, device, path); print the table and write ``<out>/train.json``.

    Raises:
        ValueError: for an unknown configuration, path or device, or fewer than 1 timed step.
    """
    import torch

    quick = bool(getattr(args, "quick", False))
    warmup = 1 if quick else args.warmup
    steps = 2 if quick else args.steps
    demo_batch = 16 if quick and args.demo_batch is None else args.demo_batch
    r50_batch = 2 if quick else args.r50_batch
    images = 24 if quick else args.images
    if steps < 1 or warmup < 0:
        raise ValueError(f"need --steps >= 1 and --warmup >= 0, got {steps} and {warmup}")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or any(p not in ("synthetic", "pipeline") for p in paths):
        raise ValueError(f"--paths must list synthetic and/or pipeline, got {args.paths!r}")
    chosen = configs(
        [c.strip() for c in args.configs.split(",") if c.strip()], demo_batch=demo_batch, r50_batch=r50_batch
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = _devices(args.devices)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="visearch-bench-train-") as tmp:
        workdir = Path(tmp)
        corpora: dict[int, list[str]] = {}
        for cfg in chosen:
            for device in devices:
                for path in paths:
                    if path == "pipeline" and cfg.model.image_size not in corpora:
                        corpora[cfg.model.image_size] = demo_uris(workdir, images, cfg.model.image_size)
                    log.info(
                        "timing %s on %s, %s path: batch %d, %d + %d steps",
                        cfg.name,
                        device,
                        path,
                        cfg.batch_size,
                        warmup,
                        steps,
                    )
                    if path == "synthetic":
                        times = time_synthetic(cfg, device, warmup, steps)
                    else:
                        times = time_pipeline(
                            cfg,
                            device,
                            warmup,
                            steps,
                            corpora[cfg.model.image_size],
                            args.num_workers,
                            workdir,
                        )
                    rate = images_per_second(cfg.batch_size, times)
                    rows.append(
                        {
                            "config": cfg.name,
                            "backbone": cfg.model.backbone,
                            "size": cfg.model.image_size,
                            "batch": cfg.batch_size,
                            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                            "path": path,
                            "steps": len(times),
                            "s_per_step": statistics.fmean(times),
                            "images_per_s": rate,
                            "pairs_per_s": rate / 2,
                        }
                    )
                    log.info("%s", rows[-1])
    print(
        f"\ntraining throughput (views/s = 2 x pairs/s), {warmup} warm-up + {steps} timed steps, "
        f"torch threads {torch.get_num_threads()}:"
    )
    print_table(
        rows,
        [
            "config",
            "backbone",
            "size",
            "batch",
            "device",
            "path",
            "steps",
            "s_per_step",
            "images_per_s",
            "pairs_per_s",
        ],
    )
    result: dict[str, Any] = {
        "quick": quick,
        "warmup": warmup,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "num_workers": args.num_workers,
        "configs": [
            {"name": c.name, "batch": c.batch_size, "model": dataclasses.asdict(c.model)} for c in chosen
        ],
        "rows": rows,
    }
    write_result(getattr(args, "out", None) or "bench-results", "train", result, argv=sys.argv)
    return result
