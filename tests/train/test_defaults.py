"""Settings are the one source of defaults: the config classes built from them agree with them.

Each class below mirrors knobs of one settings section. Its defaults (dataclass fields, or the
constructor's keyword defaults) must equal that section's defaults in ``Settings()``, so that code
and tests that leave a knob out get what the pipeline gets; and its ``from_settings`` must carry
every such knob over.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from visearch.bench.quality import AugmentOptions
from visearch.core.config import EmbedSettings, ModelSettings, Settings, TrainSettings
from visearch.embed.embedder import EmbedTask
from visearch.serve.rerank import DuplicateRule
from visearch.train.augment import SimCLRAugment
from visearch.train.distributed import TrainSpec
from visearch.train.model import Architecture, EmbeddingModel, build_model
from visearch.train.preprocess import Preprocessing
from visearch.train.trainer import TrainConfig

# (class, settings section, {class field: section field} where the names differ, fields left out: why)
MIRRORS: list[tuple[type, str, dict[str, str], dict[str, str]]] = [
    (TrainConfig, "train", {}, {}),
    (TrainSpec, "train", {}, {}),
    (SimCLRAugment, "train", {"strength": "augment_strength", "blur": "augment_blur"}, {}),
    (AugmentOptions, "train", {"strength": "augment_strength", "blur": "augment_blur"}, {}),
    (Architecture, "model", {}, {}),
    (EmbeddingModel, "model", {}, {"init_weights": "None there is the settings' '' (no file)"}),
    (Preprocessing, "model", {"size": "image_size"}, {}),
    (EmbedTask, "embed", {}, {}),
    (DuplicateRule, "search", {"min_cosine": "dup_cosine"}, {}),
]


def class_defaults(cls: type) -> dict[str, Any]:
    """Field defaults of a dataclass, else the keyword defaults of its constructor."""
    if dataclasses.is_dataclass(cls):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    params = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def shared_knobs(cls: type, section: str, renames: dict[str, str], left_out: dict[str, str]) -> dict[str, str]:
    """``{class field: settings field}`` of the knobs ``cls`` shares with the section."""
    section_fields = {f.name for f in dataclasses.fields(getattr(Settings(), section))}
    defaults = class_defaults(cls)
    assert set(renames) <= set(defaults), f"{cls.__name__} has no defaulted {sorted(set(renames) - set(defaults))}"
    assert set(renames.values()) <= section_fields, f"{section} has no {sorted(set(renames.values()) - section_fields)}"
    shared = {name: renames.get(name, name) for name in defaults if renames.get(name, name) in section_fields}
    return {k: v for k, v in shared.items() if k not in left_out}


def default_mismatches(cls: type, section: str, renames: dict[str, str], left_out: dict[str, str]) -> list[str]:
    """``cls.field = value != settings.section.field = value`` for every shared knob that disagrees."""
    settings = getattr(Settings(), section)
    defaults = class_defaults(cls)
    shared = shared_knobs(cls, section, renames, left_out)
    assert shared, f"{cls.__name__} shares no knob with settings.{section}: drop it from MIRRORS"
    return [
        f"{cls.__name__}.{name} = {defaults[name]!r} != settings.{section}.{field} = {getattr(settings, field)!r}"
        for name, field in shared.items()
        if defaults[name] != getattr(settings, field)
    ]


@pytest.mark.parametrize(("cls", "section", "renames", "left_out"), MIRRORS, ids=[m[0].__name__ for m in MIRRORS])
def test_defaults__every_config_class_defaults_to_the_settings_defaults(
    cls: type, section: str, renames: dict[str, str], left_out: dict[str, str]
) -> None:
    assert default_mismatches(cls, section, renames, left_out) == []


def test_defaults__a_disagreeing_default_is_reported() -> None:
    @dataclasses.dataclass(frozen=True)
    class Drifted:
        steps: int = TrainSettings().steps
        lr: float = 3e-3
        own_knob: int = 7

    assert default_mismatches(Drifted, "train", {}, {}) == [
        f"Drifted.lr = 0.003 != settings.train.lr = {TrainSettings().lr!r}"
    ]

    class Model:
        def __init__(self, backbone: str = "resnet18", image_size: int = 224) -> None: ...

    assert default_mismatches(Model, "model", {}, {}) == [
        f"Model.image_size = 224 != settings.model.image_size = {ModelSettings().image_size!r}"
    ]


# ----------------------------------------------------------------------------- from_settings


def test_from_settings__train_config_carries_every_shared_knob() -> None:
    train = TrainSettings(steps=7, batch_size=5, lr=2e-4, weight_decay=0.5, temperature=0.3, checkpoint_every=3, seed=9)
    cfg = TrainConfig.from_settings(train)
    for name, field in shared_knobs(TrainConfig, "train", {}, {}).items():
        assert getattr(cfg, name) == getattr(train, field) != getattr(TrainSettings(), field), name


def test_from_settings__model_and_preprocessing_follow_the_model_settings() -> None:
    model = ModelSettings(backbone="resnet34", embed_dim=24, image_size=32, small_stem=True, width=16,
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    prep = Preprocessing.from_settings(model)
    assert (prep.size, prep.mean, prep.std) == (32, model.mean, model.std)
    arch = build_model(model).arch
    for name, field in shared_knobs(Architecture, "model", {}, {}).items():
        assert getattr(arch, name) == getattr(model, field) != getattr(ModelSettings(), field), name


def test_from_settings__embed_task_carries_every_shared_knob() -> None:
    embed = EmbedSettings(batch_size=3, decode_workers=5, use_gpu=False, amp=False, cpu_optimize=False)
    settings = Settings(embed=embed)
    task = EmbedTask.from_settings(settings, "v-2026-01-01-00ab12cd", cpu_threads=2)
    assert (task.settings_json, task.model_version, task.cpu_threads) == (
        settings.to_json(), "v-2026-01-01-00ab12cd", 2
    )
    for name, field in shared_knobs(EmbedTask, "embed", {}, {}).items():
        assert getattr(task, name) == getattr(embed, field) != getattr(EmbedSettings(), field), name
