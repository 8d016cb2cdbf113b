"""The retraining cadence: which days train, and the decision given the registry's versions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from visearch.train.cadence import decide, retrain_due
from visearch.train.registry import versions_of_day


def test_retrain_due__every_day_and_every_seventh_day_by_ordinal() -> None:
    days = [(dt.date(2026, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(21)]
    assert all(retrain_due(d, 1) for d in days)
    weekly = [d for d in days if retrain_due(d, 7)]
    assert len(weekly) == 3
    ordinals = [dt.date.fromisoformat(d).toordinal() for d in weekly]
    assert all(o % 7 == 0 for o in ordinals)
    assert np.diff(ordinals).tolist() == [7, 7]
    # 2026-01-04 has ordinal 739620 = 7 * 105660 (a Sunday, as every ordinal divisible by 7).
    assert weekly[0] == "2026-01-04"


def test_retrain_due__rejects_bad_period_and_date() -> None:
    with pytest.raises(ValueError, match="retrain_every must be >= 1, got 0"):
        retrain_due("2026-01-01", 0)
    with pytest.raises(ValueError, match="ds must be YYYY-MM-DD, got '2026/01/01'"):
        retrain_due("2026/01/01", 1)


def test_versions_of_day__matches_only_the_registry_names_of_that_day() -> None:
    versions = [
        "v-2026-01-02-00ab12cd",
        "v-2026-01-02-ffffffff",
        "v-2026-01-03-00ab12cd",
        "manual-2026-01-02",
        "v-2026-01-021-aaaaaaaa",
    ]
    assert versions_of_day(versions, "2026-01-02") == ["v-2026-01-02-00ab12cd", "v-2026-01-02-ffffffff"]
    assert versions_of_day(versions, "2026-01-05") == []


def test_decide__existing_version_wins_then_cadence_then_first_model() -> None:
    odd_day = "2026-01-02"  # ordinal 739618: not divisible by 7
    sunday = "2026-01-04"
    assert decide(odd_day, 7, ["v-2026-01-02-0123abcd"]).reason == "exists"
    assert decide(odd_day, 7, ["v-2026-01-02-0123abcd"]).model_version == "v-2026-01-02-0123abcd"
    assert not decide(odd_day, 7, ["v-2026-01-02-0123abcd"]).train
    assert decide(odd_day, 7, []).train  # no model at all: train whatever the cadence
    skipped = decide(odd_day, 7, ["v-2026-01-01-0123abcd"])
    assert not skipped.train and skipped.reason.startswith("cadence") and skipped.model_version is None
    assert decide(sunday, 7, ["v-2026-01-01-0123abcd"]).train
    assert decide(odd_day, 1, ["v-2026-01-01-0123abcd"]).train
