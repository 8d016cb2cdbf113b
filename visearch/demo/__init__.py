"""The procedural demo corpus and the demo run through Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.demo.corpus import generate_demo as generate_demo
    from visearch.demo.corpus import grade as grade
    from visearch.demo.corpus import make_item as make_item
    from visearch.demo.corpus import png_bomb as png_bomb
    from visearch.demo.corpus import propensities as propensities

_EXPORTS = {
    "generate_demo": "corpus",
    "grade": "corpus",
    "make_item": "corpus",
    "png_bomb": "corpus",
    "propensities": "corpus",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
