"""The filesystem walk of one overlay2 entry: lstat only, never follows a symlink, never crosses a mount.

Design (forensic hygiene and scale):
- names are handled as bytes end to end, so names that are not UTF-8 survive (``path_raw``);
- directories on another device, or listed as mount points in mountinfo, are recorded and not descended
  (``merged/`` of a running container is an overlay mount with its own st_dev);
- content is read only for regular files, opened with O_NOFOLLOW|O_NONBLOCK (and O_NOATIME when allowed),
  and only after fstat confirms it is the same regular inode that lstat saw;
- rows are appended to per-column lists and flushed as Arrow record batches, so memory stays bounded by the
  batch size however large the tree is;
- per-entry failures become ``errors`` rows; the walk continues.
The walk of one layer is self-contained, so layers can be walked in parallel processes (``collect``).
"""

from __future__ import annotations

import errno as errno_mod
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import xxhash

from snapper.schema import FILES

HASH_MODES = ("none", "partial", "full")
PARTIAL_CHUNK = 64 * 1024
_READ_CHUNK = 1 << 20
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MARKERS = {b"diff": "diff", b"link": "link", b"lower": "lower", b"work": "work", b"merged": "merged",
            b"committed": "committed"}


def type_char(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    if stat.S_ISFIFO(mode):
        return "p"
    if stat.S_ISSOCK(mode):
        return "s"
    return "?"


def show_bytes(raw: bytes) -> tuple[str, bytes | None]:
    """(text, raw-or-None): text is exact for UTF-8 names; otherwise bytes show as \\xNN and raw is kept."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), raw


def error_row(source: str, obj: str, op: str, exc: BaseException | None, message: str | None = "") -> dict[str, Any]:
    err = exc.errno if isinstance(exc, OSError) else None
    if not message:
        message = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    return {"source": source, "object": obj, "op": op, "errno": err, "message": message}


def content_hash(path: bytes, st: os.stat_result, mode: str) -> bytes:
    """xxh3_128 of a regular file: partial = size + first and last 64 KiB (whole file when small); full =
    the whole content. Raises OSError; ValueError when the path is no longer the inode lstat saw."""
    try:
        fd = os.open(path, _OPEN_FLAGS | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        fd = os.open(path, _OPEN_FLAGS)
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino or fst.st_dev != st.st_dev:
            raise ValueError("replaced by another file between lstat and open")
        h = xxhash.xxh3_128()
        size = fst.st_size
        if mode == "partial":
            h.update(size.to_bytes(8, "little"))
            if size <= 2 * PARTIAL_CHUNK:
                h.update(os.pread(fd, size, 0))
            else:
                h.update(os.pread(fd, PARTIAL_CHUNK, 0))
                h.update(os.pread(fd, PARTIAL_CHUNK, size - PARTIAL_CHUNK))
        else:
            while chunk := os.read(fd, _READ_CHUNK):
                h.update(chunk)
        return h.digest()
    finally:
        os.close(fd)


class FileColumns:
    """Column lists for the ``files`` table; ``take()`` turns them into a record batch and resets."""

    def __init__(self) -> None:
        self.names = FILES.column_names
        self.cols: dict[str, list[Any]] = {n: [] for n in self.names}

    def __len__(self) -> int:
        return len(self.cols["path"])

    def take(self) -> pa.RecordBatch:
        arrays = []
        for f in FILES.schema:
            data = self.cols[f.name]
            if pa.types.is_dictionary(f.type):
                arrays.append(pa.array(data, pa.string()).dictionary_encode())
            else:
                arrays.append(pa.array(data, f.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=FILES.schema)
        self.cols = {n: [] for n in self.names}
        return batch


@dataclass
class LayerResult:
    """What the walk learnt about one overlay2 entry (the parent adds lower resolution and mounts)."""

    layer_id: str
    entry_type: str = "?"
    markers: dict[str, bool] = field(default_factory=dict)
    link_id: str | None = None
    lower: str | None = None
    file_count: int = 0
    apparent_bytes: int = 0
    allocated_bytes: int = 0
    dir_inode: int | None = None
    dir_mtime_ns: int | None = None
    dir_ctime_ns: int | None = None
    diff_mtime_ns: int | None = None
    diff_ctime_ns: int | None = None
    link_mtime_ns: int | None = None
    link_ctime_ns: int | None = None
    walk_status: str = "ok"
    walk_errors: int = 0


def _read_small(path: bytes, limit: int = 65536) -> bytes:
    try:  # O_NOATIME as in content_hash: the link and lower files keep their atime
        fd = os.open(path, _OPEN_FLAGS | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


class LayerWalker:
    """Walks overlay2 entries one at a time, appending rows to shared columns and flushing batches."""

    def __init__(self, overlay_dir: bytes, rel_prefix: str, hash_mode: str, mount_points: frozenset[bytes],
                 emit: Callable[[pa.RecordBatch], None], batch_rows: int = 65536) -> None:
        self.overlay_dir = overlay_dir
        self.rel_prefix = rel_prefix  # how paths appear in errors rows, e.g. "overlay2"
        self.hash_mode = hash_mode
        self.mount_points = mount_points
        self.emit = emit
        self.batch_rows = batch_rows
        self.cols = FileColumns()
        self.errors: list[dict[str, Any]] = []

    def flush(self) -> None:
        if len(self.cols):
            self.emit(self.cols.take())

    def _error(self, res: LayerResult, rel: bytes, op: str, exc: BaseException, msg: str = "") -> None:
        res.walk_errors += 1
        obj = os.path.join(self.rel_prefix, show_bytes(os.path.join(res.layer_id.encode(errors="surrogateescape"),
                                                                   rel))[0]) if rel else \
            os.path.join(self.rel_prefix, res.layer_id)
        self.errors.append(error_row("walk", obj, op, exc, msg))

    def walk(self, name: bytes) -> LayerResult:
        layer_id = show_bytes(name)[0]
        res = LayerResult(layer_id)
        top = os.path.join(self.overlay_dir, name)
        try:
            root_st = os.lstat(top)
        except FileNotFoundError as e:
            res.walk_status = "vanished"
            self._error(res, b"", "lstat", e, "vanished before it could be walked")
            return res
        except OSError as e:
            res.walk_status = "error"
            self._error(res, b"", "lstat", e)
            return res
        res.entry_type = type_char(root_st.st_mode)
        res.dir_inode, res.dir_mtime_ns, res.dir_ctime_ns = root_st.st_ino, root_st.st_mtime_ns, root_st.st_ctime_ns
        seen: set[int] = set()
        root_dev = root_st.st_dev
        top_is_mount = top in self.mount_points
        self._add(res, layer_id, b".", top, root_st, seen, mount_point=top_is_mount, count_space=True)
        if not stat.S_ISDIR(root_st.st_mode) or top_is_mount:
            self.flush_if_full()
            return res
        stack: list[tuple[bytes, bytes]] = [(top, b"")]
        while stack:
            dpath, drel = stack.pop()
            try:
                it = os.scandir(dpath)
            except OSError as e:
                if drel == b"":
                    res.walk_status = "vanished" if e.errno == errno_mod.ENOENT else "error"
                self._error(res, drel, "scandir", e)
                continue
            with it:
                while True:
                    try:
                        entry = next(it)
                    except StopIteration:
                        break
                    except OSError as e:
                        self._error(res, drel, "readdir", e)
                        break
                    rel = drel + b"/" + entry.name if drel else entry.name
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as e:
                        msg = "vanished during the walk" if e.errno == errno_mod.ENOENT else ""
                        self._error(res, rel, "lstat", e, msg)
                        continue
                    if drel == b"":
                        self._note_marker(res, entry.name, entry.path, st)
                    is_mount = False
                    if stat.S_ISDIR(st.st_mode):
                        is_mount = st.st_dev != root_dev or entry.path in self.mount_points
                        if not is_mount:
                            stack.append((entry.path, rel))
                    # du -x does not count entries on another device; find -xdev still lists them.
                    self._add(res, layer_id, rel, entry.path, st, seen, mount_point=is_mount,
                              count_space=st.st_dev == root_dev)
                    if len(self.cols) >= self.batch_rows:
                        self.flush()
        if res.walk_errors and res.walk_status == "ok":
            res.walk_status = "partial"
        self.flush_if_full()
        return res

    def flush_if_full(self) -> None:
        if len(self.cols) >= self.batch_rows:
            self.flush()

    def _note_marker(self, res: LayerResult, name: bytes, path: bytes, st: os.stat_result) -> None:
        marker = _MARKERS.get(name)
        if marker is None:
            return
        res.markers[marker] = True
        try:
            if marker == "diff":
                res.diff_mtime_ns, res.diff_ctime_ns = st.st_mtime_ns, st.st_ctime_ns
            elif marker == "link" and stat.S_ISREG(st.st_mode):
                res.link_mtime_ns, res.link_ctime_ns = st.st_mtime_ns, st.st_ctime_ns
                res.link_id = show_bytes(_read_small(path, 256).strip())[0]
            elif marker == "lower" and stat.S_ISREG(st.st_mode):
                res.lower = show_bytes(_read_small(path).strip())[0]
        except (OSError, ValueError) as e:
            self._error(res, name, "read", e)

    def _add(self, res: LayerResult, layer_id: str, rel: bytes, path: bytes, st: os.stat_result, seen: set[int],
             mount_point: bool, count_space: bool) -> None:
        c = self.cols.cols
        mode = st.st_mode
        text, raw = show_bytes(rel)
        kind = type_char(mode)
        c["layer_id"].append(layer_id)
        c["path"].append(text)
        c["path_raw"].append(raw)
        c["type"].append(kind)
        c["size"].append(st.st_size)
        c["allocated"].append(st.st_blocks * 512)
        c["inode"].append(st.st_ino)
        c["dev"].append(st.st_dev)
        c["nlink"].append(st.st_nlink)
        c["mode"].append(mode)
        c["uid"].append(st.st_uid)
        c["gid"].append(st.st_gid)
        c["mtime_ns"].append(st.st_mtime_ns)
        c["ctime_ns"].append(st.st_ctime_ns)
        c["whiteout"].append(kind == "c" and st.st_rdev == 0)
        c["mount_point"].append(mount_point)
        opaque = False
        target = None
        digest = None
        if kind == "d" and not mount_point:
            opaque = self._opaque(res, rel, path)
        elif kind == "l":
            try:
                target = show_bytes(os.readlink(path))[0]
            except OSError as e:
                self._error(res, rel, "readlink", e)
        elif kind == "f" and self.hash_mode != "none":
            try:
                digest = content_hash(path, st, self.hash_mode)
            except (OSError, ValueError) as e:
                self._error(res, rel, "hash", e)
        c["opaque"].append(opaque)
        c["link_target"].append(target)
        c["hash"].append(digest)
        res.file_count += 1
        if count_space and not mount_point:
            if st.st_nlink > 1 and kind != "d":
                if st.st_ino in seen:
                    return
                seen.add(st.st_ino)
            res.apparent_bytes += st.st_size
            res.allocated_bytes += st.st_blocks * 512

    def _opaque(self, res: LayerResult, rel: bytes, path: bytes) -> bool:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno_mod.ENOTSUP, errno_mod.ENOENT):
                self._error(res, rel, "listxattr", e)
            return False
        for attr in _OPAQUE_XATTRS:
            if attr in names:
                try:
                    return os.getxattr(path, attr, follow_symlinks=False) == b"y"
                except OSError:
                    return False
        return False
