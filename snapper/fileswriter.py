"""files.parquet as the collect writes it: encodings tuned for the table, row groups of 64k rows, rows of
committed (stable) dirs in row groups of their own, row groups of a base snapshot copied in as bytes
(``snapper.incremental.splice``), and a background thread that encodes while the walk goes on."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from snapper import incremental
from snapper.schema import FILES, Table
from snapper.snapshot import SnapshotWriter, _create_private

# Measured on the bench tree (bench/RESULTS.md): dictionaries only where values repeat, delta encodings for
# the sorted-ish integers and for paths (siblings share prefixes): 16.0 -> 14.5 bytes per row, and a
# quarter less CPU than dictionary-encoding every column.
_FILES_PARQUET: dict[str, Any] = {
    "use_dictionary": ["layer_id", "type", "nlink", "mode", "uid", "gid", "dev", "link_target"],
    "column_encoding": {"path": "DELTA_BYTE_ARRAY", "inode": "DELTA_BINARY_PACKED",
                        "mtime_ns": "DELTA_BINARY_PACKED", "ctime_ns": "DELTA_BINARY_PACKED",
                        "size": "DELTA_BINARY_PACKED", "allocated": "DELTA_BINARY_PACKED"},
}


_FILES_ROW_GROUP = 65536  # encoding a row group costs ~190 bytes a row outside Arrow's pool: 64k rows ~12 MB
_FILES_ROW_GROUP_BYTES = 32 << 20  # or fewer rows when paths are long (10,000-deep dirs: 20 kB a path)


class _Closed:
    def close(self) -> None:
        pass


class _SnapshotWriter(SnapshotWriter):
    """The snapshot writer with files.parquet tuned for the table: its encodings, row groups of 64k rows,
    rows of committed (stable) dirs in row groups of their own, and row groups of a base snapshot copied in
    as bytes at the end (``snapper.incremental.splice``)."""

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        self.files_pending: dict[bool, list[pa.RecordBatch]] = {True: [], False: []}
        self.files_rows = {True: 0, False: 0}
        self.files_bytes = {True: 0, False: 0}
        self.splice_from: tuple[Path, list[int]] | None = None

    def _writer(self, table: Table) -> pq.ParquetWriter:
        if table.name != FILES.name or table.name in self.writers:
            return super()._writer(table)
        path = self.tmp / f"{table.name}.parquet"
        _create_private(path)
        w = pq.ParquetWriter(str(path), table.schema, compression="zstd", compression_level=3, **_FILES_PARQUET)
        self.writers[table.name] = w
        return w

    def write_files(self, batch: pa.RecordBatch, stable: bool) -> None:
        self.files_pending[stable].append(batch)
        self.files_rows[stable] += batch.num_rows
        self.files_bytes[stable] += batch.nbytes
        if self.files_rows[stable] >= _FILES_ROW_GROUP or self.files_bytes[stable] >= _FILES_ROW_GROUP_BYTES:
            self._flush_files(stable)

    def _flush_files(self, stable: bool) -> None:
        batches, self.files_pending[stable], self.files_rows[stable] = self.files_pending[stable], [], 0
        self.files_bytes[stable] = 0
        self._write_batches(FILES, batches)

    def finish(self, manifest: dict[str, Any]) -> Path:
        for stable in (True, False):
            self._flush_files(stable)
        if self.splice_from is not None:
            self._writer(FILES).close()
            self.writers[FILES.name] = _Closed()
            path = self.tmp / f"{FILES.name}.parquet"
            spliced = self.tmp / f".{FILES.name}.spliced"
            try:
                self.rows[FILES.name] += incremental.splice(path, self.splice_from[0], self.splice_from[1], spliced)
                os.replace(spliced, path)
            except OSError as e:
                raise self._io(FILES.name, e) from e
        return super().finish(manifest)


def _reference_footer() -> bytes:
    """The footer of an empty files.parquet as _SnapshotWriter writes it (schema and key-value metadata)."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, FILES.schema, compression="zstd", compression_level=3, **_FILES_PARQUET).close()
    data: bytes = sink.getvalue().to_pybytes()
    n = int.from_bytes(data[-8:-4], "little")
    return data[-8 - n:-8]


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class _BackgroundWriter:
    """Writes files batches in a thread: Parquet encoding and compression release the GIL, so the walk's
    dispatch loop keeps the workers fed meanwhile. The queue is short: memory stays bounded."""

    def __init__(self, writer: _SnapshotWriter) -> None:
        self.writer = writer
        self.q: queue.Queue[tuple[pa.RecordBatch, bool] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="snapper-files-writer", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        rows = 0
        while (item := self.q.get()) is not None:
            rb, stable = item
            if self.error is None:
                try:
                    self.writer.write_files(rb, stable)
                except BaseException as e:  # handed to the main thread at the next put or at exit
                    self.error = e
            rows += rb.num_rows
            del rb, item
            if rows >= _FILES_ROW_GROUP:  # give freed row groups back to the OS (glibc keeps them otherwise)
                rows = 0
                _malloc_trim()

    def put(self, rb: pa.RecordBatch, stable: bool) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((rb, stable))

    def __exit__(self, *exc: object) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
