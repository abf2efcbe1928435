"""RawBatch tuples from the walk -> ``files`` record batches, and du-style per-layer totals from them.

Parent side only (pyarrow is imported inside the functions, so that nothing here costs a walk worker).
:class:`LayerWalker` walks in this process (the single-process collect and the tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from snapper.walk import _TYPE_BY_FMT, TYPE_CODES, LayerResult, TreeWalker, show_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    import pyarrow as pa

    from snapper.walk import RawBatch


def _bits(n: int, rows: list[int]) -> pa.Array:
    import pyarrow as pa

    if not rows:
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bytes((n + 7) // 8))])
    buf = bytearray((n + 7) // 8)
    for i in rows:
        buf[i >> 3] |= 1 << (i & 7)
    return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(buf)])


def _sparse(n: int, pairs: list[tuple[int, Any]], typ: pa.DataType) -> pa.Array:
    import pyarrow as pa

    if not pairs:
        return pa.nulls(n, typ)
    values: list[Any] = [None] * n
    for i, v in pairs:
        values[i] = v
    return pa.array(values, typ)


_TYPE_ARRAYS: list[Any] = []


def _type_arrays() -> tuple[pa.Array, pa.Array]:
    """(dictionary of the type column, st_mode >> 12 -> index), made once per process."""
    import pyarrow as pa

    if not _TYPE_ARRAYS:
        _TYPE_ARRAYS.extend((pa.array(TYPE_CODES, pa.string()), pa.array(_TYPE_BY_FMT, pa.int32())))
    return _TYPE_ARRAYS[0], _TYPE_ARRAYS[1]


def to_record_batch(raw: RawBatch) -> pa.RecordBatch:
    """A RawBatch as a ``files`` record batch (schema FILES), sharing the stat buffers without a copy.
    layer_id is a one-value dictionary per batch: the Parquet writer then builds each row group's
    dictionary from the values it holds (measured: 0.04 bytes a row; a dictionary of every layer in every
    row group cost 0.15-0.28 and grows with layers x row groups)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from snapper.schema import FILES

    (layer_id, n, blob, offs, mode, ino, dev, nlink, uid, gid, size, blocks, mtime, ctime, _root_dev,
     opaque, mounts, whiteouts, links, hashes) = raw[:20]
    types, type_by_fmt = _type_arrays()
    buf = pa.py_buffer
    u32 = pa.uint32()
    i64 = pa.int64()
    mode_a = pa.Array.from_buffers(u32, n, [None, buf(mode)])
    size_a = pa.Array.from_buffers(i64, n, [None, buf(size)])
    blocks_a = pa.Array.from_buffers(i64, n, [None, buf(blocks)])
    path = pa.Array.from_buffers(pa.string(), n, [None, buf(offs), buf(blob)])
    try:
        path.validate(full=True)  # UTF-8, without a copy
        path_raw = pa.nulls(n, pa.binary())
    except pa.ArrowInvalid:
        binary = pa.Array.from_buffers(pa.binary(), n, [None, buf(offs), buf(blob)])
        shown = [show_bytes(b) for b in binary.to_pylist()]
        path = pa.array([s[0] for s in shown], pa.string())
        path_raw = pa.array([s[1] for s in shown], pa.binary())
    layer_ix = pa.repeat(pa.scalar(0, pa.int32()), n)
    type_ix = pc.take(type_by_fmt, pc.shift_right(mode_a, 12))
    arrays = [
        pa.DictionaryArray.from_arrays(layer_ix, pa.array([layer_id], pa.string())),
        path, path_raw,
        pa.DictionaryArray.from_arrays(type_ix, types),
        size_a, pc.multiply(blocks_a, 512),
        pa.Array.from_buffers(i64, n, [None, buf(ino)]),
        pa.Array.from_buffers(i64, n, [None, buf(dev)]),
        pa.Array.from_buffers(u32, n, [None, buf(nlink)]),
        mode_a,
        pa.Array.from_buffers(u32, n, [None, buf(uid)]),
        pa.Array.from_buffers(u32, n, [None, buf(gid)]),
        pa.Array.from_buffers(i64, n, [None, buf(mtime)]),
        pa.Array.from_buffers(i64, n, [None, buf(ctime)]),
        _bits(n, whiteouts), _bits(n, opaque), _bits(n, mounts),
        _sparse(n, links, pa.string()), _sparse(n, hashes, pa.binary(16)),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=FILES.schema)


class LayerTotals:
    """du-style totals of one layer from the per-batch sums of every task that walked part of it: a
    hard-linked inode is counted once per layer (each layer alone, as `du -sx DIR` sees it). Only the inode
    numbers of hard-linked files are kept (a set: ~60 bytes each), so memory grows with the hard links of
    the biggest layer, not with the tree."""

    def __init__(self) -> None:
        self.files = 0
        self.apparent = 0
        self.allocated = 0
        self.linked: set[int] = set()

    def add(self, raw: RawBatch) -> None:
        self.files += raw[1]
        self.apparent += raw[20]
        self.allocated += raw[21]
        linked = self.linked
        for ino, (size, alloc) in raw[22].items():
            if ino not in linked:
                linked.add(ino)
                self.apparent += size
                self.allocated += alloc

    def result(self, res: LayerResult) -> LayerResult:
        res.file_count = self.files
        res.apparent_bytes = self.apparent
        res.allocated_bytes = self.allocated
        return res


class LayerWalker:
    """One overlay2 entry at a time, in this process, emitting ``files`` record batches (the API the
    single-process collect and the tests use)."""

    def __init__(self, overlay_dir: bytes, rel_prefix: str, hash_mode: str, mount_points: frozenset[bytes],
                 emit: Callable[[pa.RecordBatch], None], batch_rows: int = 65536) -> None:
        self.emit = emit
        self.totals = LayerTotals()
        self.tree = TreeWalker(overlay_dir, rel_prefix, hash_mode, mount_points, self._sink, batch_rows)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.tree.errors

    @errors.setter
    def errors(self, value: list[dict[str, Any]]) -> None:
        self.tree.errors = value

    def _sink(self, raw: RawBatch) -> None:
        self.totals.add(raw)
        self.emit(to_record_batch(raw))

    def flush(self) -> None:
        self.tree.flush()

    def walk(self, name: bytes) -> LayerResult:
        self.totals = LayerTotals()
        before = len(self.tree.errors)
        res, _ = self.tree.walk_layer(name)
        self.totals.result(res)
        res.walk_errors = len(self.tree.errors) - before
        if res.walk_errors and res.walk_status == "ok":
            res.walk_status = "partial"
        return res
