"""Capacity planning for 1e11-2e11 images from measured throughputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.plan.capacity import Measure as Measure
    from visearch.plan.capacity import PlanInputs as PlanInputs
    from visearch.plan.capacity import Throughputs as Throughputs
    from visearch.plan.capacity import format_plan as format_plan
    from visearch.plan.capacity import load_throughputs as load_throughputs
    from visearch.plan.capacity import parse_count as parse_count
    from visearch.plan.capacity import plan_capacity as plan_capacity
    from visearch.plan.capacity import shard_layout as shard_layout
    from visearch.plan.capacity import shard_vectors_for_memory as shard_vectors_for_memory

_EXPORTS = {
    "Measure": "capacity",
    "PlanInputs": "capacity",
    "Throughputs": "capacity",
    "format_plan": "capacity",
    "load_throughputs": "capacity",
    "parse_count": "capacity",
    "plan_capacity": "capacity",
    "shard_layout": "capacity",
    "shard_vectors_for_memory": "capacity",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
