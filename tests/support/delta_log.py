"""Read a Delta table's state straight from its log, without Spark (through any ObjectStore).

Enough of the Delta protocol for the fault tests: replay ``_delta_log/<version>.json`` commits
(after the last Parquet checkpoint, when there is one) into the set of live data files, and list
the data files on storage that no commit references (what a killed writer leaves behind).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from visearch.core.storage import ObjectStore

LOG_DIR = "_delta_log"


@dataclass(frozen=True)
class DeltaState:
    """The committed state of a table: its version and live data files (path -> size in bytes)."""

    version: int
    files: dict[str, int]
    partition_values: dict[str, dict[str, str]]
    """Live data file path -> its partition columns' values."""
    referenced: frozenset[str]
    """Every data file any commit ever added (live or since removed)."""


def _checkpoint_adds(store: ObjectStore, prefix: str) -> tuple[int, dict[str, dict[str, object]]]:
    key = f"{prefix}/{LOG_DIR}/_last_checkpoint"
    if not store.exists(key):
        return -1, {}
    version = int(json.loads(store.get_text(key))["version"])
    adds: dict[str, dict[str, object]] = {}
    for part in [k for k in store.list(f"{prefix}/{LOG_DIR}/{version:020d}.checkpoint") if k.endswith(".parquet")]:
        table = pq.read_table(io.BytesIO(store.get_bytes(part)), columns=["add"])
        for add in table.column("add").to_pylist():
            if add:
                values = add.get("partitionValues") or {}
                adds[unquote(add["path"])] = {"size": add["size"], "partitionValues": dict(values)}
    return version, adds


def read_state(store: ObjectStore, prefix: str) -> DeltaState:
    """Replay the log of the table at ``prefix`` (a key prefix of ``store``).

    Raises:
        FileNotFoundError: when there is no Delta log there.
    """
    version, adds = _checkpoint_adds(store, prefix)
    referenced = set(adds)
    commits = sorted(
        (int(k.rsplit("/", 1)[1][:20]), k)
        for k in store.list(f"{prefix}/{LOG_DIR}/")
        if k.endswith(".json") and k.rsplit("/", 1)[1][:20].isdigit()
    )
    if not commits and version < 0:
        raise FileNotFoundError(store.uri(f"{prefix}/{LOG_DIR}"))
    for number, key in commits:
        if number <= version:
            continue
        for line in store.get_text(key).splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                path = unquote(action["add"]["path"])
                adds[path] = action["add"]
                referenced.add(path)
            elif "remove" in action:
                adds.pop(unquote(action["remove"]["path"]), None)
        version = number
    return DeltaState(
        version,
        {path: int(add["size"]) for path, add in adds.items()},  # type: ignore[call-overload]
        {path: dict(add.get("partitionValues") or {}) for path, add in adds.items()},  # type: ignore[call-overload]
        frozenset(referenced),
    )


def data_files(store: ObjectStore, prefix: str) -> dict[str, int]:
    """Parquet data files on storage under the table (path relative to it -> size)."""
    out = {}
    for key in store.list(prefix + "/"):
        rel = key[len(prefix) + 1 :]
        if rel.startswith(LOG_DIR + "/") or not rel.endswith(".parquet"):
            continue
        local = store.local_path(key)
        out[rel] = local.stat().st_size if local is not None else len(store.get_bytes(key))
    return out


def orphan_files(store: ObjectStore, prefix: str) -> list[str]:
    """Data files that no commit of the log has ever added: written by a writer that never committed."""
    state = read_state(store, prefix)
    return sorted(set(data_files(store, prefix)) - state.referenced)


def read_rows(store: ObjectStore, prefix: str) -> pa.Table:
    """The table's live rows, partition columns (as strings) re-attached from the log."""
    state = read_state(store, prefix)
    parts = []
    for path in sorted(state.files):
        part = pq.read_table(io.BytesIO(store.get_bytes(f"{prefix}/{path}")))
        for column, value in sorted(state.partition_values[path].items()):
            if column not in part.column_names:  # writers may keep partition columns in the file too
                part = part.append_column(column, pa.array([value] * part.num_rows, pa.string()))
        parts.append(part)
    if not parts:
        return pa.table({})
    return pa.concat_tables(parts, promote_options="default")
