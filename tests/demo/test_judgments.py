"""Drawing judged candidates: :func:`visearch.demo.judgments.pick`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from visearch.demo.judgments import pick
from visearch.demo.uploads import PlannedImage


@pytest.mark.parametrize("size", [30, 5000])  # permuted whole; drawn without permuting the pool
def test_pick__distinct_members_outside_the_exclusion_uniformly(size: int) -> None:
    pool = [PlannedImage(image_id=f"img-{i:05d}", serial=i, items=(i,), day=0, second=0, fmt="JPEG")
            for i in range(size)]
    excluded = {f"img-{i:05d}" for i in range(0, size, 3)}
    rng = np.random.default_rng(0)
    hits: Counter[str] = Counter()
    for _ in range(3000):
        picked = pick(pool, 5, rng, excluded)
        ids = [p.image_id for p in picked]
        assert len(ids) == 5 and len(set(ids)) == 5 and not set(ids) & excluded
        hits.update(ids)
    allowed = size - len(excluded)
    assert set(hits) <= {p.image_id for p in pool} - excluded
    if size == 30:  # every allowed member drawn about equally often
        assert len(hits) == allowed and max(hits.values()) < 1.4 * min(hits.values())
    assert pick(pool, 5, rng, {p.image_id for p in pool}) == []
    assert len(pick(pool[:4], 10, rng, set())) == 4
