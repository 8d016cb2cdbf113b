"""``visearch bench quality``: retrieval quality on real photographs (CIFAR-10) against baselines.

What one run does, all seeded:

1. Split ``--data`` (``../shared/data/cifar10-train``: ``<class>/<file>.jpg``) per class into
   ``--train-images`` training images and ``--heldout-images`` held-out ones, disjoint
   (:func:`select_split`). Only the training part is landed (:func:`visearch.ingest.landing.land_folder`
   into a temporary landing root) and ingested (:mod:`visearch.ingest.images`) on a local Spark session;
   held-out images are read straight from their files and never reach training.
2. Judgments from the labels (:func:`relevance`): 5 = same class, 1 = same group (vehicles:
   airplane, automobile, ship, truck; animals: the rest), 0 = other. Queries and candidates are
   held-out images.
3. Training with the pipeline's own code at the small-image configuration (ResNet-18 at 32 px,
   3×3 stride-1 stem without max-pool, ``--width`` channels: 16 by default, ~1/16 of the
   multiply-adds of torchvision's 64, what a shared 2-core CPU can train in an hour): pairs as
   :mod:`visearch.train.pair_table` makes them (self pairs of :func:`visearch.train.pairs.self_pair_sample`; with
   ``--with-clicks`` also debiased click pairs from simulated sessions, :func:`simulate_clicks`,
   kept at ``train.min_clicks`` = ``--min-clicks``), records by
   :func:`visearch.train.distributed.assemble_records`, :class:`~visearch.train.trainer.PairDataset` (images
   decoded once, :class:`DecodedCache`) + :func:`visearch.train.trainer.train`, saved and loaded through
   :class:`~visearch.train.registry.ModelRegistry`. The trainer runs in this process rather than through
   :func:`visearch.train.train_day.run`'s TorchDistributor (one process either way on this machine, and a wall-clock
   budget needs the ``on_step`` hook). The step count comes from a short timing probe
   (``budget / seconds per step``); both learned models get the same steps, and a run still
   going at 1.25 × the budget is stopped.
4. Embedders: colour histogram, random-weight network (same architecture), learned (self) and,
   with ``--with-clicks``, learned (self + clicks). Both protocols of :mod:`visearch.evaluate.evaluation`
   (``judged``: each query's ``--candidates`` judged held-out images ranked; ``corpus``: exact
   top-10 of the whole held-out corpus, query excluded, every pair judged) and kNN accuracy
   (k = 10, leave-one-out over the held-out corpus).

Metrics count relevance >= 1 as relevant (the pipeline's threshold), so recall and mAP of the
corpus protocol are over same-group images too; nDCG uses the grades.

Try: visearch bench quality --quick --out bench-results
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visearch.bench import print_table, write_result

if TYPE_CHECKING:
    from visearch.core.config import ModelSettings, Settings
    from visearch.train.pairs import PairStats
    from visearch.train.registry import LoadedModel
    from visearch.train.trainer import PairRecord, TrainConfig

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
VEHICLES: frozenset[str] = frozenset({"airplane", "automobile", "ship", "truck"})
SAME_CLASS, SAME_GROUP, OTHER = 5, 1, 0
#: Click probability of an examined result by relevance grade (the demo's click model).
CLICK_BY_GRADE: dict[int, float] = {SAME_CLASS: 0.9, SAME_GROUP: 0.25, OTHER: 0.04}
DS = "2026-01-01"
KS: tuple[int, ...] = (10,)
KNN_K = 10
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-train"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

COLOR_HISTOGRAM = "color_histogram"
RANDOM_INIT = "random_init"
LEARNED_SELF = "learned_self"
LEARNED_CLICKS = "learned_self_clicks"


def group_of(label: str) -> str:
    """``"vehicle"`` or ``"animal"`` for a CIFAR-10 class.

    Raises:
        ValueError: for a name that is not a CIFAR-10 class.
    """
    if label not in CLASSES:
        raise ValueError(f"not a CIFAR-10 class: {label!r}")
    return "vehicle" if label in VEHICLES else "animal"


def relevance(query_label: str, candidate_label: str) -> int:
    """Graded judgment from labels: 5 same class, 1 same animal/vehicle group, 0 other.

    Raises:
        ValueError: for a label that is not a CIFAR-10 class.
    """
    if query_label == candidate_label:
        group_of(query_label)
        return SAME_CLASS
    return SAME_GROUP if group_of(query_label) == group_of(candidate_label) else OTHER


# ------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LabelledImage:
    """One image file of the data folder with its class."""

    image_id: str
    path: Path
    label: str


@dataclass(frozen=True)
class Split:
    """Disjoint training and held-out images."""

    train: list[LabelledImage]
    heldout: list[LabelledImage]


def select_split(data: Path, train_per_class: int, heldout_per_class: int, *, seed: int = 0) -> Split:
    """Per class, a seeded permutation of its files: the first ``train_per_class`` for training,
    the next ``heldout_per_class`` held out (so the two never share a file).

    Raises:
        ValueError: for non-positive sizes, or a class with fewer files than both sizes together.
        FileNotFoundError: when ``data`` or a class folder is missing.
    """
    if train_per_class < 1 or heldout_per_class < 1:
        raise ValueError(
            f"images per class must be >= 1, got train={train_per_class} heldout={heldout_per_class}"
        )
    if not data.is_dir():
        raise FileNotFoundError(f"no data folder {data} (expected <class>/<image> of CIFAR-10)")
    train: list[LabelledImage] = []
    heldout: list[LabelledImage] = []
    for index, label in enumerate(CLASSES):
        folder = data / label
        if not folder.is_dir():
            raise FileNotFoundError(f"no class folder {folder}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        need = train_per_class + heldout_per_class
        if len(files) < need:
            raise ValueError(f"class {label!r} has {len(files)} images, fewer than {need}")
        order = np.random.default_rng([seed, index]).permutation(len(files))[:need]
        chosen = [files[int(i)] for i in order]
        train += [LabelledImage(f"{label}/{p.name}", p, label) for p in chosen[:train_per_class]]
        heldout += [LabelledImage(f"heldout/{label}/{p.name}", p, label) for p in chosen[train_per_class:]]
    return Split(train, heldout)


def stage_folder(images: Sequence[LabelledImage], dest: Path) -> Path:
    """Copy the images to ``dest/<class>/<file>`` (what ``land_folder`` reads); return ``dest``."""
    for image in images:
        target = dest / image.label / image.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.path, target)
    return dest


def land_and_ingest(
    settings: Settings, folder: Path, ds: str
) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Land ``folder`` into ``settings.landing`` and ingest it for ``ds`` (:mod:`visearch.ingest.images`).

    Returns:
        ``{image_id: uri}`` and ``{image_id: class}`` of the ``ok`` rows of ``silver.images``
        (the class is the image's first tag, its folder), and the job's result.

    Raises:
        RuntimeError: when ingestion keeps no image.
    """
    from pyspark.sql import functions as F

    from visearch.core import tables as T
    from visearch.core.spark import get_spark
    from visearch.ingest import images as ingest_images
    from visearch.ingest.landing import land_folder

    summary = land_folder(folder, ds, landing=settings.landing, settings=settings, namespace="cifar10")
    log.info("landed %s", summary.to_dict())
    spark = get_spark(settings, "visearch-bench-quality")
    result = ingest_images.run(settings, ds, spark=spark)
    rows = (T.read(spark, settings, T.SILVER_IMAGES).where(F.col("status") == "ok")
            .select("image_id", "uri", "tags").collect())
    if not rows:
        raise RuntimeError(f"ingestion kept no image of {folder}: {result}")
    uris = {r["image_id"]: r["uri"] for r in rows}
    labels = {r["image_id"]: r["tags"][0] for r in rows}
    return uris, labels, result


# ---------------------------------------------------------------------------------- judgments


def judgments_for(
    labels: Mapping[str, str], *, candidates: int | None, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``{query: {candidate: grade}}`` over the labelled ids, queries never judged against themselves.

    ``candidates`` = None judges every other id (the corpus protocol); a number judges a seeded
    sample of that many per query (the judged protocol).

    Raises:
        ValueError: for fewer than two ids or ``candidates`` < 1.
    """
    ids = sorted(labels)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 labelled images, got {len(ids)}")
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for q in ids:
        others = [i for i in ids if i != q]
        if candidates is not None and candidates < len(others):
            others = [others[int(j)] for j in sorted(rng.choice(len(others), candidates, replace=False))]
        out[q] = {c: float(relevance(labels[q], labels[c])) for c in others}
    return out


# ------------------------------------------------------------------------------------- clicks


def result_list(
    query: str, labels: Mapping[str, str], by_label: Mapping[str, Sequence[str]],
    by_group: Mapping[str, Sequence[str]], rng: np.random.Generator, shown: int,
) -> list[str]:
    """What a first search model shows for ``query``, composed as the demo composes its lists
    (:func:`visearch.demo.simulation._candidates`): 1–4 images of its class, 2 of its animal/vehicle group,
    the rest random, never the query itself, no repeats.
    """
    chosen: dict[str, None] = {query: None}

    def take(pool: Sequence[str], n: int) -> None:
        want = len(chosen) + max(0, min(n, shown + 1 - len(chosen)))
        for i in rng.permutation(len(pool)):
            if len(chosen) >= want:
                break
            chosen.setdefault(pool[int(i)], None)

    label = labels[query]
    take(by_label[label], int(rng.integers(1, 5)))
    take(by_group[group_of(label)], 2)
    take(sorted(labels), shown)
    del chosen[query]
    return list(chosen)


def simulate_clicks(
    labels: Mapping[str, str], *, sessions_per_query: int, shown: int = 10, seed: int = 0
) -> list[PairStats]:
    """Search sessions on the training images, aggregated to (query, image, position) cells.

    As the demo simulates its click logs: each query gets a seeded result list of ``shown``
    images (:func:`result_list`: some of its class, some of its group, the rest random); each
    of its sessions shows that list in a fresh random order (so position is independent of
    relevance), and a result at position ``p`` is clicked with probability
    ``(1/p) × CLICK_BY_GRADE[grade]``: users click results of the query's class, rarely others.

    Raises:
        ValueError: for fewer than ``shown + 1`` images or non-positive sizes.
    """
    from visearch.train.pairs import PairStats

    ids = sorted(labels)
    if sessions_per_query < 1 or shown < 1:
        raise ValueError(f"sessions_per_query and shown must be >= 1, got {sessions_per_query}, {shown}")
    if len(ids) <= shown:
        raise ValueError(f"need more than {shown} images to simulate sessions, got {len(ids)}")
    rng = np.random.default_rng([seed, 7])
    by_label: dict[str, list[str]] = defaultdict(list)
    by_group: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        by_label[labels[i]].append(i)
        by_group[group_of(labels[i])].append(i)
    cells: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for q in ids:
        results = result_list(q, labels, by_label, by_group, rng, shown)
        for _ in range(sessions_per_query):
            order = rng.permutation(shown)
            for position, j in enumerate(order, start=1):
                image = results[int(j)]
                cell = cells[(q, image, position)]
                cell[0] += 1
                if rng.uniform() < CLICK_BY_GRADE[relevance(labels[q], labels[image])] / position:
                    cell[1] += 1
    return [PairStats(q, i, p, n, c) for (q, i, p), (n, c) in sorted(cells.items())]


def training_records(
    uris: Mapping[str, str], stats: Sequence[PairStats] | None, settings: Settings, ds: str,
    labels: Mapping[str, str] | None = None,
) -> tuple[list[PairRecord], dict[str, Any]]:
    """Self pairs (and click pairs when ``stats`` is given) as :mod:`visearch.train.pair_table` mines them.

    Self pairs: :func:`~visearch.train.pairs.self_pair_sample` of every image (up to
    ``train.self_pairs_per_day``, at least all of them here). Click pairs: propensities by EM,
    then :func:`~visearch.train.pairs.debiased_click_pairs` with the ``train`` thresholds. No hard
    negatives (their extra views would cost the clicks run steps at an equal time budget).

    Returns:
        The records and counts (pairs by source, propensity estimate and, given ``labels``, the
        share of click pairs whose two images have the same class).
    """
    from visearch.train.distributed import PairRow, assemble_records
    from visearch.train.pairs import debiased_click_pairs, estimate_propensities, self_pair_sample

    cfg = settings.train
    rows = [PairRow(i, i, "self", 1.0, ()) for i in self_pair_sample(uris, ds, max(len(uris), 1))]
    info: dict[str, Any] = {}
    if stats is not None:
        estimate = estimate_propensities(stats)
        pairs = debiased_click_pairs(stats, estimate.propensity, min_impressions=cfg.min_impressions,
                                     min_clicks=cfg.min_clicks)
        rows += [PairRow(p.query_image_id, p.image_id, "click", p.weight, ()) for p in pairs]
        info["propensity"] = {str(k): round(v, 3) for k, v in sorted(estimate.propensity.items())}
        info["clicks"] = int(sum(s.clicks for s in stats))
        info["impressions"] = int(sum(s.impressions for s in stats))
        if labels is not None and pairs:
            same = sum(labels[p.query_image_id] == labels[p.image_id] for p in pairs)
            info["click_pairs_same_class"] = round(same / len(pairs), 3)
    assembled = assemble_records(rows, uris)
    info["pairs"] = assembled.by_source()
    return list(assembled.records), info


# -------------------------------------------------------------------------------------- train


class BudgetExhaustedError(RuntimeError):
    """Raised from ``on_step`` to stop a run that went past its wall-clock limit."""


@dataclass(frozen=True)
class AugmentOptions:
    """The view pipeline of the learned models (:class:`visearch.train.augment.SimCLRAugment`)."""

    strength: float = 0.5
    min_scale: float = 0.2
    blur: float = 0.0


class DecodedCache:
    """``loader_fn`` for :class:`~visearch.train.trainer.PairDataset` that reads and decodes each URI once.

    A step at 32 px spends a large share of its data time reading and decoding JPEGs; the
    decoded images of a few thousand training photographs fit in a few tens of MB.
    """

    def __init__(self, draft_size: int) -> None:
        self.draft_size = draft_size
        self._images: dict[str, Any] = {}

    def __call__(self, uri: str) -> Any:
        """The decoded RGB image of ``uri`` (a PIL image, shared: callers must not modify it)."""
        image = self._images.get(uri)
        if image is None:
            from visearch.core.storage import read_uri
            from visearch.train.preprocess import decode_image

            image = decode_image(read_uri(uri), draft_size=self.draft_size)
            self._images[uri] = image
        return image


def pair_dataset(
    model_settings: ModelSettings, records: Sequence[PairRecord], cfg: TrainConfig, augment: AugmentOptions,
    cache: DecodedCache | None = None,
) -> Any:
    """The trainer's :class:`~visearch.train.trainer.PairDataset` with the bench's views and a decode cache."""
    from visearch.train.augment import SimCLRAugment
    from visearch.train.preprocess import Preprocessing
    from visearch.train.trainer import PairDataset

    prep = Preprocessing.from_settings(model_settings)
    views = SimCLRAugment(prep.size, strength=augment.strength, prep=prep, min_scale=augment.min_scale,
                          blur=augment.blur)
    loader = cache if cache is not None else DecodedCache(2 * prep.size)
    return PairDataset(records, loader, prep, views, seed=cfg.seed)


def train_records(
    model_settings: ModelSettings,
    records: Sequence[PairRecord],
    cfg: TrainConfig,
    *,
    augment: AugmentOptions,
    checkpoint_dir: Path,
    stop_after_s: float | None = None,
    cache: DecodedCache | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train a fresh model (seeded) on ``records`` with :func:`visearch.train.trainer.train`.

    Returns:
        The trained model and ``{"steps", "seconds", "cpu_seconds", "final_loss", "stopped_early"}``
        (``cpu_seconds``: user + system time of this process while training, all threads).
    """
    import torch

    from visearch.core.storage import open_store
    from visearch.train.model import build_model
    from visearch.train.trainer import train

    torch.manual_seed(cfg.seed)
    model = build_model(model_settings)
    dataset = pair_dataset(model_settings, records, cfg, augment, cache)
    store = open_store(checkpoint_dir.as_uri())
    losses: list[float] = []
    start = time.perf_counter()
    cpu_start = time.process_time()

    def on_step(step: int, loss: float) -> None:
        losses.append(loss)
        if stop_after_s is not None and time.perf_counter() - start > stop_after_s and step < cfg.steps:
            raise BudgetExhaustedError(f"stopped at step {step} of {cfg.steps} after {stop_after_s:.0f}s")

    stopped = False
    try:
        train(model, dataset, cfg, checkpoint_store=store, checkpoint_prefix="ckpt", resume=False,
              progress=False, on_step=on_step)
    except BudgetExhaustedError as exc:
        log.warning("%s", exc)
        stopped = True
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    model.eval()
    return model, {"steps": len(losses), "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
                   "final_loss": round(losses[-1], 4) if losses else None, "stopped_early": stopped,
                   "first_loss": round(losses[0], 4) if losses else None}


def seconds_per_step(model_settings: ModelSettings, records: Sequence[PairRecord], cfg: TrainConfig,
                     *, augment: AugmentOptions, checkpoint_dir: Path, steps: int = 4,
                     cache: DecodedCache | None = None) -> float:
    """Mean wall-clock seconds of a step, from a probe run of ``steps`` (first one not counted)."""
    times: list[float] = []
    last = [time.perf_counter()]

    probe = dataclasses.replace(cfg, steps=steps, checkpoint_every=10_000, log_every=10_000)
    from visearch.core.storage import open_store
    from visearch.train.model import build_model
    from visearch.train.trainer import train

    model = build_model(model_settings)
    dataset = pair_dataset(model_settings, records, probe, augment, cache)

    def on_step(step: int, loss: float) -> None:
        now = time.perf_counter()
        if step > 1:
            times.append(now - last[0])
        last[0] = now

    store = open_store(checkpoint_dir.as_uri())
    train(model, dataset, probe, checkpoint_store=store, checkpoint_prefix="probe", resume=False,
          progress=False, on_step=on_step)
    return float(np.mean(times)) if times else time.perf_counter() - last[0]


# ------------------------------------------------------------------------------------ evaluate


def evaluate(
    embedders: Mapping[str, Any],
    images: Mapping[str, bytes],
    labels: Mapping[str, str],
    judged: Mapping[str, Mapping[str, float]],
    full: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    """``{embedder: {"judged_ndcg@10", ..., "corpus_recall@10", "knn@10"}}`` on the held-out images."""
    from visearch.evaluate.evaluation import CORPUS, JUDGED, embed_ids, evaluate_vectors, knn_accuracy_at

    ids = sorted(images)
    out: dict[str, dict[str, float]] = {}
    for name, embedder in embedders.items():
        t0 = time.perf_counter()
        vectors = embed_ids(embedder, images, ids)  # (N, D) unit rows
        metrics: dict[str, float] = {}
        for protocol, judgments in ((JUDGED, judged), (CORPUS, full)):
            for row in evaluate_vectors(name, ids, vectors, judgments, KS, (protocol,)):
                if row.metric in ("ndcg", "map", "recall"):
                    metrics[f"{protocol}_{row.name}"] = round(row.value, 4)
        metrics[f"knn@{KNN_K}"] = round(knn_accuracy_at(ids, vectors, labels, (KNN_K,))[KNN_K], 4)
        log.info("%s: %s (%.1fs)", name, metrics, time.perf_counter() - t0)
        out[name] = metrics
    return out


def _loaded(model: Any, registry: Any, config: Mapping[str, Any]) -> LoadedModel:
    version: str = registry.save(model, config=config)
    loaded: LoadedModel = registry.load(version)
    return loaded


# ----------------------------------------------------------------------------------------- run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``visearch bench quality``."""
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: 20 train + 10 held-out images per class, 0.5 min budget")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CIFAR-10 folder <class>/<image>")
    parser.add_argument("--train-images", type=int, default=500, help="training images per class")
    parser.add_argument("--heldout-images", type=int, default=50, help="held-out images per class")
    parser.add_argument("--budget-minutes", type=float, default=10.0,
                        help="wall-clock training budget of each learned model")
    parser.add_argument("--steps", type=int, default=0,
                        help="fixed training steps of each learned model instead of --budget-minutes (no "
                             "timing probe and no wall-clock cut: a loaded machine slows the run, not the model)")
    parser.add_argument("--with-clicks", action="store_true",
                        help="also train self + simulated click pairs at the same budget")
    parser.add_argument("--sessions-per-query", type=int, default=5,
                        help="simulated sessions per query image")
    parser.add_argument("--min-clicks", type=int, default=2,
                        help="train.min_clicks of the click pairs (1 keeps ~70%% same-class pairs, 2 ~88%%)")
    parser.add_argument("--candidates", type=int, default=50,
                        help="judged candidates per query (judged protocol)")
    parser.add_argument("--batch-size", type=int, default=128, help="pairs per training step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--temperature", type=float, default=0.2, help="InfoNCE temperature")
    parser.add_argument("--width", type=int, default=16,
                        help="ResNet-18 channels of the stem (model.width; 64 is torchvision's, ~16x the MACs)")
    parser.add_argument("--embed-dim", type=int, default=128, help="embedding size")
    parser.add_argument("--augment-strength", type=float, default=0.5, help="SimCLR colour-jitter strength")
    parser.add_argument("--min-scale", type=float, default=0.2, help="smallest random-crop area share")
    parser.add_argument("--blur", type=float, default=0.0,
                        help="Gaussian blur probability (SimCLR uses none on CIFAR)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default). 1 wastes no CPU in OpenMP spin-waits "
                             "when other jobs load the cores")
    parser.add_argument("--seed", type=int, default=0)


def _check(args: argparse.Namespace) -> None:
    if args.quick:
        args.train_images, args.heldout_images, args.budget_minutes = 20, 10, 0.5
        args.candidates = min(args.candidates, 20)
        args.batch_size = min(args.batch_size, 32)
    for name in ("train_images", "heldout_images", "sessions_per_query", "candidates", "batch_size", "width",
                 "embed_dim", "min_clicks"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; print the table, write ``<out>/quality.json``, return the result.

    Raises:
        ValueError: for invalid sizes or budget, or a data folder with too few images.
        FileNotFoundError: when the data folder is missing.
    """
    import torch

    from visearch.core.config import ModelSettings, load_settings
    from visearch.core.storage import open_store
    from visearch.evaluate.baselines import ColorHistogramEmbedder
    from visearch.evaluate.evaluation import random_init_embedder
    from visearch.train.preprocess import Preprocessing
    from visearch.train.registry import ModelRegistry
    from visearch.train.trainer import TrainConfig

    _check(args)
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cpu_started = time.process_time()
    load = os.getloadavg()
    split = select_split(Path(args.data), args.train_images, args.heldout_images, seed=args.seed)
    heldout_paths = {i.path for i in split.heldout}
    overlap = sorted(str(i.path) for i in split.train if i.path in heldout_paths)
    if overlap:  # select_split guarantees this; the benchmark's validity rests on it
        raise RuntimeError(f"train and held-out sets share {overlap[:3]}")

    with tempfile.TemporaryDirectory(prefix="visearch-quality-") as tmp_name:
        tmp = Path(tmp_name)
        settings = load_settings(env={"VISEARCH_LANDING": str(tmp / "landing"),
                                      "VISEARCH_LAKE": str(tmp / "lake"),
                                      "VISEARCH_ARTIFACTS": str(tmp / "artifacts")})
        model_settings = ModelSettings(backbone="resnet18", embed_dim=args.embed_dim, image_size=32,
                                       small_stem=True, width=args.width)
        settings = dataclasses.replace(settings, model=model_settings,
                                       train=dataclasses.replace(settings.train, min_clicks=args.min_clicks))
        augment = AugmentOptions(args.augment_strength, args.min_scale, args.blur)
        cache = DecodedCache(2 * model_settings.image_size)

        t0 = time.perf_counter()
        folder = stage_folder(split.train, tmp / "train-images")
        uris, train_labels, ingest = land_and_ingest(settings, folder, DS)
        ingest_s = time.perf_counter() - t0
        log.info("ingested %d training images in %.1fs", len(uris), ingest_s)

        heldout_labels = {i.image_id: i.label for i in split.heldout}
        images = {i.image_id: i.path.read_bytes() for i in split.heldout}
        judged = judgments_for(heldout_labels, candidates=args.candidates, seed=args.seed)
        full = judgments_for(heldout_labels, candidates=None)

        cfg = TrainConfig.from_settings(settings.train, batch_size=min(args.batch_size, len(uris)),
                                        lr=args.lr, temperature=args.temperature,
                                        seed=args.seed, checkpoint_every=1_000_000, log_every=50,
                                        device="cpu", warmup_fraction=0.05)
        self_records, self_info = training_records(uris, None, settings, DS)
        runs: dict[str, tuple[list[PairRecord], dict[str, Any]]] = {LEARNED_SELF: (self_records, self_info)}
        if args.with_clicks:
            stats = simulate_clicks(train_labels, sessions_per_query=args.sessions_per_query, seed=args.seed)
            runs[LEARNED_CLICKS] = training_records(uris, stats, settings, DS, train_labels)

        budget_s = 60.0 * args.budget_minutes
        stop_after_s: float | None = 1.25 * budget_s
        if args.steps:  # a fixed amount of work: no probe, no wall-clock cut (train CPU seconds reported)
            per_step, steps, stop_after_s = 0.0, args.steps, None
            log.info("%d steps a model (--steps), no wall-clock budget", steps)
        else:
            per_step = seconds_per_step(model_settings, self_records, cfg, augment=augment,
                                        checkpoint_dir=tmp / "probe", cache=cache)
            steps = max(2, int(budget_s / per_step))
            log.info("%.2fs a step -> %d steps in %.1f min", per_step, steps, args.budget_minutes)
        cfg = dataclasses.replace(cfg, steps=steps)

        registry = ModelRegistry(open_store(settings.artifacts))
        embedders: dict[str, Any] = {COLOR_HISTOGRAM: ColorHistogramEmbedder(),
                                     RANDOM_INIT: random_init_embedder(
                                         {**dataclasses.asdict(model_settings), "preprocessing":
                                          Preprocessing.from_settings(model_settings).to_dict()}, args.seed)}
        training: dict[str, dict[str, Any]] = {}
        for name, (records, info) in runs.items():
            model, summary = train_records(model_settings, records, cfg,
                                           augment=augment, cache=cache,
                                           checkpoint_dir=tmp / f"ckpt-{name}", stop_after_s=stop_after_s)
            training[name] = {**summary, **info}
            embedders[name] = _loaded(model, registry, {"ds": DS, "bench": "quality", "run": name, **summary})

        metrics = evaluate(embedders, images, heldout_labels, judged, full)

    base = metrics[COLOR_HISTOGRAM]
    rows: list[dict[str, Any]] = []
    for name, values in metrics.items():
        row: dict[str, Any] = {"embedder": name, **values}
        for protocol in ("judged", "corpus"):
            denominator = base[f"{protocol}_ndcg@10"]
            row[f"{protocol}_ndcg_vs_hist"] = round(values[f"{protocol}_ndcg@10"] / denominator, 3) \
                if denominator > 0 else float("nan")
        row["train_s"] = training.get(name, {}).get("seconds", 0.0)
        row["train_cpu_s"] = training.get(name, {}).get("cpu_seconds", 0.0)
        row["steps"] = training.get(name, {}).get("steps", 0)
        rows.append(row)
    columns = ["embedder", "judged_ndcg@10", "judged_map@10", "judged_recall@10", "corpus_ndcg@10",
               "corpus_map@10", "corpus_recall@10", "knn@10", "judged_ndcg_vs_hist", "corpus_ndcg_vs_hist",
               "train_s", "train_cpu_s", "steps"]
    print(f"\nretrieval quality on {len(images)} held-out CIFAR-10 photographs "
          f"({len(uris)} training images, "
          f"{f'{steps} steps' if args.steps else f'{args.budget_minutes} min budget'} a model, "
          f"load average {load[0]:.1f} on {os.cpu_count()} CPUs)")
    table = print_table(rows, columns)
    result: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if not callable(v)},
        "model": dataclasses.asdict(model_settings),
        "train_config": dataclasses.asdict(cfg),
        "seconds_per_step_probe": None if args.steps else round(per_step, 3),  # no probe with --steps
        "train_images": len(uris),
        "heldout_images": len(images),
        "train_ids": sorted(uris),
        "heldout_ids": sorted(images),
        "train_paths": sorted(str(i.path) for i in split.train),
        "heldout_paths": sorted(str(i.path) for i in split.heldout),
        "judged_queries": len(judged),
        "judged_pairs": sum(len(v) for v in judged.values()),
        "grade_counts": {str(g): sum(1 for j in full.values() for v in j.values() if v == g)
                         for g in (SAME_CLASS, SAME_GROUP, OTHER)},
        "ingest": {**ingest, "seconds": round(ingest_s, 1)},
        "training": training,
        "rows": rows,
        "table": table,
        "load_average": [round(x, 2) for x in load],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
    }
    path = write_result(args.out, "quality", result, sys.argv)
    result["path"] = str(path)
    return result
