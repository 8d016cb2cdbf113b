"""The graded judged set of a demo corpus, and its human-label positives.

:func:`grade` is the relevance of a candidate for a query (0–5) from the items each shows; the
click simulation uses the same grades. :func:`judgments_and_labels` picks a sample of queries and,
for each, its group, some of its category and some random images as candidates, graded
(``judgments/judgments.csv``, set ``demo``), plus human-label positives for a tenth of the items
(``labels/labels.csv``). :func:`pick` and :class:`CategoryPools` draw candidates (shared with the
click simulation's shown lists).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

import numpy as np

from visearch.demo.rendering import ItemSpec
from visearch.demo.uploads import PlannedImage


def grade(q_items: tuple[int, ...], c_items: tuple[int, ...], specs: dict[int, ItemSpec]) -> int:
    """Graded relevance 0–5 of a candidate for a query, from the items each shows.

    5: the same item (or the same pair of items); 4: the candidate is a composition that holds the
    query's item; 3: the query is a composition and the candidate one of its items, or two
    compositions share one item, or another item of the same category and texture pattern;
    2: another item of the same category; 0: otherwise.
    """
    shared = set(q_items) & set(c_items)
    if set(q_items) == set(c_items):
        return 5
    if shared:
        return 4 if len(q_items) == 1 else 3
    best = 0
    for a in q_items:
        for b in c_items:
            if specs[a].category == specs[b].category:
                best = max(best, 3 if specs[a].pattern == specs[b].pattern else 2)
    return best


def pick(pool: Sequence[PlannedImage], n: int, rng: np.random.Generator,
         exclude: Collection[str]) -> list[PlannedImage]:
    """Up to ``n`` distinct members of ``pool`` whose ids are not in ``exclude``, uniformly at random.

    Draws ``n + len(exclude)`` distinct positions (enough whatever ``exclude`` holds), so a large
    pool costs O(n + len(exclude)), not a permutation of the whole pool; a pool at most four times
    that size is permuted whole.
    """
    if n <= 0 or not pool:
        return []
    m = min(len(pool), n + len(exclude))
    small = len(pool) <= 4 * m
    order = rng.permutation(len(pool)) if small else rng.choice(len(pool), size=m, replace=False)
    out: dict[str, PlannedImage] = {}
    for i in order:
        p = pool[int(i)]
        if p.image_id not in exclude and p.image_id not in out:
            out[p.image_id] = p
            if len(out) == n:
                break
    return list(out.values())


class CategoryPools:
    """The visible images of each set of categories (deduplicated), built once per set."""

    def __init__(self, visible: Sequence[PlannedImage], specs: dict[int, ItemSpec]) -> None:
        self._specs = specs
        self._by_category: dict[str, list[PlannedImage]] = defaultdict(list)
        for p in visible:
            for c in sorted({specs[i].category for i in p.items}):
                self._by_category[c].append(p)
        self._pools: dict[tuple[str, ...], list[PlannedImage]] = {}

    def of(self, items: Sequence[int]) -> list[PlannedImage]:
        """The visible images sharing a category with any of ``items``."""
        cats = tuple(sorted({self._specs[i].category for i in items}))
        pool = self._pools.get(cats)
        if pool is None:
            seen: dict[str, PlannedImage] = {}
            for c in cats:
                for p in self._by_category[c]:
                    seen.setdefault(p.image_id, p)
            pool = self._pools[cats] = list(seen.values())
        return pool


def judgments_and_labels(visible: list[PlannedImage], specs: dict[int, ItemSpec], rng: np.random.Generator,
                         images: int) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str]]]:
    """Graded judgments for a sample of queries, and human-label positives for a tenth of the items."""
    by_item: dict[int, list[PlannedImage]] = defaultdict(list)
    for p in visible:
        for it in p.items:
            by_item[it].append(p)
    categories = CategoryPools(visible, specs)
    singles = [p for p in visible if not p.is_composition and len(by_item[p.items[0]]) >= 2]
    comps = [p for p in visible if p.is_composition]
    n_queries = min(len(singles) + len(comps), max(10, images // 10))
    n_comp = min(len(comps), max(1, n_queries // 5))
    picked = [comps[int(i)] for i in rng.permutation(len(comps))[:n_comp]]
    picked += [singles[int(i)] for i in rng.permutation(len(singles))[: n_queries - n_comp]]
    rows: list[tuple[str, str, str, int]] = []
    for q in sorted(picked, key=lambda p: p.serial):
        cands: dict[str, PlannedImage] = {p.image_id: p for it in q.items for p in by_item[it]}
        for p in pick(categories.of(q.items), 5, rng, cands):
            cands[p.image_id] = p
        for p in pick(visible, 10, rng, cands):
            cands[p.image_id] = p
        cands.pop(q.image_id, None)
        for c in sorted(cands.values(), key=lambda p: p.serial):
            rows.append(("demo", q.image_id, c.image_id, grade(q.items, c.items, specs)))
    labels: list[tuple[str, str, str]] = []
    items = sorted(it for it, members in by_item.items() if sum(not m.is_composition for m in members) >= 2)
    for i in rng.permutation(len(items))[: max(1, len(items) // 10)]:
        members = [m for m in by_item[items[int(i)]] if not m.is_composition]
        for m in members[1:]:
            labels.append((members[0].image_id, m.image_id, "1.0"))
    labels.sort()
    return rows, labels

