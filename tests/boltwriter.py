"""A test-only bbolt writer: produces valid bbolt files from nested dicts.

Written from the format description (docs/docker-storage.md section 10), independently of the reader in
``snapper.bbolt``: it has its own checksum and its own layout code, so a round trip checks both.

A tree is a ``dict[bytes, bytes | tree]``: a dict value is a nested bucket. The writer lays out pages
like bbolt does (sorted keys, leaf pages split when full, branch pages above them, overflow pages for
big elements, inline buckets for small buckets without sub-buckets, a freelist page, two meta pages
whose page index is ``txid % 2``), with knobs to force the rarer shapes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

Tree: TypeAlias = dict[bytes, "bytes | Tree"]

MAGIC = 0xED0CDAED
VERSION = 2
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_FLAG = 0x01
HEADER = 16
ELEM = 16
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF


def fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) % (1 << 64)
    return h


def page_header(pgid: int, flags: int, count: int, overflow: int = 0) -> bytes:
    return struct.pack("<QHHI", pgid, flags, count, overflow)


def meta_struct(
    *,
    page_size: int,
    root: int,
    freelist: int,
    pgid: int,
    txid: int,
    sequence: int = 0,
    flags: int = 0,
    magic: int = MAGIC,
    version: int = VERSION,
) -> bytes:
    """The 64-byte meta struct with a correct checksum."""
    body = struct.pack("<IIIIQQQQQ", magic, version, page_size, flags, root, sequence, freelist, pgid, txid)
    return body + struct.pack("<Q", fnv64a(body))


def leaf_body(entries: list[tuple[int, bytes, bytes]]) -> tuple[bytes, int]:
    """Element array + data of a leaf node (without page header); returns (body, count)."""
    elems = bytearray()
    payload = bytearray()
    n = len(entries)
    for i, (flags, key, value) in enumerate(entries):
        elem_off = HEADER + i * ELEM
        data_off = HEADER + n * ELEM + len(payload)
        elems += struct.pack("<IIII", flags, data_off - elem_off, len(key), len(value))
        payload += key + value
    return bytes(elems + payload), n


def branch_body(entries: list[tuple[bytes, int]]) -> tuple[bytes, int]:
    elems = bytearray()
    payload = bytearray()
    n = len(entries)
    for i, (key, child) in enumerate(entries):
        elem_off = HEADER + i * ELEM
        data_off = HEADER + n * ELEM + len(payload)
        elems += struct.pack("<IIQ", data_off - elem_off, len(key), child)
        payload += key
    return bytes(elems + payload), n


@dataclass
class MetaSpec:
    root: int
    txid: int
    freelist: int = NO_FREELIST
    sequence: int = 0
    pgid: int | None = None  # high-water mark; default: every allocated page
    index: int | None = None  # meta page 0 or 1; default txid % 2


class BoltWriter:
    """Allocates pages for one or more trees, then renders the file image."""

    def __init__(
        self,
        page_size: int = 4096,
        *,
        max_leaf_elems: int | None = None,
        max_branch_elems: int | None = None,
        inline: bool | None = None,
        sequence_of: Callable[[tuple[bytes, ...]], int] | None = None,
    ) -> None:
        """``inline``: None = bbolt's rule (no sub-buckets and page size <= page_size/4),
        True = every bucket without sub-buckets, False = never."""
        self.page_size = page_size
        self.max_leaf_elems = max_leaf_elems
        self.max_branch_elems = max_branch_elems
        self.inline = inline
        self.sequence_of = sequence_of or (lambda path: 0)
        self.pages: dict[int, bytes] = {}
        self.next_pgid = 2
        self.stats = {"leaf": 0, "branch": 0, "overflow": 0, "inline": 0, "paged_buckets": 0}

    # -- allocation --------------------------------------------------------------------------------

    def alloc(self, flags: int, body: bytes, count: int) -> int:
        size = HEADER + len(body)
        npages = -(-size // self.page_size)
        pgid = self.next_pgid
        self.next_pgid += npages
        raw = page_header(pgid, flags, count, npages - 1) + body
        self.pages[pgid] = raw + bytes(npages * self.page_size - len(raw))
        if npages > 1:
            self.stats["overflow"] += 1
        return pgid

    def alloc_garbage(self, contents: Iterable[bytes]) -> list[int]:
        """Pages that are allocated but not referenced (freed pages keeping stale bytes)."""
        ids = []
        for blob in contents:
            ids.append(self.next_pgid)
            npages = max(1, -(-len(blob) // self.page_size))
            self.pages[self.next_pgid] = blob + bytes(npages * self.page_size - len(blob))
            self.next_pgid += npages
        return ids

    def write_freelist(self, ids: list[int]) -> int:
        ids = sorted(ids)
        if len(ids) >= 0xFFFF:
            return self.alloc(FREELIST, struct.pack("<Q", len(ids)) + struct.pack(f"<{len(ids)}Q", *ids), 0xFFFF)
        return self.alloc(FREELIST, struct.pack(f"<{len(ids)}Q", *ids), len(ids))

    # -- trees -------------------------------------------------------------------------------------

    def _chunks(self, sizes: list[int], limit: int | None, minimum: int = 1) -> list[tuple[int, int]]:
        """Split element sizes (element header + data) greedily into pages; at least ``minimum`` per
        page (a page that is too small for them grows overflow pages)."""
        out: list[tuple[int, int]] = []
        start = 0
        used = HEADER
        for i, size in enumerate(sizes):
            full = used + size > self.page_size or (limit is not None and i - start >= limit)
            if i - start >= minimum and full:
                out.append((start, i))
                start, used = i, HEADER
            used += size
        out.append((start, len(sizes)))
        return out

    def _entries(self, tree: Tree, path: tuple[bytes, ...]) -> list[tuple[int, bytes, bytes]]:
        entries = []
        for key in sorted(tree):
            value = tree[key]
            if isinstance(value, dict):
                entries.append((BUCKET_FLAG, key, self.bucket_value(value, (*path, key))))
            else:
                entries.append((0, key, value))
        return entries

    def write_tree(self, tree: Tree, path: tuple[bytes, ...] = ()) -> int:
        """Write a bucket's B+tree into pages; return its root page id."""
        entries = self._entries(tree, path)
        level: list[tuple[bytes, int]] = []
        sizes = [ELEM + len(k) + len(v) for _, k, v in entries]
        for a, b in self._chunks(sizes, self.max_leaf_elems):
            body, n = leaf_body(entries[a:b])
            level.append((entries[a][1] if b > a else b"", self.alloc(LEAF, body, n)))
            self.stats["leaf"] += 1
        while len(level) > 1:
            sizes = [ELEM + len(k) for k, _ in level]
            upper: list[tuple[bytes, int]] = []
            limit = self.max_branch_elems or self.max_leaf_elems
            for a, b in self._chunks(sizes, None if limit is None else max(2, limit), minimum=2):
                body, n = branch_body(level[a:b])
                upper.append((level[a][0], self.alloc(BRANCH, body, n)))
                self.stats["branch"] += 1
            level = upper
        return level[0][1]

    def bucket_value(self, tree: Tree, path: tuple[bytes, ...]) -> bytes:
        seq = self.sequence_of(path)
        has_sub = any(isinstance(v, dict) for v in tree.values())
        if not has_sub and self.inline is not False:
            body, n = leaf_body(self._entries(tree, path))
            page = page_header(0, LEAF, n) + body
            if self.inline or len(page) <= self.page_size // 4:
                self.stats["inline"] += 1
                return struct.pack("<QQ", 0, seq) + page
        self.stats["paged_buckets"] += 1
        return struct.pack("<QQ", self.write_tree(tree, path), seq)

    # -- file image --------------------------------------------------------------------------------

    def image(self, metas: list[MetaSpec], extra_pages: int = 0) -> bytes:
        ps = self.page_size
        out = bytearray((self.next_pgid + extra_pages) * ps)
        for pgid, raw in self.pages.items():
            out[pgid * ps : pgid * ps + len(raw)] = raw
        for m in metas:
            index = m.txid % 2 if m.index is None else m.index
            struct_bytes = meta_struct(
                page_size=ps,
                root=m.root,
                freelist=m.freelist,
                pgid=self.next_pgid if m.pgid is None else m.pgid,
                txid=m.txid,
                sequence=m.sequence,
            )
            page = page_header(index, META, 0) + struct_bytes
            out[index * ps : index * ps + len(page)] = page
        return bytes(out)


def build_db(
    tree: Tree,
    *,
    page_size: int = 4096,
    txid: int = 7,
    old_tree: Tree | None = None,
    root_sequence: int = 0,
    garbage: Iterable[bytes] = (),
    extra_pages: int = 2,
    **options: object,
) -> bytes:
    """A complete file: ``tree`` under meta ``txid``; the other meta (``txid - 1``) holds ``old_tree``
    (default: the same tree). Garbage pages are listed in the freelist, like freed pages are."""
    w = BoltWriter(page_size, **options)  # type: ignore[arg-type]
    old_root = w.write_tree(old_tree) if old_tree is not None else None
    root = w.write_tree(tree)
    free = w.alloc_garbage(garbage)
    fl_old = w.write_freelist(free)
    fl_new = w.write_freelist(free)
    metas = [
        MetaSpec(root=old_root if old_root is not None else root, txid=txid - 1, freelist=fl_old),
        MetaSpec(root=root, txid=txid, freelist=fl_new, sequence=root_sequence),
    ]
    return w.image(metas, extra_pages=extra_pages)


def stale_leaf(records: dict[bytes, bytes], page_size: int = 4096) -> bytes:
    """Bytes of a leaf page as a freed page would still hold them (its own id is patched later)."""
    body, n = leaf_body([(0, k, v) for k, v in sorted(records.items())])
    return page_header(0, LEAF, n) + body
