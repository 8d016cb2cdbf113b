"""``jobs.read_lines``: exact line numbers when a file is split across tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from visearch.ingest.lines import read_lines

pytestmark = pytest.mark.spark


def test_read_lines__files_split_over_many_tasks_keep_exact_line_numbers(spark: Any, tmp_path: Path) -> None:
    big = [f'{{"n": {i}, "pad": "{"x" * (i % 50)}"}}' if i % 7 else "" for i in range(1, 3001)]  # blanks too
    small = ["first", "  ", "third\r", "fourth"]
    (tmp_path / "a.jsonl").write_text("\n".join(big) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(small[:2]) + "\n" + small[2] + "\n" + small[3])
    key = "spark.sql.files.maxPartitionBytes"
    old = spark.conf.get(key)
    spark.conf.set(key, "8192")  # ~100 KB: a dozen splits of a.jsonl, read by several tasks
    try:
        df = read_lines(spark, [(tmp_path / "a.jsonl").as_uri(), (tmp_path / "b.jsonl").as_uri()])
        assert df.rdd.getNumPartitions() > 4
        rows = sorted((r["file"], r["line_no"], r["line"]) for r in df.collect())
    finally:
        spark.conf.set(key, old)
    expected = [("a.jsonl", i, line) for i, line in enumerate(big, start=1) if line.strip()]
    expected += [("b.jsonl", 1, "first"), ("b.jsonl", 4, "fourth")]
    # "third\r\n": Hadoop's line reader takes "\r\n" as one line end, the "\r" included.
    expected += [("b.jsonl", 3, "third")]
    assert rows == sorted(expected)


def test_read_lines__no_files_gives_an_empty_frame(spark: Any) -> None:
    assert read_lines(spark, []).count() == 0
