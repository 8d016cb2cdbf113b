"""The demo corpus's random streams: one seed, independent streams.

Every random choice of :func:`visearch.demo.corpus.generate_demo` comes from a ``numpy`` generator
keyed on ``(seed, stream, index…)``: what one stage draws does not depend on how many numbers
another stage drew, so one seed gives byte-identical files, and changing one stage (e.g. more
sessions) leaves the others' draws alone.
"""

from __future__ import annotations

import numpy as np

# Random streams (first key after the seed) so every choice is independent of the others' order.
STREAM_ITEM, STREAM_RENDER, STREAM_PLAN, STREAM_ACTIONS, STREAM_CLICKS, STREAM_BAD, STREAM_JUDGE = range(1, 8)


def stream_rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """A generator keyed on (seed, stream, index…): independent of how many others were drawn."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, *index]))

