from __future__ import annotations

from pathlib import Path

import pytest

from visearch.core.config import Settings, load_settings, settings_from_json, to_uri


def test_defaults__roots_are_file_uris_under_dot_visearch() -> None:
    settings = load_settings(env={})
    assert settings.lake.startswith("file://") and settings.lake.endswith(".visearch/lake")
    assert settings.spark.master == "local[2]"
    assert not settings.uses_s3


def test_env__roots_and_nested_knobs_override_defaults() -> None:
    settings = load_settings(
        env={
            "VISEARCH_LAKE": "s3://bucket/lake/",
            "VISEARCH_LANDING": "/data/in",
            "VISEARCH_SPARK_CONF": "spark.a=1, spark.b=x=y",
            "VISEARCH_TRAIN__STEPS": "7",
            "VISEARCH_INDEX__TARGET_RECALL": "0.5",
            "VISEARCH_TRAIN__USE_GPU": "yes",
        }
    )
    assert settings.lake == "s3://bucket/lake"
    assert settings.landing == "file:///data/in"
    assert settings.spark.conf == {"spark.a": "1", "spark.b": "x=y"}
    assert settings.train.steps == 7 and settings.train.use_gpu is True
    assert settings.index.target_recall == 0.5
    assert settings.uses_s3


def test_yaml__file_then_env_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "v.yaml"
    cfg.write_text("lake: /x/lake\nmodel:\n  backbone: resnet50\n  image_size: 32\ntrain:\n  steps: 3\n")
    settings = load_settings(cfg, env={"VISEARCH_TRAIN__STEPS": "9"})
    assert settings.lake == "file:///x/lake"
    assert settings.model.backbone == "resnet50" and settings.model.image_size == 32
    assert settings.train.steps == 9


def test_yaml__unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "v.yaml"
    cfg.write_text("trian:\n  steps: 3\n")
    with pytest.raises(ValueError, match="trian"):
        load_settings(cfg, env={})


def test_env__wrong_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected int"):
        load_settings(env={"VISEARCH_TRAIN__STEPS": "many"})


def test_json_round_trip() -> None:
    settings = load_settings(env={"VISEARCH_MODEL__MEAN": "0.5,0.5,0.5"})
    again = settings_from_json(settings.to_json())
    assert again == settings
    assert again.model.mean == (0.5, 0.5, 0.5)


def test_to_uri__rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="gs://"):
        to_uri("gs://bucket/x")
    assert to_uri("s3a://b/p") == "s3://b/p"


def test_settings_is_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.lake = "x"  # type: ignore[misc]
