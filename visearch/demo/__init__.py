"""The procedural demo corpus and the demo run through Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.demo.corpus import generate_demo as generate_demo
    from visearch.demo.judgments import CategoryPools as CategoryPools
    from visearch.demo.judgments import grade as grade
    from visearch.demo.judgments import judgments_and_labels as judgments_and_labels
    from visearch.demo.judgments import pick as pick
    from visearch.demo.rendering import ItemSpec as ItemSpec
    from visearch.demo.rendering import encode as encode
    from visearch.demo.rendering import encode_unusual as encode_unusual
    from visearch.demo.rendering import make_item as make_item
    from visearch.demo.rendering import png_bomb as png_bomb
    from visearch.demo.rendering import render_item as render_item
    from visearch.demo.simulation import plant_bad_clicks as plant_bad_clicks
    from visearch.demo.simulation import propensities as propensities
    from visearch.demo.simulation import simulate_day as simulate_day
    from visearch.demo.sink import DemoSink as DemoSink
    from visearch.demo.streams import stream_rng as stream_rng
    from visearch.demo.uploads import DemoRun as DemoRun
    from visearch.demo.uploads import PlannedImage as PlannedImage
    from visearch.demo.uploads import apply_actions as apply_actions
    from visearch.demo.uploads import insert_bad as insert_bad
    from visearch.demo.uploads import plan_images as plan_images
    from visearch.demo.uploads import render_all as render_all
    from visearch.demo.uploads import write_manifests as write_manifests

_EXPORTS = {
    "generate_demo": "corpus",
    "CategoryPools": "judgments",
    "grade": "judgments",
    "judgments_and_labels": "judgments",
    "pick": "judgments",
    "ItemSpec": "rendering",
    "encode": "rendering",
    "encode_unusual": "rendering",
    "make_item": "rendering",
    "png_bomb": "rendering",
    "render_item": "rendering",
    "plant_bad_clicks": "simulation",
    "propensities": "simulation",
    "simulate_day": "simulation",
    "DemoSink": "sink",
    "stream_rng": "streams",
    "DemoRun": "uploads",
    "PlannedImage": "uploads",
    "apply_actions": "uploads",
    "insert_bad": "uploads",
    "plan_images": "uploads",
    "render_all": "uploads",
    "write_manifests": "uploads",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
