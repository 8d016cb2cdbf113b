"""The data-quality gate: a day whose quarantine share is too high stops before training and publishing."""

from __future__ import annotations

from dataclasses import dataclass


class QualityGateError(RuntimeError):
    """Raised when a day's inputs are too broken to train or publish on."""


@dataclass(frozen=True)
class GateResult:
    """Counts behind the gate's decision."""

    accepted: int
    quarantined: int
    share: float
    threshold: float
    passed: bool


def quarantine_gate(accepted: int, quarantined: int, threshold: float) -> GateResult:
    """Decide whether a day passes: quarantined / (accepted + quarantined) <= threshold.

    A day with no records at all passes (a quiet day is not a broken one).

    Raises:
        ValueError: for negative counts or a threshold outside [0, 1].
    """
    if accepted < 0 or quarantined < 0:
        raise ValueError(f"counts must be >= 0, got accepted={accepted} quarantined={quarantined}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    total = accepted + quarantined
    share = quarantined / total if total else 0.0
    return GateResult(accepted, quarantined, share, threshold, share <= threshold)
