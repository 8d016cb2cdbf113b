"""InfoNCE against analytic values and against a loop-by-loop reference implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visearch.train.loss import InfoNCELoss

torch.set_num_threads(1)


def reference_infonce(
    q: torch.Tensor,
    p: torch.Tensor,
    tau: float,
    *,
    cosine: bool = True,
    weights: list[float] | None = None,
    hard: torch.Tensor | None = None,
    groups: list[int] | None = None,
    symmetric: bool = False,
) -> float:
    """Straightforward per-row loops: −log(exp(s_ii) / Σ_j exp(s_ij)) with the same rules."""
    if cosine:
        q, p = F.normalize(q, dim=1), F.normalize(p, dim=1)
        hard = F.normalize(hard, dim=-1) if hard is not None else None
    b = q.shape[0]

    def row_loss(anchor: torch.Tensor, others: torch.Tensor, i: int, extra: list[torch.Tensor]) -> float:
        positive = math.exp(float(anchor @ others[i]) / tau)
        denominator = 0.0
        for j in range(b):
            if j != i and groups is not None and groups[j] == groups[i]:
                continue  # another positive of my group: not a negative
            denominator += math.exp(float(anchor @ others[j]) / tau)
        for neg in extra:
            denominator += math.exp(float(anchor @ neg) / tau)
        return -math.log(positive / denominator)

    losses = []
    for i in range(b):
        extra = list(hard[i]) if hard is not None else []
        value = row_loss(q[i], p, i, extra)
        if symmetric:
            value = 0.5 * (value + row_loss(p[i], q, i, []))
        losses.append(value)
    w = weights or [1.0] * b
    return sum(wi * li for wi, li in zip(w, losses, strict=True)) / sum(w)


def test_infonce__equal_similarities_give_log_n() -> None:
    q = torch.ones(6, 4)
    p = torch.ones(6, 4)
    loss = InfoNCELoss(temperature=0.5)(q, p)
    assert float(loss) == pytest.approx(math.log(6), abs=1e-6)


def test_infonce__equal_similarities_with_hard_negatives_give_log_n_plus_h() -> None:
    q = torch.ones(4, 3)
    p = torch.ones(4, 3)
    hard = torch.ones(4, 2, 3)
    loss = InfoNCELoss(temperature=0.2)(q, p, hard_negatives=hard)
    assert float(loss) == pytest.approx(math.log(4 + 2), abs=1e-6)


def test_infonce__perfect_positive_gives_near_zero() -> None:
    q = torch.eye(5)  # orthogonal unit vectors
    loss = InfoNCELoss(temperature=0.01)(q, q.clone())
    # Off-diagonal similarities are 0, the positive's is 1: loss = log(1 + 4·e^(−100)).
    assert float(loss) < 1e-6


def test_infonce__similar_hard_negative_raises_loss_by_its_share() -> None:
    q = torch.eye(3)
    hard = q.clone().unsqueeze(1)  # (3, 1, 3): a hard negative identical to the query
    loss = InfoNCELoss(temperature=0.01)(q, q.clone(), hard_negatives=hard)
    # The positive and the hard negative tie, the others vanish: −log(1/2).
    assert float(loss) == pytest.approx(math.log(2), abs=1e-4)


def test_infonce__padded_hard_negatives_are_ignored() -> None:
    gen = torch.Generator().manual_seed(1)
    q, p = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    hard = torch.randn(5, 3, 8, generator=gen)
    mask = torch.tensor([[True, False, False]] * 5)
    fn = InfoNCELoss(temperature=0.3)
    masked = fn(q, p, hard_negatives=hard, hard_negative_mask=mask)
    only_first = fn(q, p, hard_negatives=hard[:, :1])
    assert torch.allclose(masked, only_first, atol=1e-6)


def test_infonce__group_members_are_masked_out_of_the_softmax() -> None:
    # Pairs 0 and 1 share a group and identical embeddings; unmasked they would be each
    # other's hardest negatives. Masked, the loss equals the loss of a batch without the twin.
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = q.clone()
    fn = InfoNCELoss(temperature=0.1)
    masked = fn(q, p, group_ids=torch.tensor([7, 7, 9]))
    unmasked = fn(q, p)
    # Unmasked, rows 0 and 1 tie their positive with the twin (log 2 each); row 2 is ~0.
    assert float(unmasked) == pytest.approx(2 / 3 * math.log(2), abs=1e-3)
    assert float(masked) < 1e-3
    assert float(masked) == pytest.approx(reference_infonce(q, p, 0.1, groups=[7, 7, 9]), abs=1e-6)


def test_infonce__weights_give_a_weighted_mean() -> None:
    gen = torch.Generator().manual_seed(2)
    q, p = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    fn = InfoNCELoss(temperature=0.2)
    weights = torch.tensor([1.0, 0.0, 3.0, 0.5])
    expected = reference_infonce(q, p, 0.2, weights=weights.tolist())
    assert float(fn(q, p, weights=weights)) == pytest.approx(expected, rel=1e-5)
    assert float(fn(q, p, weights=weights)) != pytest.approx(float(fn(q, p)), rel=1e-3)


@pytest.mark.parametrize("cosine", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce__matches_loop_reference_on_random_inputs(cosine: bool, symmetric: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    b, h, d = 7, 3, 5
    q = torch.randn(b, d, generator=gen, dtype=torch.float64)
    p = torch.randn(b, d, generator=gen, dtype=torch.float64)
    hard = torch.randn(b, h, d, generator=gen, dtype=torch.float64)
    groups = [0, 1, 1, 2, 3, 3, 3]
    weights = torch.rand(b, generator=gen, dtype=torch.float64) + 0.1
    scale = 1.0 if cosine else 0.3  # keep dot-product logits in a sane range
    fn = InfoNCELoss(temperature=0.25, similarity="cosine" if cosine else "dot", symmetric=symmetric)
    got = fn(
        q * scale,
        p * scale,
        weights=weights,
        hard_negatives=hard * scale,
        group_ids=torch.tensor(groups),
    )
    expected = reference_infonce(
        q * scale,
        p * scale,
        0.25,
        cosine=cosine,
        weights=weights.tolist(),
        hard=hard * scale,
        groups=groups,
        symmetric=symmetric,
    )
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_infonce__gradients_flow_to_both_sides() -> None:
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(4, 8, generator=gen, requires_grad=True)
    p = torch.randn(4, 8, generator=gen, requires_grad=True)
    InfoNCELoss(0.1, symmetric=True)(q, p).backward()
    assert q.grad is not None and float(q.grad.abs().sum()) > 0
    assert p.grad is not None and float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": torch.tensor([1.0, -1.0, 1.0])}, "non-negative"),
        ({"weights": torch.zeros(3)}, "sum to zero"),
        ({"group_ids": torch.tensor([1, 2])}, "group_ids"),
        ({"hard_negatives": torch.zeros(3, 2, 5)}, "hard_negatives"),
    ],
)
def test_infonce__rejects_bad_inputs(kwargs: dict[str, torch.Tensor], message: str) -> None:
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match=message):
        InfoNCELoss(0.1)(q, q.clone(), **kwargs)


def test_infonce__rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)
    with pytest.raises(ValueError, match="similarity"):
        InfoNCELoss(0.1, similarity="euclid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="B, D"):
        InfoNCELoss(0.1)(torch.zeros(3, 4), torch.zeros(3, 5))
