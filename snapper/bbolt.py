"""A small, strictly read-only reader for bbolt (etcd-io/bbolt, BoltDB) database files.

Docker, BuildKit and containerd keep their metadata in bbolt files. This module reads such a file
into memory (never opening it for writing, never locking it, never mapping it) and walks the
B+tree from the current meta page. Every structural problem becomes a :class:`BoltError` with a
one-line message naming the file, the page and what is wrong; no other exception escapes for any
file content.

Format (all integers little-endian):

* The file is an array of ``page_size`` pages; page 0 and 1 are meta pages. The meta with the
  higher txid that validates (magic, version, FNV-1a 64 checksum) is current.
* Page header (16 bytes): ``id u64, flags u16, count u16, overflow u32``; a page spans
  ``overflow + 1`` pages.
* Leaf element (16 bytes): ``flags u32, pos u32, ksize u32, vsize u32``, ``pos`` relative to the
  element itself; flag 0x01 marks a nested bucket. Branch element: ``pos u32, ksize u32, pgid u64``.
* A nested bucket's value starts with ``root pgid u64, sequence u64``; ``root == 0`` means the
  bucket is inline and its (leaf) page follows inside the value.

Live databases: the owning daemon holds ``flock(LOCK_EX)``. :func:`read_consistent` copies the file
without locking and checks that the meta pages did not change during the copy.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

from snapper.errors import SnapperError

__all__ = [
    "BoltDB",
    "BoltError",
    "Bucket",
    "Meta",
    "PyTree",
    "open_db",
    "read_consistent",
    "to_python",
    "walk",
]

MAGIC = 0xED0CDAED
VERSION = 2

PAGE_HEADER_SIZE = 16
META_SIZE = 64
META_CHECKSUMMED = 56
ELEMENT_SIZE = 16
BUCKET_HEADER_SIZE = 16

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10

BUCKET_LEAF_FLAG = 0x01
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF

#: Bound for B+tree height and for bucket nesting.
MAX_DEPTH = 64

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF

_PAGE_HEADER = struct.Struct("<QHHI")
_META = struct.Struct("<IIIIQQQQQQ")
_LEAF_ELEM = struct.Struct("<IIII")
_BRANCH_ELEM = struct.Struct("<IIQ")
_BUCKET_HEADER = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")

_COMMON_PAGE_SIZES = (4096, 8192, 16384, 32768, 65536, 1024, 2048)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_O_NOATIME: int = getattr(os, "O_NOATIME", 0)

PyTree: TypeAlias = dict[bytes, "bytes | PyTree"]


class BoltError(SnapperError):
    """The file is not a readable bbolt database (or could not be read). One-line message."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(_one_line(name), _one_line(problem))


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit hash, as bbolt uses for the meta checksum."""
    h = _FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV64_PRIME) & _MASK64
    return h


def _show_key(key: bytes) -> str:
    text = repr(key)
    return text if len(text) <= 48 else text[:45] + "..."


def _show_path(path: tuple[bytes, ...]) -> str:
    return "root" if not path else "/".join(_show_key(p) for p in path)


# --------------------------------------------------------------------------------------------- metas


@dataclass(frozen=True)
class Meta:
    """One decoded, validated meta page."""

    index: int
    page_size: int
    flags: int
    root: int
    sequence: int
    freelist: int
    pgid: int
    txid: int
    checksum: int


def _parse_meta(data: bytes, page_offset: int, index: int) -> tuple[Meta | None, str]:
    """Decode and validate the meta struct of the page at ``page_offset``; (meta, "") or (None, why)."""
    off = page_offset + PAGE_HEADER_SIZE
    if off + META_SIZE > len(data):
        return None, f"truncated (file has {len(data)} bytes, meta needs {off + META_SIZE})"
    magic, version, page_size, flags, root, seq, freelist, pgid, txid, checksum = _META.unpack_from(data, off)
    if magic != MAGIC:
        return None, f"bad magic 0x{magic:08x}"
    if version != VERSION:
        return None, f"unsupported version {version}"
    computed = fnv1a64(data[off : off + META_CHECKSUMMED])
    if computed != checksum:
        return None, f"checksum mismatch (stored 0x{checksum:016x}, computed 0x{computed:016x})"
    if page_size < PAGE_HEADER_SIZE + META_SIZE:
        return None, f"implausible page size {page_size}"
    return Meta(index, page_size, flags, root, seq, freelist, pgid, txid, checksum), ""


def _find_metas(name: str, data: bytes) -> tuple[Meta, Meta | None, Meta | None]:
    """Return (selected, meta0, meta1) following bbolt's DB.meta() rule."""
    if len(data) < PAGE_HEADER_SIZE + META_SIZE:
        raise BoltError(name, f"too small for a bbolt file ({len(data)} bytes)")
    meta0, why0 = _parse_meta(data, 0, 0)
    meta1: Meta | None = None
    if meta0 is not None:
        meta1, why1 = _parse_meta(data, meta0.page_size, 1)
        if meta1 is not None and meta1.page_size != meta0.page_size:
            why1 = f"page size {meta1.page_size} differs from meta 0's {meta0.page_size}"
            meta1 = None
    else:
        sizes: list[int] = []
        for size in (_os_page_size(), *_COMMON_PAGE_SIZES):
            if size not in sizes:
                sizes.append(size)
        why1 = "not found at page sizes " + ",".join(str(s) for s in sizes)
        for size in sizes:
            candidate, _ = _parse_meta(data, size, 1)
            if candidate is not None and candidate.page_size == size:
                meta1 = candidate
                break
    valid = [m for m in (meta0, meta1) if m is not None]
    if not valid:
        raise BoltError(name, f"no valid meta page (meta 0: {why0}; meta 1: {why1})")
    # Ties go to meta 0, as in bbolt (meta 1 wins only with a strictly higher txid).
    selected = max(valid, key=lambda m: m.txid)
    return selected, meta0, meta1


def _os_page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - platform without sysconf
        return 4096


# --------------------------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class _Node:
    """A page (or an inline bucket's page) as a byte range of the database."""

    start: int
    end: int
    flags: int
    count: int
    label: str


class _Guard:
    """Pages and inline pages already visited in one traversal: detects cycles and shared pages."""

    __slots__ = ("inline", "pages")

    def __init__(self) -> None:
        self.pages: set[int] = set()
        self.inline: set[int] = set()


class BoltDB:
    """An in-memory copy of a bbolt database file, positioned on its current meta page."""

    __slots__ = ("_data", "_meta", "_metas", "_name")

    def __init__(self, data: bytes, name: str) -> None:
        self._data = data
        self._name = name
        selected, meta0, meta1 = _find_metas(name, data)
        self._meta = selected
        self._metas = (meta0, meta1)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, name: str = "<bytes>") -> BoltDB:
        """Parse a database from an in-memory copy of the file."""
        return cls(bytes(data), name)

    # -- properties -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def data(self) -> bytes:
        return self._data

    @property
    def meta(self) -> Meta:
        """The selected (current) meta page."""
        return self._meta

    @property
    def metas(self) -> tuple[Meta | None, Meta | None]:
        """Both meta pages; None for one that does not validate."""
        return self._metas

    @property
    def txid(self) -> int:
        return self._meta.txid

    @property
    def page_size(self) -> int:
        return self._meta.page_size

    def __repr__(self) -> str:
        return f"BoltDB({self._name!r}, txid={self.txid}, page_size={self.page_size}, meta={self._meta.index})"

    # -- public API -------------------------------------------------------------------------------

    def root(self) -> Bucket:
        """The top-level bucket (its root page is the meta's root)."""
        if self._meta.root == 0:
            raise BoltError(self._name, f"meta {self._meta.index}: root bucket page id is 0")
        return Bucket(self, (), self._meta.root, self._meta.sequence, None)

    def freelist(self) -> list[int] | None:
        """Page ids recorded as free by the current meta; None if the freelist is not synced."""
        pgid = self._meta.freelist
        if pgid == NO_FREELIST:
            return None
        start, end, _flags, count = self._page(pgid, (FREELIST_PAGE,), "freelist")
        pos = start + PAGE_HEADER_SIZE
        if count == 0xFFFF:
            if pos + 8 > end:
                raise BoltError(self._name, f"page {pgid} (freelist): truncated extended count")
            (count,) = _U64.unpack_from(self._data, pos)
            pos += 8
        if count > (end - pos) // 8:
            raise BoltError(self._name, f"page {pgid} (freelist): {count} ids do not fit in the page")
        ids = list(struct.unpack_from(f"<{count}Q", self._data, pos))
        for free in ids:
            if free < 2 or free >= self._meta.pgid:
                raise BoltError(
                    self._name,
                    f"page {pgid} (freelist): free page id {free} outside 2..{self._meta.pgid - 1}",
                )
        return ids

    # -- internals --------------------------------------------------------------------------------

    def _error(self, problem: str) -> BoltError:
        return BoltError(self._name, problem)

    def _page(self, pgid: int, allowed: tuple[int, ...], what: str) -> tuple[int, int, int, int]:
        """Bounds- and sanity-check page ``pgid``; return (start, end, flags, count)."""
        meta = self._meta
        if pgid >= meta.pgid:
            raise self._error(f"page {pgid} ({what}): beyond the high-water mark {meta.pgid}")
        if pgid < 2:
            raise self._error(f"page {pgid} ({what}): refers to a meta page")
        size = len(self._data)
        start = pgid * meta.page_size
        if start + PAGE_HEADER_SIZE > size:
            raise self._error(f"page {pgid} ({what}): beyond the end of the file ({size} bytes)")
        header_id, flags, count, overflow = _PAGE_HEADER.unpack_from(self._data, start)
        if header_id != pgid:
            raise self._error(f"page {pgid} ({what}): header id {header_id} does not match")
        if flags not in allowed:
            expected = "/".join(f"0x{f:02x}" for f in allowed)
            raise self._error(f"page {pgid} ({what}): flags 0x{flags:02x}, expected {expected}")
        if pgid + overflow >= meta.pgid:
            raise self._error(f"page {pgid} ({what}): overflow {overflow} runs beyond the high-water mark {meta.pgid}")
        end = start + (overflow + 1) * meta.page_size
        if end > size:
            raise self._error(
                f"page {pgid} ({what}): {overflow + 1} page(s) run beyond the end of the file ({size} bytes)"
            )
        return start, end, flags, count

    def _claim_tree_page(self, pgid: int, guard: _Guard, what: str) -> _Node:
        if pgid in guard.pages:
            raise self._error(f"page {pgid} ({what}): referenced twice (cycle or shared page)")
        start, end, flags, count = self._page(pgid, (BRANCH_PAGE, LEAF_PAGE), what)
        span = range(pgid, pgid + (end - start) // self._meta.page_size)
        for member in span:
            if member in guard.pages:
                raise self._error(f"page {pgid} ({what}): overlaps page {member} already visited")
        guard.pages.update(span)
        return _Node(start, end, flags, count, f"page {pgid} ({what})")

    def _check_count(self, node: _Node) -> None:
        if node.start + PAGE_HEADER_SIZE + node.count * ELEMENT_SIZE > node.end:
            raise self._error(f"{node.label}: {node.count} elements do not fit in the page")

    def _leaf_elements(self, node: _Node) -> Iterator[tuple[int, int, int, int]]:
        """Yield (flags, key_start, value_start, value_end) of every element of a leaf node."""
        self._check_count(node)
        data = self._data
        first_data = node.start + PAGE_HEADER_SIZE + node.count * ELEMENT_SIZE
        for i in range(node.count):
            elem = node.start + PAGE_HEADER_SIZE + i * ELEMENT_SIZE
            flags, pos, ksize, vsize = _LEAF_ELEM.unpack_from(data, elem)
            key_start = elem + pos
            value_start = key_start + ksize
            value_end = value_start + vsize
            if key_start < first_data or value_end > node.end:
                raise self._error(
                    f"{node.label}: element {i} (pos {pos}, ksize {ksize}, vsize {vsize}) points outside the page data"
                )
            if flags & ~BUCKET_LEAF_FLAG:
                raise self._error(f"{node.label}: element {i} has unknown flags 0x{flags:x}")
            yield flags, key_start, value_start, value_end

    def _branch_elements(self, node: _Node) -> list[tuple[int, int, int]]:
        """(key_start, key_end, child pgid) of every element of a branch page."""
        self._check_count(node)
        if node.count == 0:
            raise self._error(f"{node.label}: branch page without elements")
        data = self._data
        first_data = node.start + PAGE_HEADER_SIZE + node.count * ELEMENT_SIZE
        out: list[tuple[int, int, int]] = []
        for i in range(node.count):
            elem = node.start + PAGE_HEADER_SIZE + i * ELEMENT_SIZE
            pos, ksize, child = _BRANCH_ELEM.unpack_from(data, elem)
            key_start = elem + pos
            key_end = key_start + ksize
            if key_start < first_data or key_end > node.end:
                raise self._error(
                    f"{node.label}: branch element {i} (pos {pos}, ksize {ksize}) points outside the page data"
                )
            out.append((key_start, key_end, child))
        return out


class Bucket:
    """A bucket: a sorted key space whose values are bytes or nested buckets."""

    __slots__ = ("_db", "_inline", "_path", "_root", "_sequence")

    def __init__(
        self,
        db: BoltDB,
        path: tuple[bytes, ...],
        root: int,
        sequence: int,
        inline: tuple[int, int] | None,
    ) -> None:
        self._db = db
        self._path = path
        self._root = root
        self._sequence = sequence
        self._inline = inline

    @property
    def path(self) -> tuple[bytes, ...]:
        """Keys leading from the root bucket to this bucket (empty for the root bucket)."""
        return self._path

    @property
    def sequence(self) -> int:
        return self._sequence

    @property
    def root_pgid(self) -> int:
        """Root page id; 0 for an inline bucket."""
        return self._root

    @property
    def is_inline(self) -> bool:
        return self._inline is not None

    def __repr__(self) -> str:
        where = "inline" if self._inline is not None else f"root={self._root}"
        return f"Bucket({_show_path(self._path)}, {where}, sequence={self._sequence})"

    # -- public API -------------------------------------------------------------------------------

    def items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """(key, value) in stored order; a nested bucket's value is a :class:`Bucket`."""
        return self._items(_Guard())

    def keys(self) -> Iterator[bytes]:
        return (key for key, _ in self.items())

    def get(self, key: bytes) -> bytes | Bucket | None:
        """The value (bytes or Bucket) stored under ``key``, or None."""
        db = self._db
        data = db.data
        guard = _Guard()
        node = self._top_node(guard)
        depth = 0
        while node.flags == BRANCH_PAGE:
            elems = db._branch_elements(node)
            # Last element whose key is <= the wanted key, else the first one (bbolt's search).
            child = elems[0][2]
            for key_start, key_end, pgid in elems:
                if data[key_start:key_end] <= key:
                    child = pgid
                else:
                    break
            depth += 1
            if depth > MAX_DEPTH:
                raise db._error(f"bucket {_show_path(self._path)}: B+tree deeper than {MAX_DEPTH}")
            node = db._claim_tree_page(child, guard, self._what())
        for flags, key_start, value_start, value_end in db._leaf_elements(node):
            if data[key_start:value_start] == key:
                return self._value(node, key, flags, value_start, value_end)
        return None

    def bucket(self, key: bytes) -> Bucket | None:
        """The nested bucket under ``key``; None if absent or a plain value."""
        value = self.get(key)
        return value if isinstance(value, Bucket) else None

    # -- internals --------------------------------------------------------------------------------

    def _what(self) -> str:
        return f"bucket {_show_path(self._path)}"

    def _top_node(self, guard: _Guard) -> _Node:
        db = self._db
        if self._inline is None:
            return db._claim_tree_page(self._root, guard, self._what())
        start, end = self._inline
        label = f"inline page of {self._what()} at offset {start}"
        if start in guard.inline:
            raise db._error(f"{label}: referenced twice")
        guard.inline.add(start)
        if start + PAGE_HEADER_SIZE > end:
            raise db._error(f"{label}: shorter than a page header")
        _id, flags, count, _overflow = _PAGE_HEADER.unpack_from(db.data, start)
        if flags != LEAF_PAGE:
            raise db._error(f"{label}: flags 0x{flags:02x}, expected leaf 0x{LEAF_PAGE:02x}")
        return _Node(start, end, flags, count, label)

    def _leaves(self, guard: _Guard) -> Iterator[_Node]:
        """Leaf nodes of this bucket's tree, left to right (iterative, depth-bounded).

        Pages are claimed when visited, so everything before a bad page is still yielded."""
        db = self._db
        stack: list[tuple[int, int]] = []
        node: _Node | None = self._top_node(guard)
        depth = 0
        while True:
            if node is None:
                if not stack:
                    return
                pgid, depth = stack.pop()
                node = db._claim_tree_page(pgid, guard, self._what())
            if node.flags == LEAF_PAGE:
                yield node
            else:
                if depth >= MAX_DEPTH:
                    raise db._error(f"{node.label}: B+tree deeper than {MAX_DEPTH}")
                children = db._branch_elements(node)
                stack.extend((child, depth + 1) for _, _, child in reversed(children))
            node = None

    def _items(self, guard: _Guard) -> Iterator[tuple[bytes, bytes | Bucket]]:
        data = self._db.data
        for node in self._leaves(guard):
            for flags, key_start, value_start, value_end in self._db._leaf_elements(node):
                key = data[key_start:value_start]
                yield key, self._value(node, key, flags, value_start, value_end)

    def _value(self, node: _Node, key: bytes, flags: int, start: int, end: int) -> bytes | Bucket:
        db = self._db
        if not flags & BUCKET_LEAF_FLAG:
            return db.data[start:end]
        path = (*self._path, key)
        if len(path) > MAX_DEPTH:
            raise db._error(f"{node.label}: buckets nested deeper than {MAX_DEPTH}")
        if end - start < BUCKET_HEADER_SIZE:
            raise db._error(
                f"{node.label}: bucket {_show_path(path)} value is {end - start} bytes, shorter than a bucket header"
            )
        root, sequence = _BUCKET_HEADER.unpack_from(db.data, start)
        if root != 0:
            return Bucket(db, path, root, sequence, None)
        inline_start = start + BUCKET_HEADER_SIZE
        if inline_start + PAGE_HEADER_SIZE > end:
            raise db._error(f"{node.label}: inline bucket {_show_path(path)} has no room for its page")
        return Bucket(db, path, 0, sequence, (inline_start, end))


# ------------------------------------------------------------------------------------------ traversal


def walk(bucket: Bucket, path: tuple[bytes, ...] = ()) -> Iterator[tuple[tuple[bytes, ...], bytes, bytes]]:
    """Yield (bucket_path, key, value) for every plain key below ``bucket``, depth first, in order.

    ``bucket_path`` is ``path`` followed by the keys of the nested buckets leading to the key.
    A page or inline bucket reached twice anywhere in the walk is an error, so the walk is linear
    in the size of the file even for corrupt input.
    """
    guard = _Guard()
    stack: list[tuple[tuple[bytes, ...], Iterator[tuple[bytes, bytes | Bucket]]]] = [(path, bucket._items(guard))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            if isinstance(value, Bucket):
                stack.append(((*prefix, key), value._items(guard)))
                break
            yield prefix, key, value
        else:
            stack.pop()


def to_python(bucket: Bucket) -> PyTree:
    """The whole bucket as nested dicts (bytes values, dict for nested buckets). For debugging."""
    guard = _Guard()
    result: PyTree = {}
    stack: list[tuple[PyTree, Iterator[tuple[bytes, bytes | Bucket]]]] = [(result, bucket._items(guard))]
    while stack:
        target, items = stack[-1]
        for key, value in items:
            if isinstance(value, Bucket):
                child: PyTree = {}
                target[key] = child
                stack.append((child, value._items(guard)))
                break
            target[key] = value
        else:
            stack.pop()
    return result


# ------------------------------------------------------------------------------------------- file I/O


def _open_readonly(path: str) -> int:
    """Open ``path`` read-only, refusing symlinks, without blocking on FIFOs, atime untouched if allowed."""
    try:
        if _O_NOATIME:
            try:
                return os.open(path, _OPEN_FLAGS | _O_NOATIME)
            except PermissionError:
                pass  # O_NOATIME needs ownership or CAP_FOWNER; fall back to a plain read-only open
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise BoltError(path, f"cannot open read-only: {exc.strerror or exc}") from exc


def _read_all(fd: int, name: str) -> bytes:
    """Read the whole regular file behind ``fd``."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BoltError(name, "not a regular file")
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise BoltError(name, f"read failed: {exc.strerror or exc}") from exc


def _read_prefix(path: str, length: int, identity: tuple[int, int]) -> bytes | None:
    """Re-read the first ``length`` bytes of ``path``; None if the path now names another file."""
    fd = _open_readonly(path)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:
            return None
        parts: list[bytes] = []
        offset = 0
        while offset < length:
            chunk = os.pread(fd, length - offset, offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)
    except OSError as exc:
        raise BoltError(path, f"read failed: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def open_db(path: str | os.PathLike[str]) -> BoltDB:
    """Read the database file at ``path`` into memory (read-only, no lock, no mmap) and parse it.

    For a file a running daemon may be writing, prefer :func:`read_consistent`.
    """
    name = os.fspath(path)
    fd = _open_readonly(name)
    try:
        data = _read_all(fd, name)
    finally:
        os.close(fd)
    return BoltDB(data, name)


def read_consistent(path: str | os.PathLike[str], attempts: int = 3) -> BoltDB:
    """Copy a possibly live database and verify the copy is consistent.

    After each copy the meta pages are read again from the file and compared with the copy; if a
    commit happened meanwhile (meta pages changed, or the path now names another file) the copy is
    retried, up to ``attempts`` times. bbolt writes data pages before the meta page, so a copy whose
    meta pages did not change is a consistent snapshot of the selected transaction.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    name = os.fspath(path)
    for attempt in range(attempts):
        fd = _open_readonly(name)
        try:
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino)
            data = _read_all(fd, name)
        except OSError as exc:
            raise BoltError(name, f"stat failed: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        failure: BoltError | None = None
        db: BoltDB | None = None
        try:
            db = BoltDB(data, name)
            span = min(len(data), 2 * db.page_size)
        except BoltError as exc:
            failure = exc
            span = len(data)  # no usable meta: the whole copy must be stable to trust the verdict
        again = _read_prefix(name, span, identity)
        if again is not None and again == data[:span]:
            if db is not None:
                return db
            assert failure is not None
            raise failure
        if attempt + 1 < attempts:
            time.sleep(0.05 * (attempt + 1))
    raise BoltError(
        name,
        f"meta pages changed during each of {attempts} copy attempts "
        "(the database is being written; stop the daemon or retry)",
    )
