"""InfoNCE: in-batch contrastive loss with optional hard negatives, group masking and pair weights.

For a batch of B (query, positive) pairs the logits of query i are its similarities to every
positive in the batch, divided by the temperature τ, followed by its own hard negatives:

    logits_i = [ s(q_i, p_1) … s(q_i, p_B) | s(q_i, n_i1) … s(q_i, n_iH) ] / τ
    loss_i   = −log softmax(logits_i)[i]

so the other B−1 positives are the negatives. When pairs come in groups (several images
clicked for one query, one label shared by many), ``p_j`` of the same group as ``i`` is a
positive too, not a negative: it is masked out of the softmax (``group_ids``). Per-pair weights
give a weighted mean. ``symmetric=True`` adds the positive→query direction (SimCLR's NT-Xent
uses both) and averages the two.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Similarity = Literal["cosine", "dot"]


class InfoNCELoss(nn.Module):
    """InfoNCE / NT-Xent over in-batch negatives (plus optional per-query hard negatives).

    Args:
        temperature: τ > 0 dividing the similarities.
        similarity: ``"cosine"`` (inputs are L2-normalised here) or ``"dot"`` (used as given).
        symmetric: also score each positive against all queries and average both directions.

    Raises:
        ValueError: for τ <= 0 or an unknown similarity.
    """

    def __init__(self, temperature: float = 0.1, similarity: Similarity = "cosine", symmetric: bool = False):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
        self.temperature = float(temperature)
        self.similarity = similarity
        self.symmetric = symmetric

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()  # logits in fp32 even under autocast
        return F.normalize(x, dim=-1) if self.similarity == "cosine" else x

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        hard_negatives: torch.Tensor | None = None,
        group_ids: torch.Tensor | None = None,
        hard_negative_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The mean (or weighted mean) loss over the B pairs, a scalar.

        Args:
            q: queries ``(B, D)``.
            p: their positives ``(B, D)``; row i is the positive of query i.
            weights: optional non-negative pair weights ``(B,)``.
            hard_negatives: optional ``(B, H, D)`` negatives of each query only.
            group_ids: optional ``(B,)`` ints; pairs sharing an id are not each other's negatives.
            hard_negative_mask: optional ``(B, H)`` bools, False for padding slots of
                ``hard_negatives`` (queries with fewer than H hard negatives).

        Raises:
            ValueError: on mismatching shapes, negative weights or weights summing to zero.
        """
        if q.ndim != 2 or q.shape != p.shape:
            raise ValueError(f"q and p must both be (B, D), got {tuple(q.shape)} and {tuple(p.shape)}")
        batch, dim = q.shape
        qn, pn = self._prepare(q), self._prepare(p)  # (B, D), (B, D)
        logits = qn @ pn.T / self.temperature  # (B, D) @ (D, B) -> (B, B)
        if group_ids is not None:
            if group_ids.shape != (batch,):
                raise ValueError(f"group_ids must be (B,) = ({batch},), got {tuple(group_ids.shape)}")
            same = group_ids.view(-1, 1) == group_ids.view(1, -1)  # (B, B)
            eye = torch.eye(batch, dtype=torch.bool, device=q.device)
            other_positives = same & ~eye  # (B, B): other positives of my group, not negatives
            logits = logits.masked_fill(other_positives, float("-inf"))
        targets = torch.arange(batch, device=q.device)  # (B,) index of each query's positive
        row_logits = logits
        if hard_negatives is not None:
            if hard_negatives.ndim != 3 or hard_negatives.shape[0] != batch or hard_negatives.shape[2] != dim:
                shape = tuple(hard_negatives.shape)
                raise ValueError(f"hard_negatives must be (B, H, D) = ({batch}, H, {dim}), got {shape}")
            hn = self._prepare(hard_negatives)  # (B, H, D)
            hard_logits = torch.einsum("bd,bhd->bh", qn, hn) / self.temperature  # (B, H)
            if hard_negative_mask is not None:
                if hard_negative_mask.shape != hard_logits.shape:
                    raise ValueError(
                        f"hard_negative_mask must be {tuple(hard_logits.shape)}, "
                        f"got {tuple(hard_negative_mask.shape)}"
                    )
                hard_logits = hard_logits.masked_fill(~hard_negative_mask.bool(), float("-inf"))
            row_logits = torch.cat([logits, hard_logits], dim=1)  # (B, B + H)
        per_pair = F.cross_entropy(row_logits, targets, reduction="none")  # (B,)
        if self.symmetric:
            # Positive j against all queries: column j of the (masked) in-batch logits.
            per_pair = 0.5 * (per_pair + F.cross_entropy(logits.T, targets, reduction="none"))  # (B,)
        if weights is None:
            return per_pair.mean()
        if weights.shape != (batch,):
            raise ValueError(f"weights must be (B,) = ({batch},), got {tuple(weights.shape)}")
        w = weights.to(per_pair.dtype)
        if bool((w < 0).any()):
            raise ValueError(f"weights must be non-negative, got min {float(w.min())}")
        total = w.sum()
        if not float(total) > 0:
            raise ValueError(f"weights must not sum to zero, got {weights.tolist()}")
        return (w * per_pair).sum() / total
