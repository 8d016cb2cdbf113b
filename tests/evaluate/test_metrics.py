"""Ranking metrics: hand-worked examples, edge cases, and oracles (scikit-learn, naive loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, dcg_score, ndcg_score

from visearch.evaluate import metrics as M

# One query worked by hand. Ranking a b c d e; f is judged relevant but never retrieved.
RANKING = ["a", "b", "c", "d", "e"]
JUDGED = {"a": 3, "b": 0, "c": 2, "d": 0, "e": 1, "f": 3}
L2 = math.log2


# ---------------------------------------------------------------------------------------------
# hand-worked examples


def test_dcg__hand_worked_linear_gain() -> None:
    # 3/log2(2) + 0/log2(3) + 2/log2(4) + 0/log2(5) + 1/log2(6) = 3 + 0 + 1 + 0 + 0.386853 = 4.386853
    assert M.dcg(RANKING, JUDGED, k=5) == pytest.approx(4.386853, abs=1e-6)
    # Only the first two positions: 3/1 + 0 = 3
    assert M.dcg(RANKING, JUDGED, k=2) == pytest.approx(3.0)


def test_ndcg__hand_worked_linear_gain_uses_all_judged_items_for_the_ideal() -> None:
    # Ideal order of all judged grades: 3 3 2 1 0 0
    # IDCG@5 = 3/1 + 3/log2(3) + 2/log2(4) + 1/log2(5) + 0 = 3 + 1.892789 + 1 + 0.430677 = 6.323466
    assert M.ideal_dcg(JUDGED, k=5) == pytest.approx(6.323466, abs=1e-6)
    # nDCG@5 = 4.386853 / 6.323466 = 0.693742 (f, never retrieved, costs the gap)
    assert M.ndcg(RANKING, JUDGED, k=5) == pytest.approx(0.693742, abs=1e-6)


def test_ndcg__hand_worked_exponential_gain() -> None:
    # gains 2^rel - 1: a=7 b=0 c=3 d=0 e=1 f=7
    # DCG@5 = 7/1 + 0 + 3/2 + 0 + 1/log2(6) = 8.886853
    # IDCG@5 = 7/1 + 7/log2(3) + 3/2 + 1/log2(5) = 7 + 4.416508 + 1.5 + 0.430677 = 13.347185
    assert M.dcg(RANKING, JUDGED, k=5, gain="exponential") == pytest.approx(8.886853, abs=1e-6)
    assert M.ndcg(RANKING, JUDGED, k=5, gain="exponential") == pytest.approx(8.886853 / 13.347185, abs=1e-6)


def test_precision_recall__hand_worked() -> None:
    # relevant (rel >= 1): a c e f, R = 4; hits at positions 1, 3, 5
    assert M.precision_at_k(RANKING, JUDGED, 1) == 1.0
    assert M.precision_at_k(RANKING, JUDGED, 3) == pytest.approx(2 / 3)
    assert M.precision_at_k(RANKING, JUDGED, 5) == pytest.approx(3 / 5)
    assert M.recall_at_k(RANKING, JUDGED, 1) == pytest.approx(1 / 4)
    assert M.recall_at_k(RANKING, JUDGED, 3) == pytest.approx(2 / 4)
    assert M.recall_at_k(RANKING, JUDGED, 5) == pytest.approx(3 / 4)


def test_average_precision__hand_worked_full_and_cut() -> None:
    # full: (P@1 + P@3 + P@5) / R = (1 + 2/3 + 3/5) / 4 = 0.566667
    assert M.average_precision(RANKING, JUDGED) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    # @3: (P@1 + P@3) / min(3, 4) = (1 + 2/3) / 3 = 0.555556
    assert M.average_precision(RANKING, JUDGED, k=3) == pytest.approx((1 + 2 / 3) / 3)


def test_average_precision__divides_by_min_k_and_r_not_trec_eval_r() -> None:
    # R > k: relevant a, c, x, y, z (R = 5), k = 2, ranking a b c ...: one hit at 1, P@1 = 1.
    # Ours: 1 / min(2, 5) = 0.5.  trec_eval map_cut_2 would give 1 / 5 = 0.2; dividing by the
    # hits would give 1.0 and dividing by k alone 0.5 too (the R < k case below tells them apart).
    judged = {"a": 5, "b": 0, "c": 1, "x": 2, "y": 1, "z": 5}
    assert M.average_precision(["a", "b", "c", "d"], judged, k=2) == pytest.approx(1 / 2)
    # All of the top k relevant with R > k is a perfect 1.0 (trec_eval: 2 / 5).
    assert M.average_precision(["a", "c", "b"], judged, k=2) == pytest.approx(1.0)
    # R < k: relevant b, z (R = 2), k = 4, ranking a b c d: one hit at 2, P@2 = 1/2.
    # Ours: (1/2) / min(4, 2) = 0.25 (= trec_eval's / R); dividing by k would give 0.125, by hits 0.5.
    few = {"b": 1, "z": 3, "a": 0}
    assert M.average_precision(["a", "b", "c", "d"], few, k=4) == pytest.approx(1 / 4)
    # Grade 1 is relevant at the default threshold (the quality benchmark's "same group").
    assert M.average_precision(["c"], {"c": 1}, k=1) == 1.0


def test_reciprocal_rank__first_relevant_at_three_and_cut_before_it() -> None:
    judged = {"z": 2}
    assert M.reciprocal_rank(["x", "y", "z"], judged) == pytest.approx(1 / 3)
    assert M.reciprocal_rank(["x", "y", "z"], judged, k=2) == 0.0


def test_threshold__higher_threshold_changes_what_counts_as_relevant() -> None:
    # rel >= 3: only a and f; hit at position 1 only
    assert M.precision_at_k(RANKING, JUDGED, 5, threshold=3) == pytest.approx(1 / 5)
    assert M.recall_at_k(RANKING, JUDGED, 5, threshold=3) == pytest.approx(1 / 2)
    assert M.average_precision(RANKING, JUDGED, threshold=3) == pytest.approx(1 / 2)
    # rel >= 2: a c f; first hit a at 1, RR = 1; with threshold 4 nothing is relevant
    assert M.reciprocal_rank(["b", "c", "a"], JUDGED, threshold=2) == pytest.approx(1 / 2)
    assert M.reciprocal_rank(RANKING, JUDGED, threshold=4) == 0.0


# ---------------------------------------------------------------------------------------------
# edge cases


def test_no_relevant_item__every_metric_is_zero() -> None:
    judged = {"a": 0, "b": 0}
    for k in (1, 5, None):
        assert M.reciprocal_rank(["a", "b"], judged, k=k) == 0.0
        assert M.recall_at_k(["a", "b"], judged, k) == 0.0
        assert M.average_precision(["a", "b"], judged, k=k) == 0.0
        assert M.ndcg(["a", "b"], judged, k=k) == 0.0
        assert M.ndcg_tie_averaged(["a", "b"], [1.0, 1.0], judged, k=k) == 0.0
    assert M.precision_at_k(["a", "b"], judged, 2) == 0.0


def test_no_relevant_item__matches_sklearn_zero_for_all_zero_truth() -> None:
    assert ndcg_score([[0, 0, 0]], [[0.3, 0.2, 0.1]]) == 0.0
    assert M.ndcg(["a", "b", "c"], {"a": 0, "b": 0, "c": 0}) == 0.0


def test_no_relevant_item__query_counted_in_the_mean() -> None:
    rankings = {"q1": ["a", "b"], "q2": ["c", "d"]}
    judgments = {"q1": {"a": 2}, "q2": {"c": 0, "d": 0}}
    result = M.evaluate_rankings(rankings, judgments, ks=(1,))
    # q1 perfect (1.0), q2 has nothing relevant (0.0): means are 0.5
    for metric in ("ndcg", "recall", "mrr", "map", "precision"):
        assert result[(metric, 1)] == pytest.approx(0.5), metric


def test_k_longer_than_list__missing_positions_are_not_relevant() -> None:
    ranking, judged = ["a"], {"a": 4}
    assert M.precision_at_k(ranking, judged, 5) == pytest.approx(1 / 5)  # divides by k, not len
    assert M.recall_at_k(ranking, judged, 5) == 1.0
    assert M.average_precision(ranking, judged, k=5) == 1.0  # / min(5, R=1)
    assert M.ndcg(ranking, judged, k=5) == 1.0
    assert M.dcg(ranking, judged, k=20) == pytest.approx(4.0)
    assert M.reciprocal_rank(ranking, judged, k=20) == 1.0


def test_empty_ranking__scores_zero() -> None:
    assert M.ndcg([], {"a": 3}, k=10) == 0.0
    assert M.precision_at_k([], {"a": 3}, 10) == 0.0
    assert M.average_precision([], {"a": 3}) == 0.0


def test_unjudged_ranked_ids__count_as_not_relevant() -> None:
    # x is unjudged: relevance 0, so a at position 2 gives DCG 3/log2(3)
    assert M.dcg(["x", "a"], {"a": 3}) == pytest.approx(3 / L2(3))
    assert M.precision_at_k(["x", "a"], {"a": 3}, 2) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: M.dcg(r, {"a": 1}),
        lambda r: M.ndcg(r, {"a": 1}),
        lambda r: M.ndcg(r, {"a": 0}),
        lambda r: M.precision_at_k(r, {"a": 1}, 3),
        lambda r: M.recall_at_k(r, {"a": 1}, 3),
        lambda r: M.average_precision(r, {"a": 1}),
        lambda r: M.reciprocal_rank(r, {"a": 1}),
        lambda r: M.rank_by_scores(r, [0.1, 0.2, 0.3]),
        lambda r: M.dcg_tie_averaged(r, [0.1, 0.2, 0.3], {"a": 1}),
    ],
)
def test_duplicate_ids__raise_value_error(call: object) -> None:
    with pytest.raises(ValueError, match="duplicate ids"):
        call(["a", "b", "a"])  # type: ignore[operator]


def test_duplicate_ids__raise_even_beyond_the_cut_off() -> None:
    with pytest.raises(ValueError, match=r"duplicate ids in ranking: \['b'\]"):
        M.ndcg(["a", "b", "c", "b"], {"a": 1}, k=2)


def test_rank_by_scores__ties_broken_by_ascending_id() -> None:
    assert M.rank_by_scores(["b", "a", "c", "d"], [1.0, 1.0, 0.5, 2.0]) == ["d", "a", "b", "c"]
    assert M.rank_by_scores([3, 1, 2], np.array([0.0, 0.0, 0.0])) == [1, 2, 3]


def test_ties_in_scores__tie_averaged_dcg_hand_worked() -> None:
    # a (rel 1) and b (rel 0) tie for positions 1-2: each gets mean gain 0.5
    # DCG = 0.5 * (1/log2(2) + 1/log2(3)) = 0.5 * 1.630930 = 0.815465; ideal = 1
    assert M.dcg_tie_averaged(["a", "b"], [0.7, 0.7], {"a": 1}) == pytest.approx(0.815465, abs=1e-6)
    assert M.ndcg_tie_averaged(["a", "b"], [0.7, 0.7], {"a": 1}) == pytest.approx(0.815465, abs=1e-6)
    # Cut at k=1: the tie shares position 1 only: 0.5 * 1 = 0.5
    assert M.ndcg_tie_averaged(["a", "b"], [0.7, 0.7], {"a": 1}, k=1) == pytest.approx(0.5)
    # Tie-broken by id instead, a comes first: nDCG = 1
    assert M.ndcg(M.rank_by_scores(["b", "a"], [0.7, 0.7]), {"a": 1}) == 1.0


def test_ties_in_relevance__do_not_change_ndcg() -> None:
    # Swapping two items of equal grade keeps the DCG.
    judged = {"a": 2, "b": 2, "c": 0}
    assert M.ndcg(["a", "b", "c"], judged) == M.ndcg(["b", "a", "c"], judged) == 1.0


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k__raises(k: object) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.ndcg(["a"], {"a": 1}, k=k)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [0.0, -1.0, math.nan])
def test_bad_threshold__raises(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold must be finite and > 0"):
        M.recall_at_k(["a"], {"a": 1}, 1, threshold=threshold)


@pytest.mark.parametrize("rel", [-1.0, math.nan, math.inf])
def test_bad_relevance__raises(rel: float) -> None:
    with pytest.raises(ValueError, match="relevance of 'a'"):
        M.ndcg(["a"], {"a": rel})


def test_bad_gain_and_nan_scores__raise() -> None:
    with pytest.raises(ValueError, match="gain must be"):
        M.dcg(["a"], {"a": 1}, gain="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        M.rank_by_scores(["a", "b"], [0.1, math.nan])
    with pytest.raises(ValueError, match="2 ids but 1 scores"):
        M.rank_by_scores(["a", "b"], [0.1])


def test_evaluate_rankings__query_sets_must_match() -> None:
    with pytest.raises(ValueError, match="same queries"):
        M.evaluate_rankings({"q1": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 1}})
    with pytest.raises(ValueError, match="same queries"):
        M.evaluate_rankings({"q1": ["a"], "q3": []}, {"q1": {"a": 1}})
    with pytest.raises(ValueError, match="no judged queries"):
        M.evaluate_rankings({}, {})
    with pytest.raises(ValueError, match="ks must not be empty"):
        M.evaluate_rankings({"q1": ["a"]}, {"q1": {"a": 1}}, ks=())


def test_evaluate_rankings__keys_and_means_hand_worked() -> None:
    rankings = {"q1": RANKING, "q2": ["b", "a"]}
    judgments = {"q1": JUDGED, "q2": {"a": 1}}
    result = M.evaluate_rankings(rankings, judgments, ks=(1, 5))
    assert set(result) == {
        ("mrr", 1), ("mrr", 5), ("mrr", None), ("precision", 1), ("precision", 5),
        ("recall", 1), ("recall", 5), ("recall", None), ("map", 1), ("map", 5), ("map", None),
        ("ndcg", 1), ("ndcg", 5), ("ndcg", None),
    }
    # q1 nDCG@5 = 0.693742 (above); q2: a at 2 -> 1/log2(3) = 0.630930; mean 0.662336
    assert result[("ndcg", 5)] == pytest.approx((0.693742 + 1 / L2(3)) / 2, abs=1e-6)
    # MRR: q1 1, q2 1/2 -> 0.75; MRR@1: q1 1, q2 0 -> 0.5
    assert result[("mrr", None)] == pytest.approx(0.75)
    assert result[("mrr", 1)] == pytest.approx(0.5)
    assert M.flatten_metrics(result)["ndcg@5"] == result[("ndcg", 5)]
    assert M.flatten_metrics(result)["map"] == result[("map", None)]


# ---------------------------------------------------------------------------------------------
# oracles on random inputs


def _random_query(rng: np.random.Generator, n: int, *, tie_levels: int | None = None) -> tuple[
    list[str], np.ndarray, np.ndarray
]:
    ids = [f"id{j:03d}" for j in range(n)]
    rel = rng.integers(0, 6, size=n)  # graded 0-5
    # continuous scores have no ties; a few integer levels make many
    scores = rng.normal(size=n) if tie_levels is None else rng.integers(0, tie_levels, size=n).astype(np.float64)
    return ids, rel, scores


@pytest.mark.parametrize("gain", ["linear", "exponential"])
def test_ndcg__matches_sklearn_on_random_queries_without_ties(gain: str) -> None:
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(2, 40))
        ids, rel, scores = _random_query(rng, n)
        judged = dict(zip(ids, rel.tolist(), strict=True))
        truth = rel if gain == "linear" else np.exp2(rel) - 1  # sklearn's gain is linear in y_true
        ranking = M.rank_by_scores(ids, scores)
        for k in (1, 5, 10, 20, None):
            ours = M.ndcg(ranking, judged, k=k, gain=gain)  # type: ignore[arg-type]
            theirs = ndcg_score([truth], [scores], k=k)
            assert ours == pytest.approx(theirs, abs=1e-12), (trial, k)
            assert M.dcg(ranking, judged, k=k, gain=gain) == pytest.approx(  # type: ignore[arg-type]
                dcg_score([truth], [scores], k=k), abs=1e-9
            ), (trial, k)


@pytest.mark.parametrize("gain", ["linear", "exponential"])
def test_ndcg_tie_averaged__matches_sklearn_ignore_ties_false(gain: str) -> None:
    rng = np.random.default_rng(2)
    for trial in range(200):
        n = int(rng.integers(2, 30))
        ids, rel, scores = _random_query(rng, n, tie_levels=4)
        judged = dict(zip(ids, rel.tolist(), strict=True))
        truth = rel if gain == "linear" else np.exp2(rel) - 1
        for k in (1, 3, 5, 10, None):
            ours = M.ndcg_tie_averaged(ids, scores, judged, k=k, gain=gain)  # type: ignore[arg-type]
            theirs = ndcg_score([truth], [scores], k=k, ignore_ties=False)
            assert ours == pytest.approx(theirs, abs=1e-12), (trial, k)
            ours_dcg = M.dcg_tie_averaged(ids, scores, judged, k=k, gain=gain)  # type: ignore[arg-type]
            assert ours_dcg == pytest.approx(dcg_score([truth], [scores], k=k, ignore_ties=False), abs=1e-9)


def test_ndcg_tie_averaged__equals_plain_ndcg_without_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        ids, rel, scores = _random_query(rng, 25)
        judged = dict(zip(ids, rel.tolist(), strict=True))
        ranking = M.rank_by_scores(ids, scores)
        assert M.ndcg_tie_averaged(ids, scores, judged, k=10) == pytest.approx(M.ndcg(ranking, judged, k=10))


@pytest.mark.parametrize("threshold", [1, 3])
def test_average_precision__matches_sklearn_on_random_queries(threshold: int) -> None:
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(200):
        n = int(rng.integers(2, 40))
        ids, rel, scores = _random_query(rng, n)
        binary = rel >= threshold
        if not binary.any():
            continue  # sklearn has no defined AP without positives
        judged = dict(zip(ids, rel.tolist(), strict=True))
        ours = M.average_precision(M.rank_by_scores(ids, scores), judged, threshold=threshold)
        assert ours == pytest.approx(average_precision_score(binary, scores), abs=1e-12)
        checked += 1
    assert checked > 100


def _naive(ranking: list[str], judged: dict[str, int], k: int, threshold: int) -> dict[str, float]:
    """An independent loop for the metrics sklearn does not have (P@k, R@k, RR@k, AP@k)."""
    relevant = {i for i, r in judged.items() if r >= threshold}
    hits = 0
    precision_sum = 0.0
    first = 0
    for pos in range(1, k + 1):
        if pos <= len(ranking) and ranking[pos - 1] in relevant:
            hits += 1
            precision_sum += hits / pos
            if not first:
                first = pos
    return {
        "precision": hits / k,
        "recall": hits / len(relevant) if relevant else 0.0,
        "mrr": 1 / first if first else 0.0,
        "map": precision_sum / min(k, len(relevant)) if relevant else 0.0,
    }


def test_precision_recall_rr_ap_at_k__match_a_naive_loop() -> None:
    rng = np.random.default_rng(5)
    for trial in range(300):
        n = int(rng.integers(0, 30))
        pool = [f"id{j:03d}" for j in range(40)]
        ranking = [str(x) for x in rng.permutation(pool)[:n]]  # a retrieved subset of the pool
        judged = {p: int(rng.integers(0, 6)) for p in rng.permutation(pool)[: int(rng.integers(1, 40))]}
        threshold = int(rng.integers(1, 6))
        for k in (1, 5, 10, 20, 50):
            expected = _naive(ranking, judged, k, threshold)
            got = {
                "precision": M.precision_at_k(ranking, judged, k, threshold=threshold),
                "recall": M.recall_at_k(ranking, judged, k, threshold=threshold),
                "mrr": M.reciprocal_rank(ranking, judged, k=k, threshold=threshold),
                "map": M.average_precision(ranking, judged, k=k, threshold=threshold),
            }
            assert got == pytest.approx(expected, abs=1e-12), (trial, k)


def test_evaluate_rankings__mean_of_sklearn_ndcg_over_queries() -> None:
    rng = np.random.default_rng(6)
    rankings: dict[str, list[str]] = {}
    judgments: dict[str, dict[str, float]] = {}
    truths, score_rows = [], []
    for q in range(30):
        ids, rel, scores = _random_query(rng, 20)
        rankings[f"q{q}"] = M.rank_by_scores(ids, scores)
        judgments[f"q{q}"] = dict(zip(ids, rel.tolist(), strict=True))
        truths.append(rel)
        score_rows.append(scores)
    result = M.evaluate_rankings(rankings, judgments, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        # sklearn's ndcg_score averages over rows (queries) too
        assert result[("ndcg", k)] == pytest.approx(ndcg_score(truths, score_rows, k=k), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# kNN accuracy


def test_knn_majority_label__majority_and_ties_go_to_the_nearest() -> None:
    assert M.knn_majority_label(["cat", "dog", "dog", "cat", "cat"], 3) == "dog"
    assert M.knn_majority_label(["cat", "dog", "dog", "cat", "cat"], 5) == "cat"
    assert M.knn_majority_label(["dog", "cat"], 2) == "dog"  # 1-1 tie: nearest wins
    assert M.knn_majority_label([], 3) is None


def test_knn_accuracy__share_of_correct_majorities() -> None:
    neighbours = [["a", "a", "b"], ["b", "a", "a"], [], ["c"]]
    truth = ["a", "b", "a", "c"]
    # k=3: a (right), a (wrong), none (wrong), c (right) -> 2/4
    assert M.knn_accuracy(neighbours, truth, 3) == 0.5
    # k=1: a (right), b (right), none (wrong), c (right) -> 3/4
    assert M.knn_accuracy(neighbours, truth, 1) == 0.75
    with pytest.raises(ValueError, match="3 true labels"):
        M.knn_accuracy(neighbours, truth[:3], 1)
