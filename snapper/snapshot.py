"""A snapshot on disk: a directory of zstd Parquet files (one per table) and ``manifest.json``.

Writing is atomic: everything goes into a hidden sibling ``.<name>.partial-<pid>`` that is renamed to the
final name only after every file is written and fsynced, so an interrupted collect never leaves a directory
that passes as a snapshot. Stale partial dirs of dead processes are removed by the next run. Dirs are 0700
and files 0600: a snapshot lists container contents.

Reading validates the manifest, the schema version and every table file (footer, row count, and the whole
content: its xxh3 digest recorded in the manifest at write time, else a full decode) before any query runs,
so every command meets a damaged snapshot with the same one clear error instead of a DuckDB traceback or,
worse, an answer computed from half a table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from snapper import known_bugs
from snapper.errors import OutputError, SnapshotError, UnclassifiedDriverError
from snapper.schema import SCHEMA_MINOR, SCHEMA_VERSION, TABLES, Table

if TYPE_CHECKING:  # duckdb (15 MB) is imported by the functions that query: a collect never loads it
    import duckdb

MANIFEST = "manifest.json"
PARTIAL_MARK = ".snapper-partial"
_ROW_GROUP = 131072


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_partials(parent: Path) -> list[Path]:
    """Remove ``.*.partial-<pid>`` dirs left by collects that died (their pid is gone)."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        name = p.name
        if not (name.startswith(".") and ".partial-" in name) or p.is_symlink() or not p.is_dir():
            continue
        pid_text = name.rsplit(".partial-", 1)[1]
        if not pid_text.isdigit():
            continue
        if not (p / PARTIAL_MARK).exists():
            # Killed between mkdir and writing the mark: only an empty dir can be ours for sure.
            if int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
                with contextlib.suppress(OSError):
                    p.rmdir()
                    removed.append(p)
            continue
        if int(pid_text) == os.getpid() or not _pid_alive(int(pid_text)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def table_digest(path: Path) -> str:
    """``xxh3_64:<hex>`` of a table file's bytes: recorded at write time, checked by ``open_snapshot``. A byte
    changed in the middle of a file leaves its footer and row count intact; only the content tells."""
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"xxh3_64:{h.hexdigest()}"


def _decodes(pf: pq.ParquetFile) -> None:
    """Decode every row group (a snapshot written before digests were recorded): what a query would read."""
    for i in range(pf.metadata.num_row_groups):
        pf.read_row_group(i)


def output_mode(target: Path) -> tuple[int, int]:
    """Permission bits and group for a file snapper writes beside a snapshot (report, .prom): 0600, as private
    as the snapshot whose paths and names it lists; when ``target`` already exists, its bits and group are
    kept, so one ``chmod 0640`` + ``chgrp`` (e.g. for node_exporter) lasts across rewrites. gid -1: unchanged."""
    try:
        st = target.stat()
    except OSError:
        return 0o600, -1
    return stat.S_IMODE(st.st_mode) & 0o777, st.st_gid


def _create_private(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    os.close(fd)


def _mkdirs_private(path: Path) -> None:
    """``mkdir -p`` where every dir created is 0700. (``Path.mkdir(parents=True, mode=...)`` gives the missing
    parents the umask default: 0777 under umask 0, a world-writable dir in which others could swap the
    host dir for a symlink of theirs before the next collect.) Existing dirs are left as they are."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rows_to_batch(table: Table, rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Reader rows (dicts keyed by column name; missing keys are null) -> one record batch of ``table``.
    Strict: a str Arrow cannot encode or an int out of the column's range raises, so readers must clean
    their values (see ``snapper.metadata.clean_text`` and ``int64``)."""
    cols = {name: [r.get(name) for r in rows] for name in table.column_names}
    arrays = []
    for f in table.schema:
        arr = pa.array(cols[f.name], f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        arrays.append(arr.dictionary_encode() if pa.types.is_dictionary(f.type) else arr)
    return pa.RecordBatch.from_arrays(arrays, schema=table.schema)


class SnapshotWriter:
    """Streams tables into a partial dir; ``finish`` makes it a snapshot, ``abort`` removes it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        if out.exists() or out.is_symlink():
            raise OutputError(str(out), "already exists", "choose a new --out path; snapshots are never overwritten")
        try:
            _mkdirs_private(out.parent)
            self.removed_partials = clean_stale_partials(out.parent)
            self.tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
            os.mkdir(self.tmp, 0o700)
            try:
                _create_private(self.tmp / PARTIAL_MARK)
            except OSError:  # e.g. no inodes left: a dir without the mark would never be cleaned
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise
        except OSError as e:
            raise OutputError(str(out.parent), f"cannot create the snapshot: {e.strerror}",
                              "check the path, its permissions and free space") from e
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {t.name: 0 for t in TABLES}
        self.pending: dict[str, list[pa.RecordBatch]] = {}
        self.pending_rows: dict[str, int] = {}

    def _writer(self, table: Table) -> pq.ParquetWriter:
        w = self.writers.get(table.name)
        if w is None:
            path = self.tmp / f"{table.name}.parquet"
            _create_private(path)
            w = pq.ParquetWriter(str(path), table.schema, compression="zstd", compression_level=3)
            self.writers[table.name] = w
        return w

    def _io(self, what: str, exc: OSError) -> OutputError:
        return OutputError(str(self.out), f"writing {what} failed: {exc.strerror or exc}",
                           "free space on the output filesystem or choose another --out")

    def write_batch(self, table: Table, batch: pa.RecordBatch) -> None:
        """Buffer batches and write them as row groups of about 128k rows."""
        if batch.num_rows == 0:
            return
        self.pending.setdefault(table.name, []).append(batch)
        self.pending_rows[table.name] = self.pending_rows.get(table.name, 0) + batch.num_rows
        if self.pending_rows[table.name] >= _ROW_GROUP:
            self._flush(table)

    def _flush(self, table: Table) -> None:
        batches = self.pending.pop(table.name, [])
        self.pending_rows.pop(table.name, None)
        self._write_batches(table, batches)

    def _write_batches(self, table: Table, batches: list[pa.RecordBatch]) -> None:
        """Write buffered batches as one row group and count them."""
        if not batches:
            return
        try:
            self._writer(table).write_table(pa.Table.from_batches(batches, schema=table.schema))
        except OSError as e:
            raise self._io(table.name, e) from e
        self.rows[table.name] += sum(b.num_rows for b in batches)

    def write_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        self.write_batch(table, rows_to_batch(table, rows))

    def finish(self, manifest: dict[str, Any]) -> Path:
        try:
            for t in TABLES:
                self._flush(t)
                if t.name not in self.writers:
                    self._writer(t)
            for w in self.writers.values():
                w.close()
            self.writers.clear()
            manifest["rows"] = dict(self.rows)
            manifest["table_digests"] = {t.name: table_digest(self.tmp / f"{t.name}.parquet") for t in TABLES}
            manifest["schema_version"] = SCHEMA_VERSION
            manifest["schema_minor"] = SCHEMA_MINOR
            mpath = self.tmp / MANIFEST
            _create_private(mpath)
            with open(mpath, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2, sort_keys=True)
                f.write("\n")
            for p in self.tmp.iterdir():
                _fsync_path(p)
            (self.tmp / PARTIAL_MARK).unlink()
            _fsync_path(self.tmp)
            if self.out.exists():
                raise OutputError(str(self.out), "appeared while collecting", "choose a new --out path")
            os.rename(self.tmp, self.out)
            _fsync_path(self.out.parent)
        except OSError as e:
            self.abort()
            raise self._io("the snapshot", e) from e
        except BaseException:
            self.abort()
            raise
        return self.out

    def abort(self) -> None:
        for w in self.writers.values():
            with contextlib.suppress(Exception):
                w.close()
        self.writers.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict[str, Any]

    def table_path(self, name: str) -> Path:
        return self.path / f"{name}.parquet"

    @property
    def unclassified_driver(self) -> str | None:
        """The active storage driver when snapper does not classify it (see docker_root.unclassified_driver)."""
        from snapper.docker_root import unclassified_driver

        layout = self.manifest.get("layout")
        layout = layout if isinstance(layout, dict) else {}
        return unclassified_driver(layout.get("active_driver"), layout.get("driver_trees"),
                                   layout.get("containerd_store"))

    def driver_message(self) -> str | None:
        """One line naming the unclassified driver, or None."""
        from snapper.docker_root import unclassified_message

        driver = self.unclassified_driver
        if driver is None:
            return None
        layout = self.manifest.get("layout")
        evidence = layout.get("driver_evidence", "") if isinstance(layout, dict) else ""
        return unclassified_message(driver, evidence if isinstance(evidence, str) else "")

    def require_classified(self) -> None:
        """Verdicts on a store snapper does not classify would call every image layer leaked, or the tree in
        use dormant: refuse instead."""
        message = self.driver_message()
        if message is not None:
            raise UnclassifiedDriverError(str(self.path), message,
                                          "snapper show and snapper query read its tables; verdicts need overlay2")


def _plain(t: pa.DataType) -> pa.DataType:
    """Dictionary-encoded columns compare as their value type; lists by their item type."""
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain(t.value_type))
    return t


def _schema_problem(table: Table, found: pa.Schema) -> str | None:
    """Why a Parquet file's schema cannot serve as ``table`` (None when every column is there with its type).
    Without this check a foreign or damaged file only fails later, inside a DuckDB query."""
    for f in table.schema:
        i = found.get_field_index(f.name)
        if i < 0:
            return f"no column {f.name}"
        got = found.field(i).type
        if _plain(got) != _plain(f.type):
            return f"column {f.name} is {got}, expected {f.type}"
    return None


def open_snapshot(path: str | Path) -> Snapshot:
    """Validate a snapshot dir: manifest, schema version, and every table's footer and row count. An s3:// URL
    is read through a local copy (``snapper.remote``)."""
    from snapper import remote

    p = remote.fetch(path) if remote.is_remote(path) else Path(path)
    if not p.is_dir():
        raise SnapshotError(str(p), "not a snapshot directory (does not exist or is not a directory)",
                            "pass a directory written by `snapper collect`")
    mpath = p / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SnapshotError(str(p), "no manifest.json: not a snapshot, or an interrupted collect",
                            "pass a directory written by `snapper collect`, or collect again") from e
    except (OSError, ValueError) as e:
        raise SnapshotError(str(mpath), f"unreadable manifest ({e})", "collect the snapshot again") from e
    if not isinstance(manifest, dict):
        raise SnapshotError(str(mpath), "manifest is not a JSON object", "collect the snapshot again")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SnapshotError(str(p), f"schema version {version!r}, this snapper reads version {SCHEMA_VERSION}",
                            "collect again with this snapper, or use the snapper version that wrote it")
    rows_raw = manifest.get("rows")
    rows: dict[str, Any] = rows_raw if isinstance(rows_raw, dict) else {}
    minor = manifest.get("schema_minor", 1)
    minor = minor if isinstance(minor, int) else 1
    digests_raw = manifest.get("table_digests")
    digests: dict[str, Any] = digests_raw if isinstance(digests_raw, dict) else {}
    for t in TABLES:
        tp = p / f"{t.name}.parquet"
        if t.since > minor and not tp.exists():
            continue  # written before the table existed: read as empty (view_statements)
        try:
            pf = pq.ParquetFile(tp)
            meta, file_schema = pf.metadata, pf.schema_arrow
        except FileNotFoundError as e:
            raise SnapshotError(str(tp), "table file missing", "collect the snapshot again") from e
        except (OSError, pa.ArrowException) as e:
            raise SnapshotError(str(tp), f"corrupt Parquet file ({str(e).splitlines()[0][:120]})",
                                "collect the snapshot again") from e
        problem = _schema_problem(t, file_schema)
        if problem:
            raise SnapshotError(str(tp), f"not the {t.name} table of schema version {SCHEMA_VERSION} ({problem})",
                                "collect the snapshot again")
        if rows.get(t.name) is not None and meta.num_rows != rows[t.name]:
            raise SnapshotError(str(tp), f"{meta.num_rows} rows but the manifest says {rows[t.name]}",
                                "collect the snapshot again")
        _check_content(tp, pf, digests.get(t.name))
    return Snapshot(p, manifest)


def _check_content(tp: Path, pf: pq.ParquetFile, digest: object) -> None:
    corrupt = "corrupt Parquet file ({})"
    try:
        if digest is None:
            _decodes(pf)
            return
        found = table_digest(tp)
    except (OSError, pa.ArrowException) as e:
        raise SnapshotError(str(tp), corrupt.format(str(e).splitlines()[0][:120] if str(e) else type(e).__name__),
                            "collect the snapshot again") from e
    if found != digest:
        raise SnapshotError(str(tp), corrupt.format(f"content is not what the collect wrote: {found}, the manifest "
                                                    f"says {digest}"), "collect the snapshot again")


def manifest_rows(manifest: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A manifest flattened to (dotted key, value) pairs, as ``snapper show --format csv`` prints it: nested
    objects give ``daemon.running``, ``rows.files``; lists and scalars are JSON text (strings as they are)."""
    out: list[tuple[str, str]] = []
    for k in sorted(manifest):
        v, key = manifest[k], f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += manifest_rows(v, key + ".")
        else:
            out.append((key, v if isinstance(v, str) else json.dumps(v, sort_keys=True)))
    return out


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.uint32(): "UINTEGER", pa.bool_(): "BOOLEAN",
              pa.int32(): "INTEGER", pa.float64(): "DOUBLE"}


def _sql_type(t: pa.DataType) -> str:
    plain = _plain(t)
    if pa.types.is_list(plain):
        return _sql_type(plain.value_type) + "[]"
    return _SQL_TYPES[plain]


def _empty_select(t: Table) -> str:
    """A table with ``t``'s columns and no rows: how a table added after a snapshot was written reads."""
    cols = ", ".join(f"NULL::{_sql_type(typ)} AS {name}" for name, typ, _ in t.columns)
    return f"SELECT {cols} WHERE false"


def view_statements(snaps: Snapshot | Sequence[Snapshot]) -> list[str]:
    """CREATE VIEW statements binding one snapshot, or a series, in any DuckDB.

    Every table view gets a leading ``snap`` column: the snapshot's position in the series (0 for a single
    snapshot, else ordered by collection time). ``snapshots`` lists them; ``manifest`` holds each manifest.
    """
    series = [snaps] if isinstance(snaps, Snapshot) else list(snaps)
    if not series:
        raise SnapshotError("(no snapshots)", "nothing to bind", "pass at least one snapshot directory")
    out = []
    for t in TABLES:
        parts = [f"SELECT {i} AS snap, * FROM read_parquet({_sql_str(str(s.table_path(t.name).resolve()))})"
                 if s.table_path(t.name).exists() else f"SELECT {i} AS snap, * FROM ({_empty_select(t)})"
                 for i, s in enumerate(series)]
        out.append(f"CREATE OR REPLACE VIEW {t.name} AS\n  " + "\n  UNION ALL ".join(parts) + ";")
    manifests = [f"SELECT {i} AS snap, {_sql_str(json.dumps(s.manifest, sort_keys=True))}::JSON AS manifest"
                 for i, s in enumerate(series)]
    out.append("CREATE OR REPLACE VIEW manifest AS\n  " + "\n  UNION ALL ".join(manifests) + ";")
    paths = [f"({i}, {_sql_str(str(s.path.resolve()))})" for i, s in enumerate(series)]
    out.append(
        "CREATE OR REPLACE VIEW snapshots AS SELECT m.snap, p.path,"
        " TRY_CAST(json_extract_string(m.manifest, '$.started_ns') AS BIGINT) AS started_ns,"
        " json_extract_string(m.manifest, '$.started_utc') AS started_utc,"
        " json_extract_string(m.manifest, '$.host') AS host,"
        " json_extract_string(m.manifest, '$.data_root') AS data_root,"
        " TRY_CAST(json_extract_string(m.manifest, '$.daemon.running') AS BOOLEAN) AS daemon_running,"
        " TRY_CAST(json_extract_string(m.manifest, '$.statvfs.used_bytes') AS BIGINT) AS fs_used_bytes,"
        " TRY_CAST(json_extract_string(m.manifest, '$.statvfs.total_bytes') AS BIGINT) AS fs_total_bytes"
        f" FROM manifest m JOIN (VALUES {', '.join(paths)}) p(snap, path) ON p.snap = m.snap;")
    out.append(known_bugs.view_statement())
    return out


def connect(snaps: Snapshot | Sequence[Snapshot],
            con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    import duckdb

    con = con or duckdb.connect()
    for stmt in view_statements(snaps):
        con.execute(stmt)
    return con


def _started(s: Snapshot) -> tuple[int, str]:
    v = s.manifest.get("started_ns")
    return (v if isinstance(v, int) else 0, str(s.path))


def find_snapshots(args: Sequence[str | Path]) -> list[Snapshot]:
    """Snapshots named directly, or found under series dirs (up to 3 levels), ordered by collection time.
    Hidden dirs (partial collects) are skipped; every snapshot found is validated."""
    from snapper import remote

    found: dict[Path, Snapshot] = {}
    for a in args:
        p = remote.fetch(a) if remote.is_remote(a) else Path(a)
        if (p / MANIFEST).is_file():
            found[p.resolve()] = open_snapshot(p)
            continue
        if not p.is_dir():
            raise SnapshotError(str(p), "no such snapshot or series directory",
                                "pass snapshot dirs or a dir holding them (e.g. snapshots/<host>)")
        hits = []
        for depth in ("*", "*/*", "*/*/*"):
            hits += [m.parent for m in p.glob(f"{depth}/{MANIFEST}")
                     if not any(part.startswith(".") for part in m.parent.relative_to(p).parts)]
        if not hits:
            raise SnapshotError(str(p), "holds no snapshot (no */manifest.json)",
                                "pass snapshot dirs or a dir holding them (e.g. snapshots/<host>)")
        for h in hits:
            found[h.resolve()] = open_snapshot(h)
    return sorted(found.values(), key=_started)
