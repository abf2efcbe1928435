"""Compaction of the fleet lake: each host's small per-snapshot files merged into one file per table and month.

A daily or hourly push leaves one small file per snapshot and table; a query over the fleet opens all of them
(100 hosts x 30 days: 3,000 files per table). ``compact`` merges, per table, host and month, every live file
dated before ``before`` with what was compacted already into

    <lake>/compacted/<table>/host=<host>/<yyyy-mm>.parquet       (``date`` a column, ``host`` the partition)

whose footer lists its members (``snapshot -> [date, source digest, content digest]``), then removes the live
files it merged. The ``files`` table is never compacted (one snapshot's files table is big already).

Guarantees, with the lake's views (``snapper.lake.view_sql``: a compacted snapshot is hidden while it still has a
live file of that table):

- atomic: the new compacted file appears whole (``lake._put``) before any live file is removed, and at every
  moment each snapshot's rows are visible exactly once; a compaction cut short shows the same rows and the next
  run finishes it;
- idempotent: a second run finds nothing to merge; a compacted file whose rows and members would not change
  is not rewritten;
- push stays idempotent: ``lake.push`` of a snapshot whose rows are in a compacted file with the same source or
  content digest writes nothing; a snapshot whose content changed is written live again (live wins) and merged
  by the next compaction, replacing its old rows.

Do not run it while the same snapshots are pushed again (new snapshots may be pushed meanwhile: their files
are not in the listing it merges).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from snapper.lake import (
    COMPACT_TABLES,
    DIGEST_KEY,
    MEMBERS_KEY,
    SOURCE_KEY,
    Lake,
    _digest,
    _io,
    _put,
    check_version,
    compacted_path,
)
from snapper.schema import LAKE_PARTITIONS, LAKE_TABLES, Table


@dataclass
class Merged:
    table: str
    host: str
    month: str
    snapshots: int  # members of the compacted file after the merge
    merged_files: int  # live files merged and removed
    status: str  # written | unchanged
    bytes: int


@dataclass
class CompactResult:
    groups: list[Merged] = field(default_factory=list)

    @property
    def merged_files(self) -> int:
        return sum(g.merged_files for g in self.groups)


def _live(lake: Lake, table: str, before: str) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    """(host, month) -> [(path, date, snapshot)] of the table's live files dated before ``before``."""
    base = lake.path(table)
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise _io(lake, table, exc) from exc
    out: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for i in infos:
        rel = i.path[len(base):].strip("/").split("/")
        if (i.type != pafs.FileType.File or len(rel) != 3 or not rel[0].startswith("host=")
                or not rel[1].startswith("date=") or not rel[2].endswith(".parquet") or rel[2].startswith(".")):
            continue  # hidden temp files of a push in progress, anything else
        date = rel[1][5:]
        if date < before:
            out.setdefault((unquote(rel[0][5:]), date[:7]), []).append((i.path, date, rel[2][:-8]))
    return out


def _read(lake: Lake, path: str) -> tuple[pa.Table, dict[bytes, bytes]]:
    try:
        with lake.fs.open_input_file(path) as f:
            t = pq.read_table(f)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _io(lake, path, exc) from exc
    return t, dict(t.schema.metadata or {})


def _merge_group(lake: Lake, t: Table, host: str, month: str, live: list[tuple[str, str, str]]) -> Merged:
    schema = pa.schema([*t.schema, LAKE_PARTITIONS.field("date")])
    target = compacted_path(lake, t.name, host, month)
    parts: list[pa.Table] = []
    members: dict[str, list[str]] = {}
    old_digest, old_members = b"", {}
    if lake.fs.get_file_info(target).type == pafs.FileType.File:
        old, meta = _read(lake, target)
        old_digest = meta.get(DIGEST_KEY, b"")
        members = json.loads(meta.get(MEMBERS_KEY, b"{}"))
        old_members = dict(members)
        gone = pa.array(sorted({sid for _, _, sid in live}), pa.string())
        parts.append(old.select(schema.names).cast(schema).filter(pc.invert(pc.is_in(old["snapshot"], gone))))
        for sid in gone.to_pylist():
            members.pop(sid, None)
    for path, date, sid in live:
        rows, meta = _read(lake, path)
        rows = rows.select(t.column_names).cast(t.schema).replace_schema_metadata(None)
        digest = meta.get(DIGEST_KEY, b"").decode() or _digest(rows)
        members[sid] = [date, meta.get(SOURCE_KEY, b"").decode(), digest]
        parts.append(rows.append_column("date", pa.array([date] * rows.num_rows, pa.string())))
    merged = pa.concat_tables(parts).replace_schema_metadata(None) if parts else schema.empty_table()
    order = [("date", "ascending"), ("snapshot", "ascending")]
    merged = merged.take(pc.sort_indices(merged, sort_keys=order))
    digest = _digest(merged)
    status, size = "unchanged", 0
    if digest.encode() != old_digest or members != old_members:  # rows, or what push compares them with
        meta = {DIGEST_KEY: digest.encode(), MEMBERS_KEY: json.dumps(members, sort_keys=True).encode(),
                b"snapper.host": host.encode()}
        sink = pa.BufferOutputStream()
        pq.write_table(merged.replace_schema_metadata(meta), sink, compression="zstd")
        body = sink.getvalue().to_pybytes()
        _put(lake, target, body)  # whole or not at all: until it is there, the live files are the rows
        status, size = "written", len(body)
    for path, _, _ in live:  # only now: while a live file is there, the view hides its compacted copy
        try:
            lake.fs.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _io(lake, path, exc) from exc
    if lake.rename:  # a local lake: drop the emptied date= and host= dirs, or every query lists them again
        for parent in sorted({p.rsplit("/", 1)[0] for p, _, _ in live}):
            for d in (parent, parent.rsplit("/", 1)[0]):
                with contextlib.suppress(OSError):  # not empty (a push under way): it stays
                    os.rmdir(d)
    return Merged(t.name, host, month, len(members), len(live), status, size)


def compact(lake: Lake, before: str) -> CompactResult:
    """Merge every live file dated before ``before`` (yyyy-mm-dd) into its table's compacted file of that host
    and month; ``snapshots`` last, like a push."""
    check_version(lake)
    res = CompactResult()
    for t in LAKE_TABLES:
        if t.name not in COMPACT_TABLES:
            continue
        for (host, month), live in sorted(_live(lake, t.name, before).items()):
            res.groups.append(_merge_group(lake, t, host, month, sorted(live)))
    return res


__all__ = ["CompactResult", "Merged", "compact"]
