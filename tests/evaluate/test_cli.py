"""visearch.evaluate.cli: ``visearch evaluate`` on a judged image folder, and its table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.evaluate.test_evaluation import squares
from visearch import cli
from visearch.core.config import ModelSettings, Settings, load_settings
from visearch.core.storage import open_store
from visearch.evaluate.cli import evaluate_folder, format_table
from visearch.evaluate.evaluation import COLOR_HISTOGRAM, JUDGED, MODEL, RANDOM_INIT, MetricRow, metrics_by_embedder
from visearch.train.model import build_model
from visearch.train.registry import ModelRegistry

TINY = ModelSettings(backbone="resnet18", embed_dim=16, image_size=32, small_stem=True)


def test_format_table__one_column_per_embedder_and_dash_for_missing() -> None:
    rows = [MetricRow(MODEL, JUDGED, "ndcg", 10, 0.5), MetricRow(COLOR_HISTOGRAM, JUDGED, "ndcg", 10, 0.25)]
    text = format_table(rows, (MODEL, RANDOM_INIT, COLOR_HISTOGRAM))
    line = next(t for t in text.splitlines() if t.startswith("ndcg@10"))
    assert line.split()[1:] == ["0.5000", "-", "0.2500"]
    assert metrics_by_embedder(rows, JUDGED) == {MODEL: {"ndcg@10": 0.5}, COLOR_HISTOGRAM: {"ndcg@10": 0.25}}



@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """Settings whose artifacts hold one tiny model version (not promoted)."""
    root = tmp_path_factory.mktemp("evaluation-cli")
    settings = load_settings(env={"VISEARCH_LANDING": str(root / "landing"),
                                  "VISEARCH_LAKE": str(root / "lake"),
                                  "VISEARCH_ARTIFACTS": str(root / "artifacts")})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(TINY)
    version = ModelRegistry(open_store(settings.artifacts)).save(model, config={"ds": "2026-01-01"})
    return settings, version


@pytest.fixture
def judged_folder(tmp_path: Path) -> tuple[Path, Path]:
    """The coloured squares as files in sub-folders, and a judgments CSV naming them by relative path."""
    images, judgments = squares()
    folder = tmp_path / "photos"
    for image_id, data in images.items():
        colour = image_id.split("-")[0]
        (folder / colour).mkdir(parents=True, exist_ok=True)
        (folder / colour / f"{image_id}.png").write_bytes(data)
    (folder / "notes.txt").write_text("not an image, ignored")
    lines = ["query,candidate,relevance"]
    for q, judged in sorted(judgments.items()):
        lines += [f"{q.split('-')[0]}/{q}.png,{c.split('-')[0]}/{c}.png,{int(r)}"
                  for c, r in sorted(judged.items())]
    csv_file = tmp_path / "judgments.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    return folder, csv_file


def test_cli_evaluate__prints_model_and_both_baselines_side_by_side(
        saved_model: tuple[Settings, str], judged_folder: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings, version = saved_model
    folder, csv_file = judged_folder
    monkeypatch.setenv("VISEARCH_ARTIFACTS", settings.artifacts)
    code = cli.main(["evaluate", "--images", str(folder), "--judgments", str(csv_file), "--model", version,
                     "--k", "1,3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "12 queries, 132 judgments, corpus of 12 images" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert f"model {version}" in header and "random weights" in header and "colour histogram" in header
    ndcg = [line.split() for line in out.splitlines() if line.startswith("ndcg@3")]
    assert len(ndcg) == 2  # judged and corpus
    assert all(cells[3] == "1.0000" for cells in ndcg)  # the colour histogram is the oracle here


def test_evaluate_folder__without_model_or_champion_raises(
        settings: Settings, judged_folder: tuple[Path, Path]) -> None:
    folder, csv_file = judged_folder
    with pytest.raises(ValueError, match="no model promoted"):
        evaluate_folder(folder, csv_file, settings=settings)


def test_evaluate_folder__uses_the_champion_and_refuses_unknown_files(
        saved_model: tuple[Settings, str], judged_folder: tuple[Path, Path]) -> None:
    settings, version = saved_model
    folder, csv_file = judged_folder
    ModelRegistry(open_store(settings.artifacts)).set_champion(version)
    rows, info = evaluate_folder(folder, csv_file, settings=settings, ks=(5,), protocols=(JUDGED,))
    assert info["model_version"] == version
    assert {r.embedder for r in rows} == {MODEL, RANDOM_INIT, COLOR_HISTOGRAM}
    assert {r.protocol for r in rows} == {JUDGED}
    bad = csv_file.with_name("bad.csv")
    bad.write_text("query,candidate,relevance\nred/red-0.png,elsewhere/cat.png,5\n")
    with pytest.raises(ValueError, match=r"not image files .*elsewhere/cat.png"):
        evaluate_folder(folder, bad, settings=settings)
