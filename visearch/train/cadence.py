"""When the train job trains: the retraining cadence and the decision for one day.

A day trains when no version of it exists yet and either it is a cadence day (its ordinal is
divisible by ``retrain_every``) or there is no model at all. A version of the day already in the
registry means a rerun of that day changes nothing. Pure: the registry's version names in, a
:class:`Decision` out; :func:`visearch.train.train_day.run` acts on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from visearch.train.registry import versions_of_day


@dataclass(frozen=True)
class Decision:
    """Whether the train job trains for a day, and why."""

    train: bool
    reason: str
    model_version: str | None = None


def retrain_due(ds: str, every: int) -> bool:
    """Whether ``ds`` is a retraining day: its proleptic Gregorian ordinal is divisible by ``every``.

    ``every`` = 1 trains every day; 7 trains one day a week (the same weekday: 7 divides the
    difference of two ordinals exactly when they are a whole number of weeks apart).

    Raises:
        ValueError: for ``every`` < 1 or a ``ds`` that is not ``YYYY-MM-DD``.
    """
    if every < 1:
        raise ValueError(f"retrain_every must be >= 1, got {every}")
    try:
        day = dt.date.fromisoformat(ds)
    except ValueError as exc:
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}") from exc
    return day.toordinal() % every == 0


def decide(ds: str, every: int, versions: Sequence[str]) -> Decision:
    """Train or not for ``ds``, given the registry's versions.

    A version of ``ds`` already exists → no (a rerun of the day changes nothing). Otherwise train
    on cadence days (:func:`retrain_due`) and whenever there is no model at all.

    Raises:
        ValueError: as :func:`retrain_due`.
    """
    due = retrain_due(ds, every)
    existing = versions_of_day(versions, ds)
    if existing:
        return Decision(False, "exists", existing[-1])
    if due:
        return Decision(True, f"cadence: ordinal of {ds} is divisible by {every}")
    if not versions:
        return Decision(True, "no model exists yet")
    return Decision(False, f"cadence: {ds} is not a training day (every {every} days)")
