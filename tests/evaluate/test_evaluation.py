"""visearch.evaluate.evaluation: both protocols on hand-made sets, exact search against brute force."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from visearch.evaluate.baselines import ColorHistogramEmbedder
from visearch.evaluate.evaluation import (
    COLOR_HISTOGRAM,
    CORPUS,
    JUDGED,
    RANDOM_INIT,
    Embedder,
    embed_ids,
    evaluate_embedders,
    evaluate_vectors,
    exact_top_k,
    group_judgments,
    knn_accuracy_at,
    normalise,
    parse_judgments_csv,
    random_init_embedder,
    rank_judged,
    restrict_judgments,
    stable_sample,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def square(colour: tuple[int, int, int], side: int, offset: int) -> bytes:
    """A PNG of a coloured square on white (lossless, so the histogram is exact)."""
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    image.paste(colour, (offset, offset, offset + side, offset + side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def squares() -> tuple[dict[str, bytes], dict[str, dict[str, float]]]:
    """Four squares of each of 3 colours; every image judged against all others (5 same colour, 0 else)."""
    images = {f"{name}-{n}": square(rgb, side=20 + 2 * n, offset=n)
              for name, rgb in COLOURS.items() for n in range(4)}
    judgments = {q: {c: 5.0 if c.split("-")[0] == q.split("-")[0] else 0.0 for c in images if c != q}
                 for q in images}
    return images, judgments


def tiny_config() -> dict[str, Any]:
    """A saved model's config, enough for the random-weight baseline."""
    return {"backbone": "resnet18", "embed_dim": 16, "image_size": 32, "small_stem": True,
            "preprocessing": {"size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}


# ------------------------------------------------------------------------------------------ protocols


def test_evaluate_embedders__colour_histogram_is_perfect_on_coloured_squares() -> None:
    images, judgments = squares()
    embedders: dict[str, Embedder] = {COLOR_HISTOGRAM: ColorHistogramEmbedder(),
                                      RANDOM_INIT: random_init_embedder(tiny_config(), 0)}
    rows, counts = evaluate_embedders(embedders, images, judgments, (1, 3, 5))
    assert counts["queries"] == 12 and counts["judgments"] == 12 * 11 and counts["corpus"] == 12
    hist = {(r.protocol, r.name): r.value for r in rows if r.embedder == COLOR_HISTOGRAM}
    for protocol in (JUDGED, CORPUS):
        assert hist[(protocol, "ndcg@5")] == pytest.approx(1.0)
        assert hist[(protocol, "precision@3")] == pytest.approx(1.0)  # the 3 others of its colour first
        assert hist[(protocol, "precision@5")] == pytest.approx(3 / 5)
        assert hist[(protocol, "recall@3")] == pytest.approx(1.0)
        assert hist[(protocol, "mrr@1")] == pytest.approx(1.0)
        assert hist[(protocol, "map@5")] == pytest.approx(1.0)
    names = {(r.embedder, r.protocol, r.metric, r.k) for r in rows}
    assert len(names) == len(rows)  # one row per (embedder, protocol, metric, k)
    assert {r.metric for r in rows} == {"mrr", "precision", "recall", "map", "ndcg"}
    assert {r.k for r in rows} == {1, 3, 5}
    assert all(0.0 <= r.value <= 1.0 for r in rows)


def test_evaluate_vectors__corpus_protocol_counts_unjudged_results_as_zero() -> None:
    # q's nearest neighbour is the unjudged "x"; then the relevant "a"; then the judged-0 "b".
    ids = ["q", "x", "a", "b"]
    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.9, 0.43], [0.0, 1.0]], dtype=np.float32)
    judgments = {"q": {"a": 3.0, "b": 0.0}}
    rows = {(r.protocol, r.name): r.value for r in evaluate_vectors("m", ids, vectors, judgments, (1, 2))}
    assert rows[(CORPUS, "precision@1")] == 0.0
    assert rows[(CORPUS, "mrr@2")] == pytest.approx(0.5)
    assert rows[(CORPUS, "ndcg@2")] == pytest.approx((3 / math.log2(3)) / 3.0)
    # Judged protocol: only a and b are ranked, a first.
    assert rows[(JUDGED, "precision@1")] == 1.0
    assert rows[(JUDGED, "ndcg@2")] == pytest.approx(1.0)


def test_evaluate_vectors__corpus_subset_limits_what_is_retrieved() -> None:
    ids = ["q", "x", "a"]
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.8, 0.6]], dtype=np.float32)
    rows = evaluate_vectors("m", ids, vectors, {"q": {"a": 5.0}}, (1,), (CORPUS,), corpus=["a", "q"])
    assert [r.value for r in rows if r.metric == "precision"] == [1.0]  # x is outside the corpus


def test_rank_judged__orders_candidates_by_cosine_not_by_length() -> None:
    ids = ["q", "long", "close"]
    vectors = np.array([[1.0, 0.0], [10.0, 10.0], [1.0, 0.1]], dtype=np.float32)
    ranked = rank_judged(ids, normalise(vectors), {"q": {"long": 1.0, "close": 1.0}})
    assert ranked == {"q": ["close", "long"]}


def test_restrict_judgments__drops_missing_queries_candidates_and_self() -> None:
    judgments = {"q1": {"a": 5.0, "gone": 3.0, "q1": 5.0}, "q2": {"gone": 4.0}, "missing": {"a": 1.0}}
    kept, dropped = restrict_judgments(judgments, queries={"q1", "q2", "a"}, corpus={"a", "q1", "q2"})
    assert kept == {"q1": {"a": 5.0}}
    assert dropped == {"queries_missing": 1, "candidates_missing": 2, "self_judged": 1, "queries_empty": 1}


def test_evaluate_embedders__no_evaluable_query_raises_with_the_counts() -> None:
    images, _ = squares()
    with pytest.raises(ValueError, match="no judged query can be evaluated"):
        evaluate_embedders({COLOR_HISTOGRAM: ColorHistogramEmbedder()}, images, {"no": {"red-0": 5.0}}, (1,))


def test_evaluate_embedders__bad_protocol_and_ks_are_refused() -> None:
    images, judgments = squares()
    embedders = {COLOR_HISTOGRAM: ColorHistogramEmbedder()}
    with pytest.raises(ValueError, match="protocols"):
        evaluate_embedders(embedders, images, judgments, (1,), protocols=("x",))
    with pytest.raises(ValueError, match="ks must be positive"):
        evaluate_embedders(embedders, images, judgments, (0,))


def test_embed_ids__names_the_image_that_does_not_decode() -> None:
    images, _ = squares()
    images["broken"] = b"not an image"
    with pytest.raises(ValueError, match="'broken'"):
        embed_ids(ColorHistogramEmbedder(), images, sorted(images), batch_size=4)


# ------------------------------------------------------------------------------------------ exact search


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_exact_top_k__matches_brute_force_with_self_excluded(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    ids = [f"i{j:03d}" for j in range(n)]
    k = 5
    hits = exact_top_k(ids, x, ids, x, k)
    scores = x @ x.T  # (n, 8) @ (8, n) -> (n, n)
    for row, found in enumerate(hits):
        expected = sorted((j for j in range(n) if j != row), key=lambda j: (-scores[row, j], ids[j]))[:k]
        assert [i for i, _ in found] == [ids[j] for j in expected]
        assert [s for _, s in found] == pytest.approx([float(scores[row, j]) for j in expected], rel=1e-5)


def test_exact_top_k__ties_are_broken_by_id() -> None:
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    hits = exact_top_k(["c", "b", "a"], x[1:], ["q"], x[1:2], 3, exclude_self=False)
    assert [i for i, _ in hits[0]] == ["a", "b", "c"]


def test_exact_top_k__mismatched_dimensions_raise() -> None:
    with pytest.raises(ValueError, match="dimension"):
        exact_top_k(["a"], np.ones((1, 3)), ["q"], np.ones((1, 4)), 1)


# ------------------------------------------------------------------------------------------ helpers


def test_knn_accuracy_at__hand_worked_example() -> None:
    ids = ["a1", "a2", "a3", "b1", "b2"]
    # k=1: a3's nearest is b1 (wrong), the others' nearest share their label: 4/5.
    # k=3: a3 -> b1 b2 a2 (b), b1 -> b2 a3 a2 (a), b2 -> b1 a3 a2 (a) are wrong: 2/5.
    x = np.array([[1, 0], [1, 0.1], [0.3, 1], [0, 1], [-0.2, 1]], dtype=np.float32)
    labels = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b"}
    assert knn_accuracy_at(ids, x, labels, (1, 3)) == {1: pytest.approx(4 / 5), 3: pytest.approx(2 / 5)}


def test_parse_judgments_csv__accepts_both_headers_and_no_header() -> None:
    plain = parse_judgments_csv("query,candidate,relevance\nq.jpg,a.jpg,5\nq.jpg,b.jpg,0\n")
    landing = parse_judgments_csv("set,query_image_id,candidate_image_id,relevance\ndemo,q,a,5\n")
    bare = parse_judgments_csv("q.jpg,a.jpg,3\n\nq.jpg,a.jpg,3\n", default_set="mine")
    assert [(j.set, j.query, j.candidate, j.relevance) for j in plain] == [
        ("default", "q.jpg", "a.jpg", 5), ("default", "q.jpg", "b.jpg", 0)]
    assert [(j.set, j.query, j.candidate, j.relevance) for j in landing] == [("demo", "q", "a", 5)]
    assert [(j.set, j.relevance) for j in bare] == [("mine", 3)]  # duplicate with the same grade kept once
    assert group_judgments(plain) == {"q.jpg": {"a.jpg": 5.0, "b.jpg": 0.0}}


@pytest.mark.parametrize(("text", "message"), [
    ("query,candidate,relevance\nq,a,6\n", r":2: relevance must be in 0-5"),
    ("query,candidate,relevance\nq,a,high\n", r":2: relevance must be an integer"),
    ("query,candidate,relevance\nq,a,5\nq,a,4\n", r":3: .* judged 5 earlier and 4"),
    ("query,candidate,relevance\n,a,5\n", r"empty set, query or candidate"),
    ("query,relevance\nq,5\n", r"lacks \['candidate'\]"),
])
def test_parse_judgments_csv__bad_lines_raise_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_judgments_csv(text)


def test_random_init_embedder__is_seeded_and_leaves_the_global_rng_alone() -> None:
    images, _ = squares()
    batch = [images["red-0"], images["blue-3"]]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    one = random_init_embedder(tiny_config(), 0).embed_images(batch)
    two = random_init_embedder(tiny_config(), 0).embed_images(batch)
    other = random_init_embedder(tiny_config(), 1).embed_images(batch)
    assert torch.equal(torch.get_rng_state(), before)
    assert one.shape == (2, 16)
    np.testing.assert_array_equal(one, two)
    assert not np.allclose(one, other)


def test_stable_sample__keeps_judged_ids_and_ignores_input_order() -> None:
    ids = [f"img{i}" for i in range(100)]
    first = stable_sample(ids, 10, keep=["img5", "img77", "absent"])
    assert len(first) == 10 and {"img5", "img77"} <= set(first) and "absent" not in first
    assert stable_sample(list(reversed(ids)), 10, keep=["img77", "img5"]) == first
    assert stable_sample(ids, 1000) == sorted(ids)
