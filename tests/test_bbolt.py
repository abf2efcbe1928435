"""Tests for snapper.bbolt: round trips through a test-only writer, meta selection, structural errors,
fuzzing (only BoltError or success, never a hang), read-only file access, and real Docker/BuildKit/
containerd databases captured from a private dockerd 20.10 (tests/data/bolt/)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import stat
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from boltwriter import (
    BRANCH,
    BUCKET_FLAG,
    LEAF,
    BoltWriter,
    MetaSpec,
    Tree,
    branch_body,
    build_db,
    fnv64a,
    leaf_body,
    meta_struct,
    page_header,
    stale_leaf,
)

from snapper import bbolt
from snapper.bbolt import BoltDB, BoltError, Bucket, PyTree, open_db, read_consistent, to_python, walk

DATA = Path(__file__).parent / "data" / "bolt"
REAL_DBS = sorted(DATA.glob("*.db"))

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


# ------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) if the body runs longer than ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"reader did not finish within {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def exercise(data: bytes, name: str = "fuzz") -> str:
    """Run every read path over ``data``; return "ok" or the BoltError text. Anything else propagates."""
    with time_limit(5):
        try:
            db = BoltDB.from_bytes(data, name=name)
            root = db.root()
            tree = to_python(root)
            n = sum(1 for _ in walk(root))
            assert n >= 0
            db.freelist()
            for key in list(tree)[:4]:
                value = root.get(key)
                if isinstance(value, Bucket):
                    list(value.items())
                    value.get(b"cache.description")
                root.bucket(key)
            root.get(b"\xff-missing")
            root.get(b"")
            return "ok"
        except BoltError as exc:
            text = str(exc)
            assert text.startswith(f"{name}: "), text
            assert "\n" not in text
            return text


def patch_page(data: bytes, ps: int, pgid: int, offset: int, raw: bytes) -> bytes:
    out = bytearray(data)
    at = pgid * ps + offset
    out[at : at + len(raw)] = raw
    return bytes(out)


def page_flags(db: BoltDB, pgid: int) -> int:
    flags: int = struct.unpack_from("<H", db.data, pgid * db.page_size + 8)[0]
    return flags


SAMPLE: Tree = {
    b"alpha": {b"k1": b"v1", b"k2": b"", b"empty": {}},
    b"big": {b"blob": bytes(range(256)) * 40, b"small": b"s"},  # overflow pages
    b"deep": {b"l1": {b"l2": {b"l3": {b"leaf": b"x"}}}},
    b"many": {b"key%04d" % i: b"value-%d" % i for i in range(400)},  # branch pages
    b"zeta": {},
}


# ---------------------------------------------------------------------------------------- round trip


def test_roundtrip_sample_covers_every_page_kind() -> None:
    w = BoltWriter(1024, sequence_of=lambda path: 1000 + len(path))
    root = w.write_tree(SAMPLE)
    garbage = w.alloc_garbage([stale_leaf({b"deleted-key": b"deleted-value"})])
    fl = w.write_freelist(garbage)
    data = w.image([MetaSpec(root=root, txid=3, freelist=fl, sequence=42), MetaSpec(root=root, txid=2)])
    assert w.stats["branch"] > 0 and w.stats["overflow"] > 0
    assert w.stats["inline"] > 0 and w.stats["paged_buckets"] > 0

    db = BoltDB.from_bytes(data, name="sample")
    assert db.txid == 3 and db.meta.index == 1 and db.page_size == 1024
    assert db.freelist() == garbage
    top = db.root()
    assert top.sequence == 42
    assert to_python(top) == SAMPLE
    assert b"deleted-key" in data and b"deleted-key" not in repr(to_python(top)).encode()

    alpha = top.bucket(b"alpha")
    assert alpha is not None and alpha.sequence == 1001 and alpha.path == (b"alpha",)
    assert not alpha.is_inline  # it has a sub-bucket, so bbolt would not inline it
    assert alpha.get(b"k2") == b"" and alpha.get(b"nope") is None
    assert alpha.bucket(b"k1") is None
    empty = alpha.get(b"empty")
    assert isinstance(empty, Bucket) and empty.is_inline and empty.root_pgid == 0
    assert list(empty.items()) == [] and empty.sequence == 1002
    l3 = top.bucket(b"deep").bucket(b"l1").bucket(b"l2").bucket(b"l3")  # type: ignore[union-attr]
    assert l3 is not None and l3.is_inline and l3.path == (b"deep", b"l1", b"l2", b"l3")
    assert l3.get(b"leaf") == b"x"
    big = top.bucket(b"big")
    assert big is not None and not big.is_inline and big.get(b"blob") == bytes(range(256)) * 40
    many = top.bucket(b"many")
    assert many is not None and page_flags(db, many.root_pgid) == BRANCH
    for i in range(0, 400, 7):
        assert many.get(b"key%04d" % i) == b"value-%d" % i
    assert many.get(b"key0400") is None and many.get(b"a") is None and many.get(b"z") is None
    assert list(many.keys()) == sorted(SAMPLE[b"many"])

    rows = list(walk(top))
    assert (((b"deep", b"l1", b"l2", b"l3"), b"leaf", b"x")) in rows
    assert len(rows) == 2 + 2 + 1 + 400
    assert [r for r in rows if r[0] == (b"alpha",)] == [((b"alpha",), b"k1", b"v1"), ((b"alpha",), b"k2", b"")]
    assert all(p[:1] == (b"pre",) for p, _, _ in walk(top, (b"pre",)))


def test_deep_branch_tree_small_pages() -> None:
    tree: Tree = {b"b": {b"%06d" % i: b"v%d" % (i % 97) for i in range(3000)}}
    w = BoltWriter(512, max_leaf_elems=3)
    root = w.write_tree(tree)
    data = w.image([MetaSpec(root=root, txid=2), MetaSpec(root=root, txid=1)])
    db = BoltDB.from_bytes(data)
    bucket = db.root().bucket(b"b")
    assert bucket is not None
    assert to_python(db.root()) == tree
    for i in (0, 1, 2, 3, 1499, 2998, 2999):
        assert bucket.get(b"%06d" % i) == b"v%d" % (i % 97)
    assert bucket.get(b"999999") is None and bucket.get(b"") is None


def test_large_freelist_extended_count() -> None:
    w = BoltWriter(512)
    root = w.write_tree({b"a": {b"b": b"c"}})
    free = w.alloc_garbage([b""] * 70000)
    fl = w.write_freelist(free)
    db = BoltDB.from_bytes(w.image([MetaSpec(root=root, txid=4, freelist=fl)]))
    assert db.freelist() == free and len(free) > 0xFFFF


def test_unsynced_freelist_is_none() -> None:
    w = BoltWriter(4096)
    root = w.write_tree({b"a": {}})
    db = BoltDB.from_bytes(w.image([MetaSpec(root=root, txid=2)]))
    assert db.freelist() is None


keys = st.binary(min_size=1, max_size=10)
plain_values = st.one_of(
    st.binary(max_size=24),
    st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 5000), st.integers(0, 255)),
)
trees = st.recursive(
    st.dictionaries(keys, plain_values, max_size=6),
    lambda children: st.dictionaries(keys, st.one_of(plain_values, children), max_size=8),
    max_leaves=30,
)


@given(
    tree=trees,
    page_size=st.sampled_from([512, 1024, 4096, 8192]),
    max_leaf=st.sampled_from([None, 1, 2, 3, 5]),
    inline=st.sampled_from([None, True, False]),
    seq_salt=st.integers(0, 2**64 - 1),
)
@fuzz(150)
def test_roundtrip_hypothesis(
    tree: Tree, page_size: int, max_leaf: int | None, inline: bool | None, seq_salt: int
) -> None:
    def seq(path: tuple[bytes, ...]) -> int:
        return (seq_salt + len(path) * 7 + sum(map(len, path))) % 2**64

    data = build_db(tree, page_size=page_size, max_leaf_elems=max_leaf, inline=inline, sequence_of=seq, txid=9)
    db = BoltDB.from_bytes(data)
    root = db.root()
    assert to_python(root) == tree

    expected_rows = []
    stack: list[tuple[tuple[bytes, ...], Tree]] = [((), tree)]
    while stack:
        path, node = stack.pop()
        for k, v in node.items():
            if isinstance(v, dict):
                stack.append(((*path, k), v))
            else:
                expected_rows.append((path, k, v))
    assert sorted(walk(root)) == sorted(expected_rows)

    for key, value in tree.items():
        got = root.get(key)
        if isinstance(value, dict):
            assert isinstance(got, Bucket) and got.sequence == seq((key,))
            assert to_python(got) == value
        else:
            assert got == value
    assert [k for k, _ in root.items()] == sorted(tree)


# ---------------------------------------------------------------------------------- meta selection


def two_generation_db(page_size: int = 4096) -> bytes:
    return build_db({b"gen": {b"n": b"new"}}, old_tree={b"gen": {b"n": b"old"}}, txid=11, page_size=page_size)


def corrupt_checksum(data: bytes, index: int, ps: int) -> bytes:
    at = index * ps + 16 + 56
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_meta_higher_txid_wins() -> None:
    data = two_generation_db()
    db = BoltDB.from_bytes(data)
    assert db.txid == 11 and db.meta.index == 1
    m0, m1 = db.metas
    assert m0 is not None and m1 is not None and (m0.txid, m1.txid) == (10, 11)
    assert to_python(db.root()) == {b"gen": {b"n": b"new"}}
    # Same files with the txids on the other meta pages: still the higher txid.
    w = BoltWriter(4096)
    r_old, r_new = w.write_tree({b"o": b""}), w.write_tree({b"n": b""})
    swapped = w.image([MetaSpec(root=r_old, txid=5, index=1), MetaSpec(root=r_new, txid=6, index=0)])
    db = BoltDB.from_bytes(swapped)
    assert db.meta.index == 0 and to_python(db.root()) == {b"n": b""}


def test_meta_tie_goes_to_meta0() -> None:
    w = BoltWriter(4096)
    r0, r1 = w.write_tree({b"zero": b""}), w.write_tree({b"one": b""})
    db = BoltDB.from_bytes(w.image([MetaSpec(root=r0, txid=5, index=0), MetaSpec(root=r1, txid=5, index=1)]))
    assert db.meta.index == 0


def test_meta_corrupt_newer_falls_back_to_older() -> None:
    data = corrupt_checksum(two_generation_db(), 1, 4096)
    db = BoltDB.from_bytes(data)
    assert db.txid == 10 and db.meta.index == 0 and db.metas[1] is None
    assert to_python(db.root()) == {b"gen": {b"n": b"old"}}


@pytest.mark.parametrize("page_size", [4096, 8192, 16384, 65536, 1024])
def test_meta0_corrupt_finds_meta1_by_page_size(page_size: int) -> None:
    data = two_generation_db(page_size)
    for bad in (corrupt_checksum(data, 0, page_size), b"\0" * 80 + data[80:]):
        db = BoltDB.from_bytes(bad)
        assert db.page_size == page_size and db.meta.index == 1 and db.metas[0] is None
        assert to_python(db.root()) == {b"gen": {b"n": b"new"}}


def test_meta0_corrupt_older_meta1_used() -> None:
    data = corrupt_checksum(build_db({b"x": {}}, old_tree={b"y": {}}, txid=10, page_size=8192), 0, 8192)
    db = BoltDB.from_bytes(data)
    assert db.meta.index == 1 and db.txid == 9 and to_python(db.root()) == {b"y": {}}


def test_both_metas_corrupt() -> None:
    data = corrupt_checksum(corrupt_checksum(two_generation_db(), 0, 4096), 1, 4096)
    with pytest.raises(BoltError, match=r"^both\.db: no valid meta page \(meta 0: checksum mismatch"):
        BoltDB.from_bytes(data, name="both.db")


@pytest.mark.parametrize(
    ("field", "offset", "value", "reason"),
    [("magic", 0, 0xDEADBEEF, "bad magic"), ("version", 4, 1, "unsupported version 1")],
)
def test_meta_magic_and_version_checked(field: str, offset: int, value: int, reason: str) -> None:
    data = bytearray(two_generation_db())
    for index in (0, 1):
        at = index * 4096 + 16
        struct.pack_into("<I", data, at + offset, value)
        struct.pack_into("<Q", data, at + 56, fnv64a(bytes(data[at : at + 56])))  # checksum still valid
    with pytest.raises(BoltError, match=reason):
        BoltDB.from_bytes(bytes(data))


def test_meta_page_size_mismatch_rejects_meta1() -> None:
    data = bytearray(two_generation_db())
    data[4096 + 16 : 4096 + 80] = meta_struct(page_size=8192, root=2, freelist=3, pgid=6, txid=99)
    db = BoltDB.from_bytes(bytes(data))
    assert db.metas[1] is None and db.txid == 10


def test_tiny_files() -> None:
    for data in (b"", b"\0", b"\0" * 79, b"\0" * 4096 * 2):
        assert exercise(data).startswith("fuzz: ")


# ------------------------------------------------------------------------------- structural errors


def simple_db(page_size: int = 4096) -> tuple[BoltWriter, bytes]:
    w = BoltWriter(page_size, max_leaf_elems=2)
    root = w.write_tree({b"a": {b"%02d" % i: b"x" for i in range(12)}, b"b": {b"q": b"r"}})
    return w, w.image([MetaSpec(root=root, txid=2)])


def read_all(data: bytes, name: str = "t.db") -> None:
    db = BoltDB.from_bytes(data, name=name)
    to_python(db.root())


def test_error_page_beyond_high_water_mark() -> None:
    w = BoltWriter(4096)
    root = w.write_tree({b"a": b"b"})
    data = w.image([MetaSpec(root=root, txid=2, pgid=root)])
    with pytest.raises(BoltError, match=rf"^t\.db: page {root} \(bucket root\): beyond the high-water mark"):
        read_all(data)


def test_error_page_beyond_end_of_file() -> None:
    w = BoltWriter(4096)
    root = w.write_tree({b"a": b"b"})
    data = w.image([MetaSpec(root=root, txid=2, pgid=50)])
    with pytest.raises(BoltError, match=rf"page {root} .*beyond the end of the file"):
        read_all(data[: root * 4096 + 8])
    with pytest.raises(BoltError, match="beyond the end of the file"):
        read_all(patch_page(data, 4096, root, 12, struct.pack("<I", 30)))  # overflow past EOF


def test_error_header_id_mismatch() -> None:
    _, data = simple_db()
    db = BoltDB.from_bytes(data)
    pg = db.meta.root
    with pytest.raises(BoltError, match=rf"page {pg} \(bucket root\): header id 77 does not match"):
        read_all(patch_page(data, 4096, pg, 0, struct.pack("<Q", 77)))


def test_error_wrong_flags() -> None:
    _, data = simple_db()
    db = BoltDB.from_bytes(data)
    pg = db.meta.root
    with pytest.raises(BoltError, match=rf"page {pg} \(bucket root\): flags 0x10, expected 0x01/0x02"):
        read_all(patch_page(data, 4096, pg, 8, struct.pack("<H", 0x10)))
    with pytest.raises(BoltError, match="refers to a meta page"):
        read_all(patch_meta_root(data, 1))


def patch_meta_root(data: bytes, root: int) -> bytes:
    out = bytearray(data)
    for index in (0, 1):
        at = index * 4096 + 16
        if struct.unpack_from("<I", out, at)[0] == 0xED0CDAED:
            struct.pack_into("<Q", out, at + 16, root)
            struct.pack_into("<Q", out, at + 56, fnv64a(bytes(out[at : at + 56])))
    return bytes(out)


def test_error_branch_cycle() -> None:
    w = BoltWriter(4096)
    leaf = w.alloc(LEAF, *leaf_body([(0, b"a", b"1")]))
    branch_id = w.next_pgid
    branch = w.alloc(BRANCH, *branch_body([(b"a", leaf), (b"m", branch_id)]))  # second child: itself
    assert branch == branch_id
    data = w.image([MetaSpec(root=branch, txid=2)])
    db = BoltDB.from_bytes(data, name="cyc.db")
    with pytest.raises(BoltError, match=rf"^cyc\.db: page {branch} \(bucket root\): referenced twice"):
        list(db.root().items())
    with pytest.raises(BoltError, match="referenced twice"):
        db.root().get(b"z")
    assert db.root().get(b"a") == b"1"  # the path to "a" does not hit the cycle


def test_error_nested_bucket_pointing_at_ancestor_and_shared_pages() -> None:
    w = BoltWriter(4096)
    shared = w.write_tree({b"k": b"v"})
    root_id = w.next_pgid
    root = w.alloc(
        LEAF,
        *leaf_body(
            [
                (BUCKET_FLAG, b"a", struct.pack("<QQ", shared, 0)),
                (BUCKET_FLAG, b"b", struct.pack("<QQ", shared, 0)),
                (BUCKET_FLAG, b"self", struct.pack("<QQ", root_id, 0)),
            ]
        ),
    )
    db = BoltDB.from_bytes(w.image([MetaSpec(root=root, txid=2)]), name="dag.db")
    assert [k for k, _ in db.root().items()] == [b"a", b"b", b"self"]  # one level is fine
    with pytest.raises(BoltError, match=rf"dag\.db: page {shared} \(bucket b'b'\): referenced twice"):
        list(walk(db.root()))
    with pytest.raises(BoltError, match="referenced twice"):
        to_python(db.root())


def test_inline_dag_is_not_exponential() -> None:
    # Each level: an inline page whose two elements share one key/value, the value being the next
    # inline bucket. Without a visited set a walk would take 2**40 steps.
    page = page_header(0, LEAF, 0)
    for _ in range(40):
        value = struct.pack("<QQ", 0, 0) + page
        elems = struct.pack("<IIII", BUCKET_FLAG, 32, 1, len(value)) + struct.pack(
            "<IIII", BUCKET_FLAG, 16, 1, len(value)
        )
        page = page_header(0, LEAF, 2) + elems + b"k" + value
    w = BoltWriter(4096)
    root = w.alloc(LEAF, *leaf_body([(BUCKET_FLAG, b"top", struct.pack("<QQ", 0, 0) + page)]))
    db = BoltDB.from_bytes(w.image([MetaSpec(root=root, txid=2)]))
    start = time.monotonic()
    with time_limit(5), pytest.raises(BoltError, match=r"inline page .* referenced twice"):
        list(walk(db.root()))
    assert time.monotonic() - start < 1


def test_nesting_depth_limit() -> None:
    def chain(n: int) -> Tree:
        tree: Tree = {b"leaf": b"bottom"}
        for i in range(n):
            tree = {b"n%d" % i: tree}
        return tree

    ok = BoltDB.from_bytes(build_db(chain(63)))
    rows = list(walk(ok.root()))
    assert len(rows) == 1 and len(rows[0][0]) == 63
    deep = BoltDB.from_bytes(build_db(chain(70)), name="deep.db")
    with pytest.raises(BoltError, match="nested deeper than 64"):
        list(walk(deep.root()))
    with pytest.raises(BoltError, match="nested deeper than 64"):
        to_python(deep.root())


def test_error_element_out_of_bounds() -> None:
    w = BoltWriter(4096)
    root = w.write_tree({b"a": b"b" * 10})
    data = w.image([MetaSpec(root=root, txid=2)])
    bad = patch_page(data, 4096, root, 16 + 12, struct.pack("<I", 5000))  # vsize
    with pytest.raises(BoltError, match=rf"page {root} \(bucket root\): element 0 .*points outside"):
        read_all(bad)
    bad = patch_page(data, 4096, root, 10, struct.pack("<H", 300))  # count too big for the page
    with pytest.raises(BoltError, match="300 elements do not fit"):
        read_all(bad)


# ------------------------------------------------------------------------------------------- fuzzing


def _live_regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges worth mutating: meta structs and pages reached from the current root."""
    db = BoltDB.from_bytes(data)
    ps = db.page_size
    regions = [(0, 80), (ps, ps + 80)]
    pgids: list[int] = []
    original = BoltDB._claim_tree_page

    def spy(self: BoltDB, pgid: int, guard: Any, what: str) -> Any:
        pgids.append(pgid)
        return original(self, pgid, guard, what)

    BoltDB._claim_tree_page = spy  # type: ignore[method-assign]
    try:
        to_python(db.root())
    finally:
        BoltDB._claim_tree_page = original  # type: ignore[method-assign]
    if db.meta.freelist != bbolt.NO_FREELIST:
        pgids.append(db.meta.freelist)
    for pgid in pgids:
        overflow = struct.unpack_from("<I", data, pgid * ps + 12)[0]
        regions.append((pgid * ps, min(len(data), (pgid + overflow + 1) * ps)))
    return regions


def _fuzz_bases() -> list[bytes]:
    bases = [
        build_db(SAMPLE, page_size=1024, garbage=[stale_leaf({b"gone": b"x"})]),
        build_db(SAMPLE, page_size=512, max_leaf_elems=2, inline=True),
        build_db({b"a": {b"b": {b"c": b"d"}, b"e": b"f" * 3000}}, page_size=4096, inline=False),
    ]
    bases += [p.read_bytes() for p in REAL_DBS]
    return bases


BASES = _fuzz_bases()
REGIONS = [_live_regions(b) for b in BASES]


@given(st.one_of(st.binary(max_size=100), st.binary(min_size=80, max_size=9000)))
@fuzz(100)
def test_fuzz_random_bytes(data: bytes) -> None:
    exercise(data)


small = st.integers(0, 64)
leaf_elems = st.tuples(st.sampled_from([0, 0, 1, 1, 2]), st.integers(0, 300), small, small)
branch_elems = st.tuples(st.integers(0, 300), small, st.integers(0, 9))
bucket_values = st.tuples(st.integers(0, 9), st.integers(0, 3))


@given(
    ps=st.sampled_from([512, 1024]),
    pages=st.lists(
        st.tuples(
            st.sampled_from([LEAF, LEAF, LEAF, BRANCH, BRANCH, 0x10, 0x04]),
            st.integers(0, 2),  # overflow
            st.one_of(st.lists(leaf_elems, max_size=12), st.lists(branch_elems, max_size=12)),
            st.lists(bucket_values, max_size=4),
            st.binary(max_size=64),
        ),
        min_size=1,
        max_size=7,
    ),
    root=st.integers(0, 40),
    freelist=st.integers(0, 9),
)
@fuzz(150)
def test_fuzz_random_pages_behind_valid_meta(
    ps: int, pages: list[tuple[int, int, list[Any], list[tuple[int, int]], bytes]], root: int, freelist: int
) -> None:
    """Valid metas over pages with correct ids but random flags, elements and bucket headers:
    exercises the page walker rather than the meta checks."""
    w = BoltWriter(ps)
    for i, (flags, overflow, elems, buckets, noise) in enumerate(pages):
        body = bytearray()
        for elem in elems:
            body += struct.pack("<IIII", *elem) if len(elem) == 4 else struct.pack("<IIQ", *elem)
        for sub_root, seq in buckets:  # plausible bucket headers (sometimes inline) for elements to hit
            body += struct.pack("<QQ", sub_root, seq) + (page_header(0, LEAF, 1) if sub_root == 0 else b"")
        body += noise
        w.pages[2 + i] = (page_header(2 + i, flags, len(elems), overflow) + body)[: ps * (overflow + 1)]
    w.next_pgid = 2 + len(pages) + 2
    root_pgid = 2 + root % len(pages) if root < 36 else root - 36  # mostly a real page
    data = w.image([MetaSpec(root=root_pgid, txid=2, freelist=freelist)], extra_pages=1)
    exercise(data)


@given(st.integers(0, len(BASES) - 1), st.floats(0, 1))
@fuzz(200)
def test_fuzz_truncated(which: int, frac: float) -> None:
    data = BASES[which]
    exercise(data[: int(len(data) * frac)])


@given(
    st.integers(0, len(BASES) - 1),
    st.lists(st.tuples(st.integers(0, 10**9), st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=6),
)
@fuzz(400)
def test_fuzz_bit_flips(which: int, flips: list[tuple[int, float, int]]) -> None:
    data = bytearray(BASES[which])
    regions = REGIONS[which]
    for region, frac, bit in flips:
        start, end = regions[region % len(regions)]
        at = min(end - 1, start + int((end - start) * frac))
        data[at] ^= 1 << bit
    exercise(bytes(data))


interesting_u64 = st.one_of(
    st.sampled_from([0, 1, 2, 3, 5, 6, 0xFFFF, 2**32 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 64),
    st.integers(0, 2**64 - 1),
)


@given(
    st.integers(0, len(BASES) - 1),
    st.lists(
        st.tuples(st.sampled_from(["page_size", "root", "freelist", "pgid", "txid"]), interesting_u64), max_size=3
    ),
    st.booleans(),
)
@fuzz(200)
def test_fuzz_meta_fields_with_valid_checksum(which: int, changes: list[tuple[str, int]], both: bool) -> None:
    data = bytearray(BASES[which])
    db = BoltDB.from_bytes(bytes(data))
    offsets = {
        "page_size": (8, "<I"),
        "root": (16, "<Q"),
        "freelist": (32, "<Q"),
        "pgid": (40, "<Q"),
        "txid": (48, "<Q"),
    }
    indexes = (0, 1) if both else (db.meta.index,)
    for index in indexes:
        at = index * db.page_size + 16
        for field, value in changes:
            off, fmt = offsets[field]
            struct.pack_into(fmt, data, at + off, value % (2**32 if fmt == "<I" else 2**64))
        struct.pack_into("<Q", data, at + 56, fnv64a(bytes(data[at : at + 56])))
    exercise(bytes(data))


@given(
    st.integers(0, len(BASES) - 1),
    st.integers(0, 10**6),
    st.sampled_from([(0, "<Q"), (8, "<H"), (10, "<H"), (12, "<I")]),
    interesting_u64,
)
@fuzz(150)
def test_fuzz_page_headers(which: int, region: int, field: tuple[int, str], value: int) -> None:
    data = bytearray(BASES[which])
    regions = REGIONS[which][2:]  # live tree pages and freelist, not the metas
    start, _ = regions[region % len(regions)]
    off, fmt = field
    struct.pack_into(fmt, data, start + off, value % (1 << (8 * struct.calcsize(fmt))))
    exercise(bytes(data))


def test_fuzz_bases_are_valid() -> None:
    assert len(BASES) >= 3 + 6
    for base in BASES:
        assert exercise(base) == "ok"


# --------------------------------------------------------------------------- file access, read-only


@pytest.fixture
def ro_copy(tmp_path: Path) -> Iterator[Path]:
    src = DATA / "metadata_v2.db"
    d = tmp_path / "ro"
    d.mkdir()
    dst = d / "metadata_v2.db"
    dst.write_bytes(src.read_bytes())
    os.utime(dst, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    dst.chmod(0o444)
    d.chmod(0o555)
    yield dst
    d.chmod(0o755)


def test_open_db_read_only_file_and_directory(ro_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = ro_copy.stat()
    digest = hashlib.sha256(ro_copy.read_bytes()).hexdigest()
    flags_seen: list[int] = []
    real_open = os.open

    def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        flags_seen.append(flags)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy_open)
    db = open_db(ro_copy)
    assert to_python(db.root())[b"_main"]
    db2 = read_consistent(ro_copy)
    assert db2.txid == db.txid and db2.data == db.data
    monkeypatch.undo()

    assert flags_seen and len(flags_seen) >= 3
    for flags in flags_seen:
        assert flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) == 0
        assert flags & os.O_NOFOLLOW and flags & os.O_CLOEXEC
    after = ro_copy.stat()
    assert hashlib.sha256(ro_copy.read_bytes()).hexdigest() == digest
    assert after.st_mtime_ns == before.st_mtime_ns == 1_600_000_000_000_000_000
    assert after.st_ctime_ns == before.st_ctime_ns
    assert stat.S_IMODE(after.st_mode) == 0o444
    assert sorted(p.name for p in ro_copy.parent.iterdir()) == ["metadata_v2.db"]  # no lock/temp files


def test_reads_while_another_process_holds_the_bbolt_lock(tmp_path: Path) -> None:
    """dockerd/containerd hold flock(LOCK_EX) on their DBs; the reader neither takes nor waits for it."""
    path = tmp_path / "locked.db"
    path.write_bytes((DATA / "snapshots.db").read_bytes())
    holder = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with time_limit(5):
            assert open_db(path).txid == read_consistent(path).txid == 18
        probe = os.open(path, os.O_RDONLY)
        try:  # the lock is still held by `holder`: nobody released or stole it
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    finally:
        os.close(holder)


def test_open_db_refuses_symlink_fifo_directory_missing(tmp_path: Path) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(DATA / "snapshots.db")
    with pytest.raises(BoltError, match="cannot open read-only"):
        open_db(link)
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    with time_limit(5), pytest.raises(BoltError, match="not a regular file"):
        open_db(fifo)
    with pytest.raises(BoltError, match=r"not a regular file|cannot open"):
        open_db(tmp_path)
    with pytest.raises(BoltError, match=r"missing\.db: cannot open read-only"):
        open_db(tmp_path / "missing.db")


def test_read_consistent_retries_when_meta_moves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "live.db"
    old = build_db({b"b": {b"k": b"old"}}, txid=5)
    new = build_db({b"b": {b"k": b"new"}}, old_tree={b"b": {b"k": b"old"}}, txid=6)
    path.write_bytes(old)
    real_read_all = bbolt._read_all
    calls = 0

    def commit_during_first_copy(fd: int, name: str) -> bytes:
        nonlocal calls
        calls += 1
        data = real_read_all(fd, name)
        if calls == 1:
            path.write_bytes(new)  # a commit lands right after our copy
        return data

    monkeypatch.setattr(bbolt, "_read_all", commit_during_first_copy)
    db = read_consistent(path)
    assert calls == 2 and db.txid == 6
    assert to_python(db.root()) == {b"b": {b"k": b"new"}}


def test_read_consistent_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "busy.db"
    versions = [build_db({b"b": {b"n": b"%d" % i}}, txid=10 + i) for i in range(8)]
    path.write_bytes(versions[0])
    real_read_all = bbolt._read_all
    calls = 0

    def always_committing(fd: int, name: str) -> bytes:
        nonlocal calls
        calls += 1
        data = real_read_all(fd, name)
        path.write_bytes(versions[calls])
        return data

    monkeypatch.setattr(bbolt, "_read_all", always_committing)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with pytest.raises(BoltError, match=r"busy\.db: meta pages changed during each of 3 copy attempts"):
        read_consistent(path, attempts=3)
    assert calls == 3


def test_read_consistent_stable_corrupt_file_reports_corruption(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"\0" * 8192)
    with pytest.raises(BoltError, match="no valid meta page"):
        read_consistent(path)


def test_read_consistent_detects_replaced_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.db"
    data = build_db({b"b": {}}, txid=3)
    path.write_bytes(data)
    real_read_all = bbolt._read_all
    calls = 0

    def replace_once(fd: int, name: str) -> bytes:
        nonlocal calls
        calls += 1
        out = real_read_all(fd, name)
        if calls == 1:  # same bytes, new inode (e.g. a compaction renamed a new file in place)
            tmp = tmp_path / "r.db.new"
            tmp.write_bytes(data)
            tmp.replace(path)
        return out

    monkeypatch.setattr(bbolt, "_read_all", replace_once)
    assert read_consistent(path).txid == 3 and calls == 2


# ---------------------------------------------------------------------------------------- real DBs


def sub(tree: PyTree, *path: bytes) -> PyTree:
    for key in path:
        value = tree[key]
        assert isinstance(value, dict), path
        tree = value
    return tree


def real(name: str) -> BoltDB:
    return open_db(DATA / name)


def test_real_files_present_and_small() -> None:
    names = {p.name for p in REAL_DBS}
    assert names == {
        "metadata_v2.db",
        "snapshots.db",
        "containerdmeta.db",
        "cache.db",
        "volumes-metadata.db",
        "containerd-meta.db",
    }
    for p in REAL_DBS:
        assert p.stat().st_size < 200_000
        db = open_db(p)
        assert db.page_size == 4096 and p.stat().st_size % 4096 == 0
        assert db.meta.pgid * 4096 <= p.stat().st_size


def test_real_meta_pages_match_evidence_layout() -> None:
    """E0d: page 0/1 are meta pages: id, flags 0x0004, magic ed da 0c ed at 0x10, version 2, pageSize
    4096, root/freelist/pgid/txid, then the FNV-1a 64 of bytes 0x10..0x47; the current meta is the one
    with the higher txid and sits on page txid % 2; pages at/after the high-water mark are unused."""
    for p in REAL_DBS:
        raw = p.read_bytes()
        db = open_db(p)
        txids = []
        for index in (0, 1):
            base = index * 4096
            pgid, flags, count, overflow = struct.unpack_from("<QHHI", raw, base)
            assert (pgid, flags, count, overflow) == (index, 0x0004, 0, 0)
            assert raw[base + 0x10 : base + 0x14] == b"\xed\xda\x0c\xed"
            assert struct.unpack_from("<II", raw, base + 0x14) == (2, 4096)
            root, _seq, freelist, hw, txid, checksum = struct.unpack_from("<QQQQQQ", raw, base + 0x20)
            assert checksum == fnv64a(raw[base + 0x10 : base + 0x48]) == bbolt.fnv1a64(raw[base + 0x10 : base + 0x48])
            assert txid % 2 == index
            assert 2 <= root < hw and 2 <= freelist < hw
            meta = db.metas[index]
            assert meta is not None and (meta.root, meta.freelist, meta.pgid, meta.txid) == (root, freelist, hw, txid)
            txids.append(txid)
        assert abs(txids[0] - txids[1]) == 1
        assert db.txid == max(txids) and db.meta.index == db.txid % 2
        free = db.freelist()
        assert free is not None and all(2 <= f < db.meta.pgid for f in free)


def test_real_snapshots_db() -> None:
    db = real("snapshots.db")
    raw = db.data
    assert db.meta.pgid == 6 and len(raw) == 8 * 4096
    assert raw[6 * 4096 :] == bytes(2 * 4096)  # pages 6-7: preallocated, zero (as in E0d)
    top = to_python(db.root())
    assert len(top) == 11 and all(isinstance(v, dict) for v in top.values())
    allowed = {b"parent", b"committed", b"chainid", b"iscommitted"}
    for key, record in top.items():
        assert isinstance(record, dict) and set(record) <= allowed, key
    assert top[b"sha256:b9fa7814d13558997c7edb1dfc8866d6130fc04a38c12316d453e447a484e86f"] == {}
    committed = {r[b"committed"] for r in top.values() if isinstance(r, dict) and b"committed" in r}
    assert committed and committed <= set(top)  # committed= names another snapshot bucket
    chainids = [r[b"chainid"] for r in top.values() if isinstance(r, dict) and b"chainid" in r]
    assert len(chainids) == 4 and all(isinstance(c, bytes) and c.startswith(b"sha256:") for c in chainids)
    bucket = db.root().bucket(b"r8c8694i4loownyda3g8vyanw")
    assert bucket is not None and bucket.is_inline
    assert dict(bucket.items()) == {b"iscommitted": b"", b"parent": b"rvrc073vjv0uycwz1z2akftib"}


def test_real_metadata_v2_db() -> None:
    db = real("metadata_v2.db")
    root = db.root()
    assert [k for k, _ in root.items()] == [b"_external", b"_index", b"_main"]
    index = root.bucket(b"_index")
    assert index is not None and index.is_inline
    main = root.bucket(b"_main")
    assert main is not None and not main.is_inline
    assert page_flags(db, main.root_pgid) == BRANCH  # branch page in the live tree of a small DB
    records = dict(main.items())
    assert len(records) == 10
    descriptions = []
    for rec_id, rec in records.items():
        assert isinstance(rec, Bucket) and len(rec_id) == 25
        fields = dict(rec.items())
        assert b"cache.description" in fields and b"cache.createdAt" in fields
        for value in fields.values():
            assert isinstance(value, bytes)
            if value:
                assert "value" in json.loads(value)
        descriptions.append(json.loads(fields[b"cache.description"])["value"])  # type: ignore[arg-type]
    assert "mount / from exec /bin/sh -c dd if=/dev/zero of=/x bs=1k count=100" in descriptions
    assert "mount / from exec /bin/sh -c echo hi > /y" in descriptions
    assert "local source for context" in descriptions
    assert sum(1 for _ in walk(root)) == 92
    # cache.equalMutable names another record; that mutable record is a snapshot with parent="" in
    # snapshots.db (the local-source snapshots).
    snaps = to_python(real("snapshots.db").root())
    mutables = set()
    for rec in records.values():
        assert isinstance(rec, Bucket)
        equal = rec.get(b"cache.equalMutable")
        if isinstance(equal, bytes) and equal:
            mutables.add(json.loads(equal)["value"].encode())
    assert len(mutables) == 3 and mutables <= set(records)
    for rec_id in mutables:
        assert snaps[rec_id] == {b"parent": b""}


def test_real_buildkit_containerdmeta_and_cache() -> None:
    tree = to_python(real("containerdmeta.db").root())
    v1 = tree[b"v1"]
    assert isinstance(v1, dict) and set(v1) == {b"buildkit"}
    leases = sub(tree, b"v1", b"buildkit", b"leases")
    assert isinstance(leases, dict) and len(leases) == 7
    for lease in leases.values():
        assert isinstance(lease, dict) and set(lease) == {b"createdat", b"labels", b"snapshots"}
        assert set(sub(lease, b"labels")) == {b"containerd.io/gc.flat"}
        assert set(sub(lease, b"snapshots")) == {b"default"}

    cache = to_python(real("cache.db").root())
    assert set(cache) == {b"_backlinks", b"_byresult", b"_links", b"_result"}
    results = cache[b"_result"]
    assert isinstance(results, dict)
    for per_key in results.values():
        assert isinstance(per_key, dict)
        for result_id, blob in per_key.items():
            assert isinstance(blob, bytes) and json.loads(blob)["ID"] == result_id.decode()


def test_real_containerd_and_volumes() -> None:
    assert to_python(real("containerd-meta.db").root()) == {
        b"v1": {b"moby": {b"containers": {}, b"leases": {}}, b"version": b"\x06"}
    }
    vols = to_python(real("volumes-metadata.db").root())
    assert set(vols) == {b"volumes"}
    volumes = vols[b"volumes"]
    assert isinstance(volumes, dict) and set(volumes) == {b"vol1", b"vol2"}
    assert json.loads(volumes[b"vol2"])["Labels"] == {"purpose": "test"}  # type: ignore[arg-type]
