"""Batch embedding: the embedding engine run on executors, and the export of a version's vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.embed.embedder import BatchEmbedder as BatchEmbedder
    from visearch.embed.embedder import EmbedItem as EmbedItem
    from visearch.embed.embedder import EmbedTask as EmbedTask
    from visearch.embed.embedder import cpu_threads_per_task as cpu_threads_per_task
    from visearch.embed.embedder import embed_arrow as embed_arrow
    from visearch.embed.embedder import local_cores as local_cores
    from visearch.embed.embedder import optimize_for_cpu as optimize_for_cpu
    from visearch.embed.export import embed_folder as embed_folder
    from visearch.embed.export import export_embeddings as export_embeddings

_EXPORTS = {
    "BatchEmbedder": "embedder",
    "EmbedItem": "embedder",
    "EmbedTask": "embedder",
    "cpu_threads_per_task": "embedder",
    "embed_arrow": "embedder",
    "local_cores": "embedder",
    "optimize_for_cpu": "embedder",
    "embed_folder": "export",
    "export_embeddings": "export",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
