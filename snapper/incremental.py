"""Incremental collect: copy the ``files`` rows of layer dirs that cannot have changed since a base snapshot.

A committed image layer is immutable: overlay2 never writes to a dir once it is a parent (``committed``
marker, named in another dir's ``lower``) or an image layer (the ``cache-id`` of a layer-store chain). Such a
dir is reused when its signature still matches the base's ``layers`` row: the inode, mtime and ctime of the
dir and the mtime and ctime of its ``diff/`` (a dir deleted and re-created under the same name, or touched at
its top, fails this) and when its *top signature* (snapper.incremental.top_signature: the lstat of every entry of
the dir itself but inside ``diff/``, so ``link``, ``lower``, ``committed`` and all of ``work/``) equals the one
the base recorded in ``layer_signatures`` (a base without that table reuses nothing).
Everything else (new dirs, container upper dirs, ``-init`` dirs before their first child, BuildKit active
snapshots, dirs whose base walk had errors) is walked again.

The new snapshot stays self-contained: reused rows are copied from the base, never referenced. Row groups
whose every row is reused are copied as bytes (``splice``); the collect writes the rows of committed dirs
into row groups of their own, so that the next collect can do so. Other reused rows are decoded, filtered
and written again.
A base is used only if it is a complete snapshot of the same data root, schema version and hash mode.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapper.errors import SnapperError
from snapper.metadata.overlay import resolve_lower
from snapper.schema import SCHEMA_VERSION
from snapper.walk import LayerResult, _read_small, show_bytes

# layers columns that come from the walk (the rest is recomputed from the current metadata)
_WALK_FIELDS = ("entry_type", "link_id", "lower", "file_count", "apparent_bytes", "allocated_bytes", "dir_inode",
                "dir_mtime_ns", "dir_ctime_ns", "diff_mtime_ns", "diff_ctime_ns", "link_mtime_ns", "link_ctime_ns",
                "walk_status", "walk_errors")
_MARKERS = ("diff", "link", "lower", "work", "merged", "committed")


@dataclass
class Base:
    path: Path
    manifest: dict[str, Any]
    layers: dict[str, dict[str, Any]]
    signatures: dict[str, str] = field(default_factory=dict)  # layer_id -> top signature when collected


@dataclass
class Plan:
    """Which overlay2 entries are copied from the base and which are walked."""

    base: Base | None
    reason: str  # why this base (or none) is used
    reused: dict[str, LayerResult] = field(default_factory=dict)
    walk: list[bytes] = field(default_factory=list)
    stable: set[str] = field(default_factory=set)  # committed now: their rows go to row groups of their own
    signatures: dict[str, str] = field(default_factory=dict)  # layer_id -> top signature, taken before the walk

    def manifest(self, rows_copied: int, rows_as_bytes: int) -> dict[str, Any]:
        return {"base": str(self.base.path) if self.base else None, "reason": self.reason,
                "reused_layers": len(self.reused), "walked_layers": len(self.walk), "reused_rows": rows_copied,
                "reused_rows_copied_as_bytes": rows_as_bytes}


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def usable(path: Path, root: Path, hash_mode: str) -> tuple[Base | None, str]:
    """The base at ``path`` with its layers rows, or None and why it cannot be used."""
    from snapper.snapshot import open_snapshot

    m = _manifest(path)
    if m is None:
        return None, f"{path}: not a snapshot"
    if m.get("schema_version") != SCHEMA_VERSION:
        return None, f"{path}: schema version {m.get('schema_version')!r}, not {SCHEMA_VERSION}"
    if m.get("data_root") != str(root):
        return None, f"{path}: a snapshot of {m.get('data_root')}, not {root}"
    opt = m.get("options")
    options: dict[str, Any] = opt if isinstance(opt, dict) else {}
    if options.get("hash") != hash_mode:
        return None, f"{path}: collected with --hash {options.get('hash')}, not {hash_mode}"
    try:
        snap = open_snapshot(path)  # every table readable, row counts as the manifest says
        import pyarrow.parquet as pq

        rows = pq.read_table(snap.table_path("layers")).to_pylist()
        sig_path = snap.table_path("layer_signatures")
        sigs = ({r["layer_id"]: r["top_signature"] for r in pq.read_table(sig_path).to_pylist()}
                if sig_path.exists() else {})
    except (SnapperError, OSError) as e:
        return None, f"{path}: {e}"
    return Base(path, m, {r["layer_id"]: r for r in rows}, sigs), "--base"


def find_base(series: Path, root: Path, hash_mode: str, before_ns: int) -> tuple[Base | None, str]:
    """The newest earlier snapshot in ``series`` (a dir of snapshot dirs, e.g. snapshots/<host>) that is
    usable as a base for this data root and hash mode."""
    try:
        entries = [p for p in series.iterdir() if not p.name.startswith(".") and p.is_dir()]
    except OSError:
        return None, f"no earlier snapshot in {series}"
    found: list[tuple[int, str, Path]] = []
    last = ""
    for p in entries:
        m = _manifest(p)
        if m is None or m.get("data_root") != str(root):
            continue
        started = m.get("started_ns")
        if isinstance(started, int) and started < before_ns:
            found.append((started, p.name, p))
    for _, _, p in sorted(found, reverse=True):
        base, why = usable(p, root, hash_mode)
        if base is not None:
            return base, f"newest earlier snapshot of this data root in {series}"
        last = why
    return None, last if found else f"no earlier snapshot of {root} in {series}"


def plan(base: Base | None, reason: str, overlay_dir: bytes, names: list[bytes], chains: list[dict[str, Any]],
         links: dict[str, str], mounted: set[str]) -> Plan:
    """Which overlay2 entries are committed (stable), and which are reused from ``base`` or walked."""
    out = Plan(base, reason)
    cache_ids = {r["cache_id"] for r in chains if r.get("cache_id") and not r.get("removing")}
    lowers: set[str] = set()
    for name in names:  # every dir named in a current lower file is a parent: committed
        try:  # as the walk reads it: O_NOATIME, O_NOFOLLOW, regular files only
            text = show_bytes(_read_small(os.path.join(overlay_dir, name, b"lower")).strip())[0]
        except (OSError, ValueError):
            continue
        lowers.update(lid for lid in resolve_lower(text, links)[0] or [] if lid)
    for name in names:
        lid = show_bytes(name)[0]
        top = os.path.join(overlay_dir, name)
        sig = top_signature(top)
        if sig is not None:
            out.signatures[lid] = sig
        committed = lid in cache_ids or lid in lowers or os.path.lexists(os.path.join(top, b"committed"))
        if committed and lid not in mounted:
            out.stable.add(lid)
        same_top = base is not None and sig is not None and base.signatures.get(lid) == sig
        res = _reusable(base.layers.get(lid), top, lid) if base is not None and lid in out.stable and same_top \
            else None
        if res is None:
            out.walk.append(name)
        else:
            out.reused[lid] = res
    return out


def top_signature(top: bytes) -> str | None:
    """xxh64 over (path, inode, mode, size, mtime, ctime) of the dir ``top`` and every entry in it except what
    is inside ``diff/`` (``diff`` itself is included): the files a committed dir can still see changed in place
    (``link``, ``lower``, ``committed``, ``work/``...). None when ``top`` is not a dir or cannot be read."""
    import stat as stat_mod

    import xxhash

    h = xxhash.xxh64()
    stack = [b""]
    try:
        st = os.lstat(top)
        if not stat_mod.S_ISDIR(st.st_mode):
            return None
        h.update(b"%d %d %d %d\n" % (st.st_ino, st.st_mode, st.st_mtime_ns, st.st_ctime_ns))
        while stack:
            rel = stack.pop()
            with os.scandir(os.path.join(top, rel) if rel else top) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                est = e.stat(follow_symlinks=False)
                path = os.path.join(rel, os.fsencode(e.name)) if rel else os.fsencode(e.name)
                h.update(b"%s %d %d %d %d %d\n" % (path, est.st_ino, est.st_mode, est.st_size, est.st_mtime_ns,
                                                     est.st_ctime_ns))
                if stat_mod.S_ISDIR(est.st_mode) and path != b"diff":
                    stack.append(path)
    except OSError:
        return None
    return h.hexdigest()


def _reusable(row: dict[str, Any] | None, top: bytes, lid: str) -> LayerResult | None:
    """The base's walk of a committed dir, when its signature has not changed."""
    if row is None or row["walk_status"] != "ok" or row["walk_errors"] or row["entry_type"] != "d":
        return None
    try:
        st = os.lstat(top)
        if (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) != (row["dir_inode"], row["dir_mtime_ns"], row["dir_ctime_ns"]):
            return None
        diff: tuple[int | None, int | None] = (None, None)
        with contextlib.suppress(FileNotFoundError):
            dst = os.lstat(os.path.join(top, b"diff"))
            diff = (dst.st_mtime_ns, dst.st_ctime_ns)
    except OSError:
        return None
    if diff != (row["diff_mtime_ns"], row["diff_ctime_ns"]):
        return None
    res = LayerResult(lid, **{k: row[k] for k in _WALK_FIELDS})
    res.markers = {m: True for m in _MARKERS if row.get(f"has_{m}")}
    return res


def reuse_groups(base: Base, reused: set[str], reference_footer: bytes) -> tuple[list[int], list[int], int]:
    """Row groups of the base files table: (copied as bytes: every row reused, decoded and filtered: some
    rows reused, rows in the first kind). Bytes are copied only when the base footer has the schema of
    ``reference_footer`` (an empty files.parquet as this snapper writes it)."""
    path = base.path / "files.parquet"
    layer_sets = group_layers(path)
    try:
        meta, rgs = row_groups(path)
        ref = _Reader(reference_footer).struct()
        raw_ok = _field(meta, 2) == _field(ref, 2) and _field(meta, 5) == _field(ref, 5)
    except (ValueError, IndexError, OSError):
        raw_ok, rgs = False, []
    raw = [i for i, ids in enumerate(layer_sets) if raw_ok and ids <= reused]
    partial = [i for i, ids in enumerate(layer_sets) if ids & reused and i not in raw]
    return raw, partial, sum(rgs[i].num_rows for i in raw)


def copy_rows(base: Base, reused: set[str], groups: list[int]) -> Iterator[Any]:
    """The reused rows of row groups ``groups`` of the base's files table, decoded one group at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = pa.array(sorted(reused), pa.string())
    pf = pq.ParquetFile(base.path / "files.parquet")
    for i in groups:
        for batch in pf.read_row_group(i).to_batches(max_chunksize=65536):
            col = batch.column(0)
            keep = pc.is_in(col.dictionary, value_set=wanted)  # per dictionary value, then per row
            mask = pc.take(keep, col.indices)
            if pc.any(mask).as_py():
                yield batch if pc.all(mask).as_py() else batch.filter(mask)


# --- raw row-group copy ------------------------------------------------------------------------------------------
#
# Re-encoding a million copied rows costs seconds of CPU; copying the bytes of a row group whose every row is
# reused costs nothing. A Parquet file is "PAR1", column chunks, a Thrift (compact protocol) FileMetaData,
# its length and "PAR1" (https://github.com/apache/parquet-format: Thrift definitions in parquet.thrift,
# encoding in thrift's compact-protocol spec). Splicing needs only the byte ranges of row groups and the
# offsets inside their metadata moved; every other field is carried through untouched.

_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = out = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t: int) -> Any:
        if t in (_TRUE, _FALSE):  # inside a list: a byte, 1 = true
            return self.byte() == _TRUE
        if t == _BYTE:
            return self.byte()
        if t in (_I16, _I32, _I64):
            return self.zigzag()
        if t == _DOUBLE:
            self.pos += 8
            return self.data[self.pos - 8:self.pos]
        if t == _BINARY:
            n = self.varint()
            self.pos += n
            return self.data[self.pos - n:self.pos]
        if t in (_LIST, _SET):
            head = self.byte()
            size, et = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return (et, [self.value(et) for _ in range(size)])
        if t == _MAP:
            size = self.varint()
            kv = self.byte() if size else 0
            return (kv, [(self.value(kv >> 4), self.value(kv & 0x0F)) for _ in range(size)])
        if t == _STRUCT:
            return self.struct()
        raise ValueError(f"thrift compact type {t}")

    def struct(self) -> list[list[Any]]:
        fields: list[list[Any]] = []
        fid = 0
        while True:
            head = self.byte()
            t = head & 0x0F
            if t == _STOP:
                return fields
            fid = fid + (head >> 4) if head >> 4 else self.zigzag()
            fields.append([fid, t, (t == _TRUE) if t in (_TRUE, _FALSE) else self.value(t)])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _write_value(out: bytearray, t: int, v: Any) -> None:
    if t in (_TRUE, _FALSE):
        out.append(_TRUE if v else _FALSE)
    elif t == _BYTE:
        out.append(v & 0xFF)
    elif t in (_I16, _I32, _I64):
        out += _zigzag(v)
    elif t == _DOUBLE:
        out += v
    elif t == _BINARY:
        out += _varint(len(v)) + v
    elif t in (_LIST, _SET):
        et, items = v
        out.append((len(items) << 4 | et) if len(items) < 15 else (0xF0 | et))
        if len(items) >= 15:
            out += _varint(len(items))
        for item in items:
            _write_value(out, et, item)
    elif t == _MAP:
        kv, items = v
        out += _varint(len(items))
        if items:
            out.append(kv)
        for k, val in items:
            _write_value(out, kv >> 4, k)
            _write_value(out, kv & 0x0F, val)
    elif t == _STRUCT:
        _write_struct(out, v)
    else:
        raise ValueError(f"thrift compact type {t}")


def _write_struct(out: bytearray, fields: list[list[Any]]) -> None:
    last = 0
    for fid, t, v in fields:
        wire_t = (_TRUE if v else _FALSE) if t in (_TRUE, _FALSE) else t
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | wire_t)
        else:
            out.append(wire_t)
            out += _zigzag(fid)
        if t not in (_TRUE, _FALSE):
            _write_value(out, t, v)
        last = fid
    out.append(_STOP)


def _field(fields: list[list[Any]], fid: int) -> list[Any] | None:
    return next((f for f in fields if f[0] == fid), None)


def read_footer(path: Path) -> tuple[list[list[Any]], int]:
    """(FileMetaData as [field id, type, value] lists, where the footer starts)."""
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
        if tail[4:] != b"PAR1":
            raise ValueError(f"{path}: not a Parquet file")
        n = int.from_bytes(tail[:4], "little")
        start = f.seek(-8 - n, os.SEEK_END)
        return _Reader(f.read(n)).struct(), start


class RowGroup:
    """One row group of a Parquet file: its metadata and byte range, movable to another offset."""

    def __init__(self, meta: list[list[Any]]) -> None:
        self.meta = meta
        cols = _field(meta, 1)
        assert cols is not None
        self.start = min(self._chunk_start(c) for c in cols[2][1])
        self.end = max(self._chunk_start(c) + self._cmd(c, 7) for c in cols[2][1])
        rows = _field(meta, 3)
        self.num_rows = int(rows[2]) if rows else 0

    @staticmethod
    def _cmd(chunk: list[list[Any]], fid: int) -> int:
        md = _field(chunk, 3)
        if md is None:
            raise ValueError("column chunk without metadata")
        f = _field(md[2], fid)
        return int(f[2]) if f else -1

    def _chunk_start(self, chunk: list[list[Any]]) -> int:
        if _field(chunk, 1) is not None or _field(chunk, 4) is not None or _field(chunk, 6) is not None or \
                self._cmd(chunk, 14) >= 0:
            raise ValueError("row group with external file, page index or bloom filter")
        dictionary = self._cmd(chunk, 11)
        return dictionary if dictionary > 0 else self._cmd(chunk, 9)

    def moved(self, new_start: int, ordinal: int) -> list[list[Any]]:
        """This row group's metadata for a copy of its bytes at ``new_start``."""
        shift = new_start - self.start
        meta = [list(f) for f in self.meta]
        for f in meta:
            if f[0] == 5:  # RowGroup.file_offset
                f[2] += shift
            elif f[0] == 7:  # RowGroup.ordinal
                f[2] = ordinal
            elif f[0] == 1:
                chunks = []
                for chunk in f[2][1]:
                    chunk = [list(x) for x in chunk]
                    for cf in chunk:
                        if cf[0] == 2 and cf[2]:  # ColumnChunk.file_offset (deprecated, 0 when unused)
                            cf[2] += shift
                        elif cf[0] == 3:
                            cf[2] = [[g[0], g[1], g[2] + shift if g[0] in (9, 10, 11) and g[2] else g[2]]
                                     for g in cf[2]]
                    chunks.append(chunk)
                f[2] = (f[2][0], chunks)
        return meta


def row_groups(path: Path) -> tuple[list[list[Any]], list[RowGroup]]:
    meta, _ = read_footer(path)
    rgs = _field(meta, 4)
    return meta, [RowGroup(rg) for rg in (rgs[2][1] if rgs else [])]


def splice(new_file: Path, base_file: Path, base_groups: list[int], dest: Path) -> int:
    """Write ``dest``: the row groups of ``new_file`` followed by the bytes of row groups ``base_groups`` of
    ``base_file``, with one footer (``new_file``'s schema and metadata) describing them all. Both files must
    have the same schema. Returns the rows copied from the base."""
    meta, new_rgs = row_groups(new_file)
    base_meta, base_rgs = row_groups(base_file)
    if _field(meta, 2) != _field(base_meta, 2) or _field(meta, 5) != _field(base_meta, 5):
        raise ValueError("the base files table has another schema")
    out_rgs: list[list[list[Any]]] = []
    copied = 0
    with open(dest, "xb", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:
        out.write(b"PAR1")
        for src, groups in ((new_file, new_rgs), (base_file, [base_rgs[i] for i in base_groups])):
            with open(src, "rb") as f:
                for rg in groups:
                    out_rgs.append(rg.moved(out.tell(), len(out_rgs)))
                    f.seek(rg.start)
                    left = rg.end - rg.start
                    while left:
                        chunk = f.read(min(left, 1 << 22))
                        if not chunk:
                            raise ValueError(f"{src}: truncated row group")
                        out.write(chunk)
                        left -= len(chunk)
                    if src == base_file:
                        copied += rg.num_rows
        fields = [list(x) for x in meta]
        for x in fields:
            if x[0] == 3:  # FileMetaData.num_rows
                x[2] = sum(rg.num_rows for rg in new_rgs) + copied
            elif x[0] == 4:  # FileMetaData.row_groups
                x[2] = (_STRUCT, out_rgs)
        footer = bytearray()
        _write_struct(footer, fields)
        out.write(footer)
        out.write(len(footer).to_bytes(4, "little") + b"PAR1")
    return copied


def group_layers(path: Path) -> list[set[str]]:
    """The layer ids in each row group of a files.parquet."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    out = []
    for i in range(pf.num_row_groups):
        col = pf.read_row_group(i, columns=["layer_id"]).column(0).combine_chunks()
        if hasattr(col, "dictionary"):
            used = pc.unique(col.indices).to_pylist()
            values = col.dictionary.to_pylist()
            out.append({values[k] for k in used})
        else:
            out.append(set(col.to_pylist()))
    return out
