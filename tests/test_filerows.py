"""snapper.filerows: RawBatch -> files record batches, and du-exact per-layer totals from batches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from snapper.filerows import LayerTotals, LayerWalker, to_record_batch
from snapper.schema import FILES
from snapper.walk import LayerResult, TreeWalker
from tests.synthetic import SyntheticRoot, du_allocated, du_apparent, find_count


@pytest.fixture
def sr(tmp_path: Path) -> SyntheticRoot:
    return SyntheticRoot(tmp_path / "root", seed=5)


def test_hard_links_in_different_batches_are_counted_once(sr: SyntheticRoot) -> None:
    """Batches of one row: the two names of each hard-linked inode land in different batches, so only the
    per-inode merge of LayerTotals can make the layer's totals equal `du -sx`."""
    layer = sr.add_layer()
    for i in range(5):
        target = sr.write(layer, f"a/f{i}", os.urandom(5000 + i))
        os.link(target, layer.diff / f"link{i}")
    sr.write(layer, "plain", b"x" * 70000)
    raws: list[Any] = []
    TreeWalker(os.fsencode(str(sr.overlay)), "overlay2", "none", frozenset(), raws.append,
               batch_rows=1).walk_layer(os.fsencode(layer.dir_id))
    assert len(raws) == find_count(layer.path)
    totals = LayerTotals()
    for raw in raws:
        totals.add(raw)
    res = totals.result(LayerResult(layer.dir_id))
    assert (res.file_count, res.allocated_bytes, res.apparent_bytes) == \
        (find_count(layer.path), du_allocated(layer.path), du_apparent(layer.path))


def test_record_batches_match_the_schema_and_keep_raw_names(sr: SyntheticRoot) -> None:
    layer = sr.add_layer()
    sr.write(layer, b"caf\xe9", b"latin-1 name")
    sr.write(layer, "ok", b"")
    raws: list[Any] = []
    TreeWalker(os.fsencode(str(sr.overlay)), "overlay2", "none", frozenset(), raws.append).walk_layer(
        os.fsencode(layer.dir_id))
    rows = pa.Table.from_batches([to_record_batch(r) for r in raws], schema=FILES.schema).to_pylist()
    odd = next(r for r in rows if r["path_raw"] is not None)
    assert odd["path_raw"] == b"diff/caf\xe9" and odd["path"] == "diff/caf\\xe9"
    assert next(r for r in rows if r["path"] == "diff/ok")["path_raw"] is None
    assert {r["layer_id"] for r in rows} == {layer.dir_id}


def test_layer_walker_totals_equal_du(sr: SyntheticRoot) -> None:
    layer = sr.add_layer()
    sr.add_bulk(layer, 300, per_dir=40, data=b"y" * 3000)
    out: list[pa.RecordBatch] = []
    w = LayerWalker(os.fsencode(str(sr.overlay)), "overlay2", "partial", frozenset(), out.append, batch_rows=64)
    res = w.walk(os.fsencode(layer.dir_id))
    w.flush()
    assert sum(b.num_rows for b in out) == res.file_count == find_count(layer.path)
    assert res.allocated_bytes == du_allocated(layer.path) and res.walk_status == "ok"
