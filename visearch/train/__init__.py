"""Training: preprocessing, augmentation, the model, the loss, pair mining, the trainer,
distributed training and the model registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.train.augment import ColorJitter as ColorJitter
    from visearch.train.augment import GaussianBlur as GaussianBlur
    from visearch.train.augment import HorizontalFlip as HorizontalFlip
    from visearch.train.augment import RandomGrayscale as RandomGrayscale
    from visearch.train.augment import RandomResizedCrop as RandomResizedCrop
    from visearch.train.augment import SimCLRAugment as SimCLRAugment
    from visearch.train.cadence import decide as decide
    from visearch.train.cadence import retrain_due as retrain_due
    from visearch.train.distributed import AssembledPairs as AssembledPairs
    from visearch.train.distributed import PairRow as PairRow
    from visearch.train.distributed import TrainSpec as TrainSpec
    from visearch.train.distributed import UriReader as UriReader
    from visearch.train.distributed import WorkerOutput as WorkerOutput
    from visearch.train.distributed import World as World
    from visearch.train.distributed import assemble_records as assemble_records
    from visearch.train.distributed import backend_for as backend_for
    from visearch.train.distributed import checkpoint_root as checkpoint_root
    from visearch.train.distributed import device_for as device_for
    from visearch.train.distributed import leave_worker as leave_worker
    from visearch.train.distributed import make_spec as make_spec
    from visearch.train.distributed import records_digest as records_digest
    from visearch.train.distributed import records_from_parquet as records_from_parquet
    from visearch.train.distributed import records_to_parquet as records_to_parquet
    from visearch.train.distributed import run_distributed as run_distributed
    from visearch.train.distributed import run_id as run_id
    from visearch.train.distributed import train_worker as train_worker
    from visearch.train.distributed import world_from_env as world_from_env
    from visearch.train.loss import InfoNCELoss as InfoNCELoss
    from visearch.train.model import Architecture as Architecture
    from visearch.train.model import EmbeddingModel as EmbeddingModel
    from visearch.train.model import build_model as build_model
    from visearch.train.model import unwrap as unwrap
    from visearch.train.pairs import PairStats as PairStats
    from visearch.train.pairs import debiased_click_pairs as debiased_click_pairs
    from visearch.train.pairs import estimate_propensities as estimate_propensities
    from visearch.train.pairs import hard_negatives as hard_negatives
    from visearch.train.pairs import self_pair_sample as self_pair_sample
    from visearch.train.preprocess import ImageDecodeError as ImageDecodeError
    from visearch.train.preprocess import Preprocessing as Preprocessing
    from visearch.train.preprocess import decode_image as decode_image
    from visearch.train.preprocess import preprocess as preprocess
    from visearch.train.preprocess import to_tensor as to_tensor
    from visearch.train.preprocess import validate_crop as validate_crop
    from visearch.train.registry import LoadedModel as LoadedModel
    from visearch.train.registry import ModelRegistry as ModelRegistry
    from visearch.train.registry import NoChampionError as NoChampionError
    from visearch.train.registry import UnknownVersionError as UnknownVersionError
    from visearch.train.registry import versions_of_day as versions_of_day
    from visearch.train.trainer import NonFiniteLossError as NonFiniteLossError
    from visearch.train.trainer import PairDataset as PairDataset
    from visearch.train.trainer import PairRecord as PairRecord
    from visearch.train.trainer import TrainConfig as TrainConfig
    from visearch.train.trainer import batch_keys as batch_keys
    from visearch.train.trainer import list_checkpoints as list_checkpoints
    from visearch.train.trainer import lr_factor as lr_factor
    from visearch.train.trainer import train as train

_EXPORTS = {
    "ColorJitter": "augment",
    "GaussianBlur": "augment",
    "HorizontalFlip": "augment",
    "RandomGrayscale": "augment",
    "RandomResizedCrop": "augment",
    "SimCLRAugment": "augment",
    "decide": "cadence",
    "retrain_due": "cadence",
    "AssembledPairs": "distributed",
    "PairRow": "distributed",
    "TrainSpec": "distributed",
    "UriReader": "distributed",
    "WorkerOutput": "distributed",
    "World": "distributed",
    "assemble_records": "distributed",
    "backend_for": "distributed",
    "checkpoint_root": "distributed",
    "device_for": "distributed",
    "leave_worker": "distributed",
    "make_spec": "distributed",
    "records_digest": "distributed",
    "records_from_parquet": "distributed",
    "records_to_parquet": "distributed",
    "run_distributed": "distributed",
    "run_id": "distributed",
    "train_worker": "distributed",
    "world_from_env": "distributed",
    "InfoNCELoss": "loss",
    "Architecture": "model",
    "EmbeddingModel": "model",
    "build_model": "model",
    "unwrap": "model",
    "PairStats": "pairs",
    "debiased_click_pairs": "pairs",
    "estimate_propensities": "pairs",
    "hard_negatives": "pairs",
    "self_pair_sample": "pairs",
    "ImageDecodeError": "preprocess",
    "Preprocessing": "preprocess",
    "decode_image": "preprocess",
    "preprocess": "preprocess",
    "to_tensor": "preprocess",
    "validate_crop": "preprocess",
    "LoadedModel": "registry",
    "ModelRegistry": "registry",
    "NoChampionError": "registry",
    "UnknownVersionError": "registry",
    "versions_of_day": "registry",
    "NonFiniteLossError": "trainer",
    "PairDataset": "trainer",
    "PairRecord": "trainer",
    "TrainConfig": "trainer",
    "batch_keys": "trainer",
    "list_checkpoints": "trainer",
    "lr_factor": "trainer",
    "train": "trainer",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
