"""Training loop: data stream arithmetic, resume equivalence, non-finite loss, loss goes down, DDP."""

from __future__ import annotations

import io
import itertools
import math
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from visearch.core.storage import ObjectStore, open_store
from visearch.train.augment import SimCLRAugment
from visearch.train.loss import InfoNCELoss
from visearch.train.model import EmbeddingModel
from visearch.train.preprocess import Preprocessing
from visearch.train.trainer import (
    NonFiniteLossError,
    PairDataset,
    PairRecord,
    TrainConfig,
    batch_keys,
    list_checkpoints,
    lr_factor,
    train,
)

torch.set_num_threads(1)

SIZE = 32
PREP = Preprocessing(size=SIZE)


def synthetic_images(count: int, seed: int = 0) -> dict[str, bytes]:
    """Distinct blocky colour patterns as PNG bytes, keyed by URI."""
    rng = np.random.default_rng(seed)
    images = {}
    for i in range(count):
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(blocks).resize((48, 48), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        images[f"mem://img/{i}.png"] = buf.getvalue()
    return images


def self_pair_dataset(
    images: dict[str, bytes], *, hard: int = 0, strength: float = 0.5, min_scale: float = 0.2
) -> PairDataset:
    uris = sorted(images)
    records = [
        PairRecord(uri, uri, 1.0, i, tuple(uris[(i + k + 1) % len(uris)] for k in range(hard)))
        for i, uri in enumerate(uris)
    ]
    augment = SimCLRAugment(SIZE, strength=strength, prep=PREP, blur=0.0, min_scale=min_scale)
    return PairDataset(records, images.__getitem__, PREP, augment, num_hard_negatives=hard)


def tiny_model(seed: int = 0) -> EmbeddingModel:
    torch.manual_seed(seed)
    return EmbeddingModel("resnet18", embed_dim=16, image_size=SIZE, prep=PREP)


def store_at(path: Path) -> ObjectStore:
    return open_store("file://" + str(path))


# ------------------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("n", [1, 5, 16, 37])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_batch_keys__ranks_are_disjoint_and_every_record_is_seen_once_per_epoch(
    n: int, world_size: int
) -> None:
    batch = 4
    seen: list[int] = []
    steps = math.ceil(2 * n / (batch * world_size)) + 1
    for step in range(steps):
        positions = []
        for rank in range(world_size):
            keys = batch_keys(n, step, batch, seed=7, rank=rank, world_size=world_size)
            assert len(keys) == batch
            positions.extend(keys)
        seeds = [s for _, s in positions]
        assert len(set(seeds)) == len(seeds)  # no two samples of one step share augmentations
        seen.extend(i for i, _ in positions)
    for epoch in range(2):
        assert sorted(seen[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert batch_keys(n, 3, batch, seed=7) == batch_keys(n, 3, batch, seed=7)
    if n > 4:
        assert batch_keys(n, 0, batch, seed=7) != batch_keys(n, 0, batch, seed=8)


def test_batch_keys__rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        batch_keys(0, 0, 4, seed=0)
    with pytest.raises(ValueError, match="rank 2"):
        batch_keys(10, 0, 4, seed=0, rank=2, world_size=2)


def test_lr_factor__warms_up_linearly_then_decays_to_zero() -> None:
    total, warmup = 100, 10
    factors = [lr_factor(s, total, warmup) for s in range(total)]
    assert factors[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert factors[9] == pytest.approx(1.0) and factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] < 0.001


def test_train_config__validates_and_reads_settings() -> None:
    from visearch.core.config import TrainSettings

    cfg = TrainConfig.from_settings(TrainSettings(steps=12, batch_size=4), num_workers=1)
    assert (cfg.steps, cfg.batch_size, cfg.num_workers) == (12, 4, 1)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)


# ----------------------------------------------------------------------------------- dataset


def test_pair_dataset__self_pair_gives_two_views_of_one_decode() -> None:
    images = synthetic_images(3)
    reads: list[str] = []

    def loader(uri: str) -> bytes:
        reads.append(uri)
        return images[uri]

    uri = sorted(images)[0]
    views = SimCLRAugment(SIZE, strength=1.0, prep=PREP, blur=0.5)
    dataset = PairDataset([PairRecord(uri, uri, 2.0, 9)], loader, PREP, views)
    item = dataset[(0, 123)]
    assert reads == [uri]
    assert item["query"].shape == item["positive"].shape == (3, SIZE, SIZE)
    assert not torch.equal(item["query"], item["positive"])
    assert item["weight"] == 2.0 and item["group"] == 9
    again = dataset[(0, 123)]
    assert torch.equal(item["query"], again["query"]) and torch.equal(item["positive"], again["positive"])


def test_pair_dataset__pads_missing_hard_negatives_and_masks_them() -> None:
    images = synthetic_images(3)
    a, b, c = sorted(images)
    dataset = PairDataset(
        [PairRecord(a, b, 1.0, 0, (c,))], images.__getitem__, PREP, None, num_hard_negatives=3
    )
    item = dataset[0]
    assert item["hard_negatives"].shape == (3, 3, SIZE, SIZE)
    assert item["hard_negative_mask"].tolist() == [True, False, False]
    assert float(item["hard_negatives"][1:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="differs"):
        PairDataset([], images.__getitem__, PREP, SimCLRAugment(64))


def test_pair_dataset__names_the_uri_of_an_undecodable_image() -> None:
    dataset = PairDataset([PairRecord("mem://bad", "mem://bad", 1.0, 0)], lambda _u: b"garbage", PREP, None)
    with pytest.raises(ValueError, match="mem://bad"):
        dataset[0]


# ----------------------------------------------------------------------------------- training


def test_train__resume_after_a_kill_equals_training_straight_through(tmp_path: Path) -> None:
    images = synthetic_images(12)
    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-3, checkpoint_every=2, seed=3, keep_checkpoints=1)

    straight_model = tiny_model()
    straight = train(
        straight_model,
        self_pair_dataset(images, hard=1),
        cfg,
        checkpoint_store=store_at(tmp_path / "a"),
        checkpoint_prefix="ckpt/run",
        progress=False,
    )
    assert straight.steps_done == 4 and len(straight.losses) == 4

    class Killed(Exception):
        pass

    def kill_at_step_3(step: int, _loss: float) -> None:
        if step == 3:
            raise Killed

    store = store_at(tmp_path / "b")
    with pytest.raises(Killed):
        train(
            tiny_model(),
            self_pair_dataset(images, hard=1),
            cfg,
            checkpoint_store=store,
            checkpoint_prefix="ckpt/run",
            progress=False,
            on_step=kill_at_step_3,
        )
    assert [step for step, _ in list_checkpoints(store, "ckpt/run")] == [2]

    resumed_model = tiny_model(seed=99)  # different init: everything must come from the checkpoint
    resumed = train(
        resumed_model,
        self_pair_dataset(images, hard=1),
        cfg,
        checkpoint_store=store,
        checkpoint_prefix="ckpt/run",
        progress=False,
    )
    assert resumed.resumed_from == 2 and resumed.steps_done == 4
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-5, atol=1e-6)
    straight_state, resumed_state = straight_model.state_dict(), resumed_model.state_dict()
    for key, value in straight_state.items():
        assert torch.allclose(value.float(), resumed_state[key].float(), atol=1e-6), key
    assert [step for step, _ in list_checkpoints(store, "ckpt/run")] == [4]  # older ones pruned

    again = train(
        tiny_model(),
        self_pair_dataset(images),
        cfg,
        checkpoint_store=store,
        checkpoint_prefix="ckpt/run",
        progress=False,
    )
    assert again.steps_done == 4 and again.final_loss == pytest.approx(straight.final_loss)


def test_rng_state__round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    from visearch.train.trainer import _rng_state, _set_rng_state

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save(_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    _set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_train__fresh_run_clears_an_older_runs_checkpoints(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.put_bytes("c/step-00000009.pt", b"stale")
    cfg = TrainConfig(steps=1, batch_size=4, lr=3e-3, checkpoint_every=1)
    result = train(
        tiny_model(),
        self_pair_dataset(synthetic_images(4)),
        cfg,
        checkpoint_store=store,
        checkpoint_prefix="c",
        resume=False,
        progress=False,
    )
    assert result.resumed_from == 0 and result.checkpoints == ["c/step-00000001.pt"]
    assert [step for step, _ in list_checkpoints(store, "c")] == [1]


class NaNDataset(Dataset[dict[str, Any]]):
    """Wraps a dataset and poisons the queries with NaN."""

    def __init__(self, inner: PairDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        item = self.inner[key]
        item["query"] = torch.full_like(item["query"], float("nan"))
        return item


def test_train__non_finite_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    dataset = NaNDataset(self_pair_dataset(synthetic_images(8)))
    with pytest.raises(NonFiniteLossError, match="non-finite loss nan at step 1"):
        train(
            tiny_model(),
            dataset,
            TrainConfig(steps=3, batch_size=4, lr=3e-3),
            checkpoint_store=store,
            checkpoint_prefix="c",
            progress=False,
        )
    assert list_checkpoints(store, "c") == []
    assert issubclass(NonFiniteLossError, RuntimeError)


def test_train__amp_is_refused_on_cpu(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CUDA only"):
        train(
            tiny_model(),
            self_pair_dataset(synthetic_images(4)),
            TrainConfig(steps=1, batch_size=4, lr=3e-3, amp=True, device="cpu"),
            checkpoint_store=store_at(tmp_path),
            checkpoint_prefix="c",
            progress=False,
        )


def held_out_loss(model: EmbeddingModel, dataset: PairDataset) -> float:
    """InfoNCE of the whole set as one batch, fixed views, eval mode: a noise-free yardstick."""
    items = [dataset[(i, 1000 + i)] for i in range(len(dataset))]
    model.eval()
    with torch.inference_mode():
        q = model(torch.stack([it["query"] for it in items]))  # (N, D)
        p = model(torch.stack([it["positive"] for it in items]))  # (N, D)
    model.train()
    return float(InfoNCELoss(0.2)(q, p))


def test_train__lowers_the_loss_on_a_tiny_synthetic_set(tmp_path: Path) -> None:
    # Mild views (crops and flips) so that 16 CPU steps from scratch show progress in eval mode.
    dataset = self_pair_dataset(synthetic_images(16, seed=1), strength=0.0, min_scale=0.5)
    model = tiny_model()
    before = held_out_loss(model, dataset)
    assert before == pytest.approx(math.log(16), abs=0.3)  # a fresh model barely tells images apart
    cfg = TrainConfig(steps=16, batch_size=8, lr=1e-3, checkpoint_every=100, seed=0, temperature=0.2)
    result = train(
        model, dataset, cfg, checkpoint_store=store_at(tmp_path), checkpoint_prefix="c", progress=False
    )
    after = held_out_loss(model, dataset)
    assert after < 0.85 * before, (before, after)
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4]), result.losses
    assert result.images_per_sec > 0 and result.final_loss == result.losses[-1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train__bf16_autocast_and_channels_last_on_cuda(tmp_path: Path) -> None:
    model = tiny_model()
    result = train(
        model,
        self_pair_dataset(synthetic_images(16), hard=1),
        TrainConfig(steps=3, batch_size=8, lr=3e-3, checkpoint_every=3),
        checkpoint_store=store_at(tmp_path),
        checkpoint_prefix="gpu",
        progress=False,
    )
    assert all(math.isfinite(v) for v in result.losses) and len(result.losses) == 3
    assert next(model.parameters()).is_cuda
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ddp_worker(rank: int, world_size: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = DistributedDataParallel(tiny_model())
        result = train(
            model,
            self_pair_dataset(synthetic_images(8)),
            TrainConfig(steps=2, batch_size=4, lr=3e-3, checkpoint_every=2),
            checkpoint_store=open_store(root),
            checkpoint_prefix="ddp",
            rank=rank,
            world_size=world_size,
            progress=False,
        )
        torch.save({"state": model.module.state_dict(), "losses": result.losses}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_train__two_ddp_processes_agree_and_rank0_checkpoints(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    root = "file://" + str(tmp_path / "store")
    mp.spawn(_ddp_worker, args=(2, _free_port(), root, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["losses"] == pytest.approx(rank1["losses"])  # the all-reduced mean
    for key, value in rank0["state"].items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics are per process (no SyncBatchNorm)
        assert torch.allclose(value, rank1["state"][key], atol=1e-6), key
    assert [s for s, _ in list_checkpoints(open_store(root), "ddp")] == [2]
