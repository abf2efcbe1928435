"""The filesystem walk of overlay2 entries: lstat only, never follows a symlink, never crosses a mount.

Design (forensic hygiene and scale):
- names are handled as bytes end to end, so names that are not UTF-8 survive (``path_raw``);
- every call names an entry relative to an open directory fd (``openat``/``fstatat``/``readlinkat``), never
  by an absolute path: depth is unlimited (a 10,000-deep chain is ~20 kB of path, five times PATH_MAX), and
  a directory is listed only through an fd opened with O_NOFOLLOW|O_DIRECTORY whose (st_dev, st_ino) is the
  one lstat saw, so a directory swapped for a symlink (or another directory) in between is never followed;
  it becomes an errors row;
- directories on another device, or listed as mount points in mountinfo, are recorded and not descended
  (``merged/`` of a running container is an overlay mount with its own st_dev);
- content is read only for regular files, opened with O_NOFOLLOW|O_NONBLOCK (and O_NOATIME when allowed),
  and only after fstat confirms it is the same regular inode that lstat saw;
- per-entry failures become ``errors`` rows; the walk continues.

Speed: the walk is syscall-bound and, in CPython, bound by per-entry interpreter work. The inner loop does
only ``scandir`` -> ``lstat`` -> two appends -> a mode test; every column is built later from the kept
``stat_result`` objects by C-level ``map`` into typed ``array`` buffers, which become Arrow arrays without a
copy (:func:`to_record_batch`). The walker works on *tasks*: a whole overlay2 entry, or subtrees of one that
another walker gave away (:meth:`TreeWalker.donate`), so one huge layer keeps every worker busy.
Per-layer totals stay du-exact because they are summed from the rows by :class:`LayerTotals` (hard-linked
inodes once per layer, whichever task saw them).

This module imports neither pyarrow nor xxhash at import time: it is all a walk worker process loads
(:func:`worker_main`), which keeps each worker at about 10 MB.
"""

from __future__ import annotations

import errno as errno_mod
import os
import stat
from array import array
from itertools import accumulate, compress, islice
from operator import attrgetter

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a worker 1.3 MB
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


    # The rows of one task of one layer, as a plain tuple (cheap to pickle between processes):
    # (layer_id, n, path bytes, path end offsets 'i', 10 stat columns as in _STAT_COLS, root_dev,
    #  opaque rows, mount-point rows, whiteout rows, [(row, link target text)], [(row, digest)],
    #  apparent bytes, allocated bytes, {inode: (size, allocated)} of hard-linked non-dirs)
    RawBatch = tuple[Any, ...]

HASH_MODES = ("none", "partial", "full")
PARTIAL_CHUNK = 64 * 1024
_READ_CHUNK = 1 << 20
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A directory whose parent fd was closed is opened from the layer's top fd, this many bytes of relative path
# per openat (PATH_MAX is 4096 with the NUL; a name is at most 255 bytes).
_PATH_CHUNK = 3800
# Directory fds a walker keeps open for dirs whose subdirs are still to be listed (a fd per dir on the
# current path that has unlisted subdirs, usually a handful); past it, subdirs are opened from the top.
MAX_OPEN_DIRS = 128
# Path bytes per pack and per batch: paths are normally ~60 bytes, but a 10,000-deep chain has 20 kB paths
# (and the rows' paths grow with depth squared): packs and batches close early rather than grow without bound
# (and a batch's int32 path offsets never overflow).
PACK_BYTES = 4 << 20
BATCH_BYTES = 16 << 20
_MARKERS = {"diff": "diff", "link": "link", "lower": "lower", "work": "work", "merged": "merged",
            "committed": "committed"}
_FS = ("utf-8", "surrogateescape")  # how os.scandir(fd) turns name bytes into str, losslessly
_S_IFMT, _S_IFDIR, _S_IFLNK, _S_IFREG, _S_IFCHR = 0o170000, 0o040000, 0o120000, 0o100000, 0o020000
# Columns taken from stat_result, in the order of RawBatch fields 4..13, with their array type codes.
_STAT_COLS = (("st_mode", "I"), ("st_ino", "q"), ("st_dev", "q"), ("st_nlink", "I"), ("st_uid", "I"),
              ("st_gid", "I"), ("st_size", "q"), ("st_blocks", "q"), ("st_mtime_ns", "q"), ("st_ctime_ns", "q"))
_GETTERS = tuple((attrgetter(name), code) for name, code in _STAT_COLS)
TYPE_CODES = ("f", "d", "l", "c", "b", "p", "s", "?")  # dictionary of the files.type column
# st_mode >> 12 -> index into TYPE_CODES
_TYPE_BY_FMT = [7, 5, 3, 7, 1, 7, 4, 7, 0, 7, 2, 7, 6, 7, 7, 7]


def type_char(mode: int) -> str:
    return TYPE_CODES[_TYPE_BY_FMT[(mode & _S_IFMT) >> 12]]


def show_bytes(raw: bytes) -> tuple[str, bytes | None]:
    """(text, raw-or-None): text is exact for UTF-8 names; otherwise bytes show as \\xNN and raw is kept."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), raw


def error_row(source: str, obj: str, op: str, exc: BaseException | None,
              message: str | None = "") -> dict[str, Any]:
    err = exc.errno if isinstance(exc, OSError) else None
    if not message:
        message = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    return {"source": source, "object": obj, "op": op, "errno": err, "message": message}


def _open_noatime(path: str | bytes, flags: int, dir_fd: int | None) -> int:
    """open(2) with O_NOATIME (reading must not change atimes: they are evidence), without it when the
    kernel refuses it (O_NOATIME needs ownership or CAP_FOWNER)."""
    try:
        return os.open(path, flags | os.O_NOATIME, dir_fd=dir_fd)
    except PermissionError as e:
        if e.errno != errno_mod.EPERM:
            raise
        return os.open(path, flags, dir_fd=dir_fd)


def content_hash(path: str | bytes, st: os.stat_result, mode: str, dir_fd: int | None = None) -> bytes:
    """xxh3_128 of a regular file (``path`` relative to ``dir_fd`` when given): partial = size + first and
    last 64 KiB (whole file when small); full = the whole content. Raises OSError; ValueError when the path
    is no longer the inode lstat saw."""
    fd = _open_noatime(path, _OPEN_FLAGS, dir_fd)
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino or fst.st_dev != st.st_dev:
            raise ValueError("replaced by another file between lstat and open")
        return digest_fd(fd, fst.st_size, mode)
    finally:
        os.close(fd)


def digest_fd(fd: int, size: int, mode: str) -> bytes:
    """The content hash of the regular file open as ``fd`` (at offset 0; ``size`` from its fstat): the part
    of :func:`content_hash` after the checks, which the native walk calls back into. Raises OSError."""
    import xxhash  # only when hashing: walk workers stay small otherwise

    h = xxhash.xxh3_128()
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
    return bytes(h.digest())


class LayerResult:
    """What the walk learnt about one overlay2 entry (the parent adds lower resolution and mounts).
    A plain class, not a dataclass: ``dataclasses`` would cost each walk worker 1.7 MB."""

    FIELDS = ("layer_id", "entry_type", "markers", "link_id", "lower", "file_count", "apparent_bytes",
              "allocated_bytes", "dir_inode", "dir_mtime_ns", "dir_ctime_ns", "diff_mtime_ns", "diff_ctime_ns",
              "link_mtime_ns", "link_ctime_ns", "walk_status", "walk_errors")
    __slots__ = FIELDS

    def __init__(self, layer_id: str, entry_type: str = "?", markers: dict[str, bool] | None = None,
                 link_id: str | None = None, lower: str | None = None, file_count: int = 0,
                 apparent_bytes: int = 0, allocated_bytes: int = 0, dir_inode: int | None = None,
                 dir_mtime_ns: int | None = None, dir_ctime_ns: int | None = None,
                 diff_mtime_ns: int | None = None, diff_ctime_ns: int | None = None,
                 link_mtime_ns: int | None = None, link_ctime_ns: int | None = None, walk_status: str = "ok",
                 walk_errors: int = 0) -> None:
        self.layer_id = layer_id
        self.entry_type = entry_type
        self.markers = {} if markers is None else markers
        self.link_id = link_id
        self.lower = lower
        self.file_count = file_count
        self.apparent_bytes = apparent_bytes
        self.allocated_bytes = allocated_bytes
        self.dir_inode = dir_inode
        self.dir_mtime_ns = dir_mtime_ns
        self.dir_ctime_ns = dir_ctime_ns
        self.diff_mtime_ns = diff_mtime_ns
        self.diff_ctime_ns = diff_ctime_ns
        self.link_mtime_ns = link_mtime_ns
        self.link_ctime_ns = link_ctime_ns
        self.walk_status = walk_status
        self.walk_errors = walk_errors

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerResult) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"LayerResult({self.as_dict()!r})"


def _read_small(path: str | bytes, dir_fd: int | None = None, limit: int = 65536) -> bytes:
    fd = _open_noatime(path, _OPEN_FLAGS, dir_fd)  # the link and lower files keep their atime
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


class _Dir:
    """A listed directory with subdirs waiting on the stack: its fd (-1 when not kept), how many subdirs wait,
    and its path prefix (``"a/b/"``, relative to the layer dir). The prefix is stored when short and every
    _PREFIX_EVERY levels; otherwise it is rebuilt from the parents' names, so that a deep tree whose every level
    keeps a sibling waiting costs memory linear in depth, not quadratic."""

    __slots__ = ("depth", "fd", "name", "parent", "pending", "prefix")

    def __init__(self, fd: int, prefix: str | None, parent: _Dir | None, name: str, depth: int) -> None:
        self.fd = fd
        self.pending = 0
        self.prefix = prefix
        self.parent = parent
        self.name = name
        self.depth = depth

    def path(self) -> str:
        if self.prefix is not None:
            return self.prefix
        names = []
        d: _Dir = self
        while d.prefix is None:
            names.append(d.name)
            assert d.parent is not None  # the top's prefix is ""
            d = d.parent
        names.reverse()
        return d.prefix + "/".join(names) + "/"


_PREFIX_FLAT = 2048
_PREFIX_EVERY = 64
_DONATE_BYTES = 1 << 20  # path bytes given away at a time (deep dirs are not worth another process)


class TreeWalker:
    """Walks overlay2 entries (or subtrees of one) and hands rows to ``sink`` as RawBatch tuples of about
    ``batch_rows`` rows. ``stat_result`` objects (~500 bytes each) are kept only for ``pack_rows`` entries,
    then packed into typed arrays (~130 bytes a row), so a worker stays small.

    Directories still to list are on ``stack`` as (parent :class:`_Dir`, name, inode), so a subdir is opened
    with openat on its parent's fd. At most ``max_open`` parent fds stay open; the subdirs of the others are
    opened by climbing with ".." from the dir listed last, and dirs given away by another walker from the
    layer's top fd (a PATH_MAX-sized chunk of the path per openat). Whichever way, the opened fd must be the
    (st_dev, st_ino) that lstat saw."""

    def __init__(self, overlay_dir: bytes, rel_prefix: str, hash_mode: str, mount_points: frozenset[bytes],
                 sink: Callable[[RawBatch], None], batch_rows: int = 16384, pack_rows: int = 2048,
                 max_open: int = MAX_OPEN_DIRS) -> None:
        self.overlay_dir = overlay_dir
        self.rel_prefix = rel_prefix  # how paths appear in errors rows, e.g. "overlay2"
        self.hash_mode = hash_mode
        self.mount_points = mount_points
        self.sink = sink
        self.batch_rows = max(1, batch_rows)
        self.pack_rows = max(1, min(pack_rows, self.batch_rows))
        self.max_open = max(0, max_open)
        self.errors: list[dict[str, Any]] = []
        self.stack: list[tuple[_Dir, str, int]] = []
        self.top = b""
        self.top_str = ""
        self.top_fd = -1
        self.open_dirs = 0  # parent fds held by nodes
        # The dir listed last whose fd no node keeps (and its "rel/"): subdirs of parents past max_open are
        # reached by climbing from it with ".."
        self.last_fd = -1
        self.last_drel = ""
        # xattrs have no *at call: a subdir's are read through /proc/self/fd/<parent fd>/<name>, or without
        # /proc through an fd of the subdir itself
        self.proc_fd = os.path.isdir("/proc/self/fd")
        self.mps_str = frozenset(os.fsdecode(m) for m in mount_points)
        self.should_donate: Callable[[], bool] = lambda: False
        self.donate_to: Callable[[list[tuple[str, int]]], None] = lambda dirs: None
        # When set, walk_layer lists only the layer dir itself and hands its subdirs, as (relative path,
        # inode), and the layer dir's inode to this (the native walk lists them)
        self.handoff: Callable[[list[tuple[str, int]], int], None] | None = None
        self.root_dev = 0
        self._new_pack()
        self._new_batch()

    def _new_pack(self) -> None:
        """Rows since the last pack, with row numbers local to the pack."""
        self.names: list[str] = []  # names as os.scandir(fd) gives them: str, undecodable bytes escaped
        self.sts: list[os.stat_result] = []
        self.runs: list[tuple[str, int]] = []
        self.opaque: list[int] = []
        self.mounts: list[int] = []
        self.whiteouts: list[int] = []
        self.links: list[tuple[int, str]] = []
        self.hashes: list[tuple[int, bytes]] = []
        self.pack_bytes = 0  # about: the dir prefixes of the pack's paths

    def _new_batch(self) -> None:
        self.b_n = 0
        self.b_bytes = 0
        self.dirs = 0  # rows of the batch that are directories
        self.b_paths: list[bytes] = []
        self.b_offs = array("i", [0])
        self.b_cols = [array(code) for _, code in _GETTERS]
        self.b_sparse: tuple[list[Any], ...] = ([], [], [], [], [])

    # --- tasks ---------------------------------------------------------------------------------------------

    def _begin(self, name: bytes) -> None:
        """A task on ``overlay2/<name>``: its names and a fresh result."""
        self.layer_id = show_bytes(name)[0]
        self.layer_bytes = name
        self.top = os.path.join(self.overlay_dir, name)
        self.top_str = os.fsdecode(self.top)
        self.res = LayerResult(self.layer_id)

    def walk_layer(self, name: bytes) -> tuple[LayerResult, int]:
        """The whole entry ``overlay2/<name>``: its own row ('.'), markers, then everything below.
        Returns the result (totals are the caller's, from the rows) and the root device."""
        self._begin(name)
        res, top = self.res, self.top
        try:
            root_st = os.lstat(top)
        except FileNotFoundError as e:
            res.walk_status = "vanished"
            self._error(b"", "lstat", e, "vanished before it could be walked")
            return res, 0
        except OSError as e:
            res.walk_status = "error"
            self._error(b"", "lstat", e)
            return res, 0
        res.entry_type = type_char(root_st.st_mode)
        res.dir_inode, res.dir_mtime_ns, res.dir_ctime_ns = root_st.st_ino, root_st.st_mtime_ns, root_st.st_ctime_ns
        self.root_dev = root_st.st_dev
        top_is_mount = top in self.mount_points
        self.names.append(".")
        self.sts.append(root_st)
        self.runs.append(("", 1))
        fmt = root_st.st_mode & _S_IFMT
        self.dirs += fmt == _S_IFDIR
        if top_is_mount:
            self.mounts.append(0)
        elif fmt == _S_IFDIR:
            self._check_opaque(0, "", top)
        elif fmt == _S_IFLNK:
            self._readlink(0, "", top, None)
        elif fmt == _S_IFREG and self.hash_mode != "none":
            self._hash(0, "", top, root_st, None)
        elif fmt == _S_IFCHR and root_st.st_rdev == 0:
            self.whiteouts.append(0)
        if fmt == _S_IFDIR and not top_is_mount:
            try:
                if self._open_top(root_st.st_ino):
                    self._enter(os.dup(self.top_fd), "", None, "", top=True)
                    if self.handoff is None:
                        self._drain()
                    elif self.stack:  # the native walk lists the rest (snapper.nwalk)
                        self.handoff([(d.path() + name, ino) for d, name, ino in self.stack], root_st.st_ino)
            finally:
                self._release()
        self.flush()
        return res, self.root_dev

    def walk_dirs(self, name: bytes, root_dev: int, dirs: list[tuple[str, int]]) -> None:
        """Subtrees of ``overlay2/<name>`` given away by another walker, as (path relative to it, inode): list
        each dir and below (their own rows were written by the walker that found them)."""
        self._begin(name)
        self.root_dev = root_dev
        try:
            if self._open_top(None):
                for rel, ino in reversed(dirs):  # no parent fd: each is opened from the top
                    head, _, base = rel.rpartition("/")
                    given = _Dir(-1, head + "/" if head else "", None, "", 0)
                    given.pending = 1
                    self.stack.append((given, base, ino))
                self._drain()
            else:
                for rel, _ in dirs:
                    self._error(rel, "scandir", None, "its layer dir vanished during the walk")
        finally:
            self._release()
        self.flush()

    def donate(self) -> list[tuple[str, int]]:
        """Give away the shallowest half of the dirs not yet listed (the biggest subtrees, most likely), as
        (relative path, inode): another process cannot use this one's fds."""
        stack = self.stack
        out: list[tuple[str, int]] = []
        size = 0
        for d, name, ino in stack[:(len(stack) + 1) // 2]:
            rel = d.path() + name
            size += len(rel)
            if size > _DONATE_BYTES and out:
                break
            out.append((rel, ino))
            self._done_with(d)
        del stack[:len(out)]  # in place: the loop holds this list
        return out

    # --- directory fds ---------------------------------------------------------------------------------------

    def _open_top(self, ino: int | None) -> bool:
        """Open the layer dir (an absolute path, short: overlay_dir comes from the data root) as ``top_fd``;
        it must be the directory lstat saw (``ino``) on the root device."""
        try:
            fd = _open_noatime(self.top, _DIR_FLAGS, None)
        except OSError as e:
            if ino is not None:
                self.res.walk_status = "vanished" if e.errno == errno_mod.ENOENT else "error"
                self._error("", "scandir", e)
            return False
        st = os.fstat(fd)
        if st.st_dev != self.root_dev or (ino is not None and st.st_ino != ino):
            os.close(fd)
            if ino is not None:
                self.res.walk_status = "error"
                self._error("", "scandir", None, "replaced between lstat and open: not listed")
            return False
        self.top_fd = fd
        return True

    def _release(self) -> None:
        """Close every fd of the task (only an exception leaves any but the top one open)."""
        for d, _, _ in self.stack:
            if d.fd >= 0:
                os.close(d.fd)
                d.fd = -1
        self.stack.clear()
        self.open_dirs = 0
        if self.last_fd >= 0:
            os.close(self.last_fd)
            self.last_fd = -1
        if self.top_fd >= 0:
            os.close(self.top_fd)
            self.top_fd = -1

    def _done_with(self, d: _Dir) -> None:
        """One subdir of ``d`` was opened or given away: close the parent's fd after its last one."""
        d.pending -= 1
        if d.pending == 0 and d.fd >= 0:
            os.close(d.fd)
            d.fd = -1
            self.open_dirs -= 1

    def _open_sub(self, rel: str, d: _Dir, name: str, ino: int) -> int:
        """An fd of the dir ``rel`` (or -1 and an errors row): through its parent's fd when still open, else
        reopened. Never follows a symlink at the end; checks the inode whichever way it was reached."""
        try:
            fd = _open_noatime(name, _DIR_FLAGS, d.fd) if d.fd >= 0 else self._reopen(rel, name, ino)
        except OSError as e:
            msg = ""
            if e.errno == errno_mod.ENOENT:
                msg = "vanished during the walk"
            elif e.errno in (errno_mod.ENOTDIR, errno_mod.ELOOP):
                msg = "no longer a directory (replaced between lstat and open): not listed"
            self._error(rel, "scandir", e, msg)
            return -1
        finally:
            self._done_with(d)
        st = os.fstat(fd)
        if st.st_ino != ino or st.st_dev != self.root_dev:
            os.close(fd)
            self._error(rel, "scandir", None, "replaced by another directory or a symlink between lstat and "
                                              "open: not listed")
            return -1
        return fd

    def _reopen(self, rel: str, name: str, ino: int) -> int:
        """The parent's fd was not kept (past max_open): climb with ".." from the dir listed last when it is
        below the parent (depth-first, that is nearly always one or two levels), else come down from the top.
        So a deep comb of dirs that each keep a sibling waiting costs one or two ".." per dir, not its depth."""
        last = self.last_drel[:-1]
        parent = rel.rpartition("/")[0]
        if self.last_fd >= 0 and (not parent or last == parent or last.startswith(parent + "/")):
            ups = (last.count("/") + 1 if last else 0) - (parent.count("/") + 1 if parent else 0)
            fd = self.last_fd
            try:
                while ups > 0:  # at most 1,000 ".." per openat (PATH_MAX)
                    step = min(ups, 1000)
                    up = os.open("/".join([".."] * step), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                    if fd != self.last_fd:
                        os.close(fd)
                    fd, ups = up, ups - step
                sub = _open_noatime(name, _DIR_FLAGS, fd)
            except OSError:
                sub = -1
            finally:
                if fd != self.last_fd:
                    os.close(fd)
            if sub >= 0:
                if os.fstat(sub).st_ino == ino:
                    return sub
                os.close(sub)  # a dir on the way was moved: the top decides
        return self._open_from_top(rel)

    def _open_from_top(self, rel: str) -> int:
        """openat from the top fd, at most _PATH_CHUNK bytes of path per call (O_PATH for the steps)."""
        parts = rel.encode(*_FS).split(b"/")
        chunks: list[bytes] = []
        start = 0
        size = -1
        for i, part in enumerate(parts):
            if size + 1 + len(part) > _PATH_CHUNK and i > start:
                chunks.append(b"/".join(parts[start:i]))
                start, size = i, -1
            size += 1 + len(part)
        chunks.append(b"/".join(parts[start:]))
        fd = self.top_fd
        try:
            for chunk in chunks[:-1]:
                step = os.open(chunk, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                if fd != self.top_fd:
                    os.close(fd)
                fd = step
            return _open_noatime(chunks[-1], _DIR_FLAGS, fd)
        finally:
            if fd != self.top_fd:
                os.close(fd)

    # --- the loop --------------------------------------------------------------------------------------------

    def _drain(self) -> None:
        stack = self.stack
        while stack:
            if len(stack) > 1 and self.should_donate():
                self.donate_to(self.donate())
            d, name, ino = stack.pop()
            rel = (d.prefix if d.prefix is not None else d.path()) + name
            fd = self._open_sub(rel, d, name, ino)
            if fd >= 0:
                self._enter(fd, rel + "/", d, name)

    def _enter(self, fd: int, drel: str, parent: _Dir | None, name: str, top: bool = False) -> None:
        """List the dir open as ``fd`` (owned from here on); keep the fd while its subdirs wait on the stack."""
        depth = parent.depth + 1 if parent is not None else 0
        node = _Dir(fd, drel if len(drel) < _PREFIX_FLAT or depth % _PREFIX_EVERY == 0 else None, parent, name,
                    depth)
        try:
            self._list(fd, node, drel, top)
        finally:
            if node.pending and self.open_dirs < self.max_open:
                self.open_dirs += 1
            else:  # not kept by its node: the next reopened dir may climb from here (still one close per dir)
                node.fd = -1
                if self.last_fd >= 0:
                    os.close(self.last_fd)
                self.last_fd, self.last_drel = fd, drel

    def _list(self, fd: int, node: _Dir, drel: str, top: bool) -> None:
        """One directory: every entry's row; subdirs go on the stack."""
        try:
            it = os.scandir(fd)
        except OSError as e:
            if top:
                self.res.walk_status = "vanished" if e.errno == errno_mod.ENOENT else "error"
            self._error(drel.rstrip("/"), "scandir", e)
            return
        stack_append = self.stack.append
        listxattr = os.listxattr
        hashing = self.hash_mode != "none"
        mps = self.mps_str
        root_dev = self.root_dev
        abs_dir = self.top_str + "/" + drel if mps else ""  # only to compare with mountinfo's mount points
        xattr_dir = f"/proc/self/fd/{fd}/" if self.proc_fd else ""
        dirs = subdirs = 0
        with it:
            while True:
                names, sts = self.names, self.sts
                names_append, sts_append = names.append, sts.append
                room = self.pack_rows - len(names)
                if len(drel) > 1024:  # deep: fewer rows per pack (the prefix repeats in every path)
                    room = min(room, max(1, (PACK_BYTES - self.pack_bytes) // (len(drel) + 256)))
                start = len(names)
                skipped = 0
                try:
                    for entry in islice(it, room):
                        name = entry.name
                        try:
                            st = entry.stat(follow_symlinks=False)  # fstatat(fd, name, AT_SYMLINK_NOFOLLOW)
                        except OSError as e:
                            msg = "vanished during the walk" if e.errno == errno_mod.ENOENT else ""
                            self._error(drel + name, "lstat", e, msg)
                            skipped += 1
                            continue
                        fmt = st.st_mode & _S_IFMT
                        names_append(name)
                        sts_append(st)
                        if fmt == _S_IFDIR:
                            dirs += 1
                            if st.st_dev != root_dev or (mps and abs_dir + name in mps):
                                self.mounts.append(len(names) - 1)
                            else:
                                if xattr_dir:
                                    xpath = xattr_dir + name
                                    try:
                                        if listxattr(xpath, follow_symlinks=False):  # rare: look closer
                                            self._check_opaque(len(names) - 1, drel + name, xpath)
                                    except OSError:
                                        self._check_opaque(len(names) - 1, drel + name, xpath)
                                else:  # no /proc: through an fd of the dir itself
                                    self._check_opaque_at(len(names) - 1, drel + name, fd, name, st)
                                stack_append((node, name, st.st_ino))
                                subdirs += 1
                        elif fmt == _S_IFLNK:
                            self._readlink(len(names) - 1, drel + name, name, fd)
                        elif fmt == _S_IFREG:
                            if hashing:
                                self._hash(len(names) - 1, drel + name, name, st, fd)
                        elif fmt == _S_IFCHR and st.st_rdev == 0:
                            self.whiteouts.append(len(names) - 1)
                        if top:
                            self._note_marker(name, fd, st)
                except OSError as e:
                    self._error(drel.rstrip("/"), "readdir", e)
                    if len(names) > start:
                        self.runs.append((drel, len(names) - start))
                    break
                finally:
                    self.dirs += dirs
                    node.pending += subdirs
                    dirs = subdirs = 0
                if len(names) > start:  # (an empty dir adds no run: its prefix is not kept)
                    self.runs.append((drel, len(names) - start))
                    self.pack_bytes += len(drel) * (len(names) - start)
                if len(names) - start + skipped < room:
                    break  # the directory is exhausted
                self._pack()  # a full pack, maybe in the middle of a huge directory
                if self.b_n >= self.batch_rows or self.b_bytes >= BATCH_BYTES:
                    self.flush()

    def _pack(self) -> None:
        """Move the rows of the current pack into the batch's typed arrays; free the stat_results."""
        sts = self.sts
        if not sts:
            return
        names = self.names
        i = 0
        rels: list[str] = []
        for prefix, count in self.runs:
            rels += map(prefix.__add__, names[i:i + count]) if prefix else names[i:i + count]
            i += count
        text = "".join(rels)
        blob = text.encode(*_FS)
        # Same length: every char is one byte (ASCII, or an escaped undecodable byte), so are the lengths.
        lens = map(len, rels) if len(blob) == len(text) else (len(r.encode(*_FS)) for r in rels)
        offs = self.b_offs
        offs += array("i", accumulate(lens, initial=offs[-1]))[1:]
        self.b_paths.append(blob)
        self.b_bytes += len(blob)
        for col, (get, code) in zip(self.b_cols, _GETTERS, strict=True):
            col += array(code, list(map(get, sts)))  # measured 30% faster than col.extend(map(...))
        base = self.b_n
        for dst, src in zip(self.b_sparse, (self.opaque, self.mounts, self.whiteouts), strict=False):
            dst += [base + r for r in src]
        self.b_sparse[3].extend((base + r, v) for r, v in self.links)
        self.b_sparse[4].extend((base + r, v) for r, v in self.hashes)
        self.b_n += len(sts)
        self._new_pack()

    def flush(self) -> None:
        """Send the rows walked so far (the end of a task, or a full batch)."""
        self._pack()
        if self.b_n == 0:
            return
        batch = (self.layer_id, self.b_n, b"".join(self.b_paths), self.b_offs, *self.b_cols, self.root_dev,
                 *self.b_sparse, *self._totals())
        self._new_batch()
        self.sink(batch)

    def _totals(self) -> tuple[int, int, dict[int, tuple[int, int]]]:
        """du-style sums of the batch, at C speed in the common case: entries on another device and mount
        points are not counted (du -x); hard-linked non-dirs are left out and returned by inode, so that
        LayerTotals counts each once per layer whichever batch or task saw it."""
        n, root_dev = self.b_n, self.root_dev
        mode, ino, dev, nlink, size, blocks = (self.b_cols[i] for i in (0, 1, 2, 3, 6, 7))
        apparent, used = sum(size), sum(blocks)
        skip = set(self.b_sparse[1])
        if dev.count(root_dev) != n:
            skip.update(compress(range(n), map(root_dev.__ne__, dev)))
        for i in skip:
            apparent -= size[i]
            used -= blocks[i]
        linked: dict[int, tuple[int, int]] = {}
        if nlink.count(1) + self.dirs != n:  # some non-dir has other links (dirs always do, except on btrfs)
            for i in compress(range(n), map((1).__lt__, nlink)):
                if mode[i] & _S_IFMT != _S_IFDIR and i not in skip:
                    apparent -= size[i]
                    used -= blocks[i]
                    linked.setdefault(ino[i], (size[i], blocks[i] * 512))
        return apparent, used * 512, linked

    # --- per-entry extras -------------------------------------------------------------------------------------

    def _error(self, rel: str | bytes, op: str, exc: BaseException | None, msg: str = "") -> None:
        layer = self.layer_bytes
        obj = show_bytes(os.path.join(layer, os.fsencode(rel)) if rel else layer)[0]
        self.errors.append(error_row("walk", f"{self.rel_prefix}/{obj}", op, exc, msg))

    def _note_marker(self, name: str, fd: int, st: os.stat_result) -> None:
        marker = _MARKERS.get(name)
        if marker is None:
            return
        res = self.res
        res.markers[marker] = True
        try:
            if marker == "diff":
                res.diff_mtime_ns, res.diff_ctime_ns = st.st_mtime_ns, st.st_ctime_ns
            elif marker == "link" and stat.S_ISREG(st.st_mode):
                res.link_mtime_ns, res.link_ctime_ns = st.st_mtime_ns, st.st_ctime_ns
                res.link_id = show_bytes(_read_small(name, fd, 256).strip())[0]
            elif marker == "lower" and stat.S_ISREG(st.st_mode):
                res.lower = show_bytes(_read_small(name, fd).strip())[0]
        except (OSError, ValueError) as e:
            self._error(name, "read", e)

    def _check_opaque_at(self, row: int, rel: str, dir_fd: int, name: str, st: os.stat_result) -> None:
        """Opaque flag of ``name`` in ``dir_fd`` without /proc: open it (O_NOFOLLOW|O_DIRECTORY, the inode
        lstat saw) and read its xattrs through that fd."""
        try:
            fd = _open_noatime(name, _DIR_FLAGS, dir_fd)
        except OSError as e:
            if e.errno != errno_mod.ENOENT:  # gone: its own listing says so
                self._error(rel, "listxattr", e)
            return
        try:
            fst = os.fstat(fd)
            if fst.st_ino == st.st_ino and fst.st_dev == st.st_dev:
                self._check_opaque(row, rel, fd)
        finally:
            os.close(fd)

    def _check_opaque(self, row: int, rel: str, path: str | bytes | int) -> None:
        """``path`` is a path (never followed at the end) or an fd of the dir."""
        nofollow = {} if isinstance(path, int) else {"follow_symlinks": False}
        try:
            names = os.listxattr(path, **nofollow)
        except OSError as e:
            if e.errno not in (errno_mod.ENOTSUP, errno_mod.ENOENT):
                self._error(rel, "listxattr", e)
            return
        for attr in _OPAQUE_XATTRS:
            if attr in names:
                try:
                    if os.getxattr(path, attr, **nofollow) == b"y":
                        self.opaque.append(row)
                except OSError:
                    pass
                return

    def _readlink(self, row: int, rel: str, path: str | bytes, dir_fd: int | None) -> None:
        try:  # bytes in, bytes out: the target exactly as stored
            self.links.append((row, show_bytes(os.readlink(os.fsencode(path), dir_fd=dir_fd))[0]))
        except OSError as e:
            self._error(rel, "readlink", e)

    def _hash(self, row: int, rel: str, path: str | bytes, st: os.stat_result, dir_fd: int | None) -> None:
        try:
            self.hashes.append((row, content_hash(path, st, self.hash_mode, dir_fd)))
        except (OSError, ValueError) as e:
            self._error(rel, "hash", e)
