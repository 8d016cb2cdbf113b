"""Index: the Faiss layout and build, shard ranges, manifests and checksums, validation and
publishing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visearch import lazy_exports

if TYPE_CHECKING:
    from visearch.index.faiss_index import IdExcluder as IdExcluder
    from visearch.index.faiss_index import IndexPlan as IndexPlan
    from visearch.index.faiss_index import IvfInfo as IvfInfo
    from visearch.index.faiss_index import ShardBuilder as ShardBuilder
    from visearch.index.faiss_index import TuneResult as TuneResult
    from visearch.index.faiss_index import choose_index as choose_index
    from visearch.index.faiss_index import choose_nlist as choose_nlist
    from visearch.index.faiss_index import deserialize as deserialize
    from visearch.index.faiss_index import effective_dim_share as effective_dim_share
    from visearch.index.faiss_index import exact_search as exact_search
    from visearch.index.faiss_index import index_bytes as index_bytes
    from visearch.index.faiss_index import ivf_info as ivf_info
    from visearch.index.faiss_index import new_index as new_index
    from visearch.index.faiss_index import quantizer_bytes as quantizer_bytes
    from visearch.index.faiss_index import recall_at_k as recall_at_k
    from visearch.index.faiss_index import search as search
    from visearch.index.faiss_index import serialize as serialize
    from visearch.index.faiss_index import train_index as train_index
    from visearch.index.faiss_index import tune_nprobe as tune_nprobe
    from visearch.index.faiss_index import wants_rotation as wants_rotation
    from visearch.index.lake import collect_vectors as collect_vectors
    from visearch.index.lake import eligible_embeddings as eligible_embeddings
    from visearch.index.lake import exact_topk_spark as exact_topk_spark
    from visearch.index.lake import live_rows_spark as live_rows_spark
    from visearch.index.lake import sample_rows as sample_rows
    from visearch.index.manifest import BuildNotFoundError as BuildNotFoundError
    from visearch.index.manifest import ChecksumError as ChecksumError
    from visearch.index.manifest import IndexManifest as IndexManifest
    from visearch.index.manifest import LoadedBuild as LoadedBuild
    from visearch.index.manifest import LoadedShard as LoadedShard
    from visearch.index.manifest import ShardEntry as ShardEntry
    from visearch.index.manifest import build_prefix as build_prefix
    from visearch.index.manifest import current_build_id as current_build_id
    from visearch.index.manifest import ids_key_for as ids_key_for
    from visearch.index.manifest import index_prefix as index_prefix
    from visearch.index.manifest import list_build_ids as list_build_ids
    from visearch.index.manifest import load_build as load_build
    from visearch.index.manifest import open_build as open_build
    from visearch.index.manifest import read_manifest as read_manifest
    from visearch.index.manifest import read_tombstones as read_tombstones
    from visearch.index.manifest import shard_key as shard_key
    from visearch.index.manifest import verify_build as verify_build
    from visearch.index.manifest import write_ids_table as write_ids_table
    from visearch.index.manifest import write_manifest as write_manifest
    from visearch.index.manifest import write_tombstones as write_tombstones
    from visearch.index.publish import ValidationError as ValidationError
    from visearch.index.publish import list_builds as list_builds
    from visearch.index.publish import newest_build_for as newest_build_for
    from visearch.index.publish import prune_builds as prune_builds
    from visearch.index.publish import publish_build as publish_build
    from visearch.index.publish import read_history as read_history
    from visearch.index.publish import rollback as rollback
    from visearch.index.publish import validate_build as validate_build
    from visearch.index.shards import IdCollisionError as IdCollisionError
    from visearch.index.shards import assign_ids as assign_ids
    from visearch.index.shards import batch_ranges as batch_ranges
    from visearch.index.shards import check_unique as check_unique
    from visearch.index.shards import drop_ids as drop_ids
    from visearch.index.shards import faiss_id as faiss_id
    from visearch.index.shards import faiss_ids as faiss_ids
    from visearch.index.shards import merge_topk as merge_topk
    from visearch.index.shards import probe_candidates as probe_candidates
    from visearch.index.shards import resolve_collisions as resolve_collisions
    from visearch.index.shards import shard_of as shard_of
    from visearch.index.shards import shard_ranges as shard_ranges
    from visearch.index.shards import shards_of as shards_of

_EXPORTS = {
    "IdExcluder": "faiss_index",
    "IndexPlan": "faiss_index",
    "IvfInfo": "faiss_index",
    "ShardBuilder": "faiss_index",
    "TuneResult": "faiss_index",
    "choose_index": "faiss_index",
    "choose_nlist": "faiss_index",
    "deserialize": "faiss_index",
    "effective_dim_share": "faiss_index",
    "exact_search": "faiss_index",
    "index_bytes": "faiss_index",
    "ivf_info": "faiss_index",
    "new_index": "faiss_index",
    "quantizer_bytes": "faiss_index",
    "recall_at_k": "faiss_index",
    "search": "faiss_index",
    "serialize": "faiss_index",
    "train_index": "faiss_index",
    "tune_nprobe": "faiss_index",
    "wants_rotation": "faiss_index",
    "collect_vectors": "lake",
    "eligible_embeddings": "lake",
    "exact_topk_spark": "lake",
    "live_rows_spark": "lake",
    "sample_rows": "lake",
    "BuildNotFoundError": "manifest",
    "ChecksumError": "manifest",
    "IndexManifest": "manifest",
    "LoadedBuild": "manifest",
    "LoadedShard": "manifest",
    "ShardEntry": "manifest",
    "build_prefix": "manifest",
    "current_build_id": "manifest",
    "ids_key_for": "manifest",
    "index_prefix": "manifest",
    "list_build_ids": "manifest",
    "load_build": "manifest",
    "open_build": "manifest",
    "read_manifest": "manifest",
    "read_tombstones": "manifest",
    "shard_key": "manifest",
    "verify_build": "manifest",
    "write_ids_table": "manifest",
    "write_manifest": "manifest",
    "write_tombstones": "manifest",
    "ValidationError": "publish",
    "list_builds": "publish",
    "newest_build_for": "publish",
    "prune_builds": "publish",
    "publish_build": "publish",
    "read_history": "publish",
    "rollback": "publish",
    "validate_build": "publish",
    "IdCollisionError": "shards",
    "assign_ids": "shards",
    "batch_ranges": "shards",
    "check_unique": "shards",
    "drop_ids": "shards",
    "faiss_id": "shards",
    "faiss_ids": "shards",
    "merge_topk": "shards",
    "probe_candidates": "shards",
    "resolve_collisions": "shards",
    "shard_of": "shards",
    "shard_ranges": "shards",
    "shards_of": "shards",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
