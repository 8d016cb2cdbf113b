"""Fixtures of the index tests, defined in :mod:`tests.support.index_builds` (shared, not copied)."""

from tests.support.index_builds import store as store
