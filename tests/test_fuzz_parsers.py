"""Every metadata parser under fuzz: odd names, truncated, corrupt, oversized and random content in a synthetic
data root -> rows that fit their table plus ``errors`` rows with a one-line message; never an exception.

The bbolt reader itself is fuzzed in ``test_bbolt.py``; here its callers (BuildKit and containerd metadata)
are fed corrupted copies of the real databases in ``tests/data/bolt`` and hand-built trees of hostile values.
"Fits its table" means the rows go through the same conversion ``snapper collect`` writes them with
(:func:`snapper.snapshot.rows_to_batch`): a str Arrow cannot encode, or an int out of range, would abort a
collect just as a traceback would.

Inputs per run (``max_examples``): layerdb 250 + mounts 120 + write-sets 60 + imagedb 200 + containers 150 +
mountinfo lines 300 + mountinfo files 100 + bolt copies 150 + bolt trees 100 + engine API answers 60 = 1,490,
plus one end-to-end ``snapper collect`` of a fuzzed root. Each input is a whole directory tree (several
entries, each with several files), so far more files than inputs are parsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapper.collect import CollectOptions, collect
from snapper.metadata import Rows
from snapper.metadata.api import collect_api
from snapper.metadata.buildkit import read_leases, read_records, read_residue, read_snapshot_keys
from snapper.metadata.containerd import META, SNAPSHOTTER, lease_rows, read_meta, read_snapshotter, store_roots
from snapper.metadata.containers import read_containers
from snapper.metadata.imagedb import read_images, read_tags
from snapper.metadata.layerdb import HEX64, read_chains, read_mounts, read_write_sets
from snapper.metadata.mountinfo import parse_line, read_mountinfo
from snapper.schema import (
    API_BUILD_CACHE,
    API_CONTAINERS,
    API_DF,
    API_IMAGES,
    BUILDKIT_RECORDS,
    BUILDKIT_SNAPSHOTS,
    CONTAINERD_SNAPSHOTS,
    CONTAINERS,
    CTR_LABELS,
    CTR_LEASE_RESOURCES,
    CTR_OBJECTS,
    ERRORS,
    IMAGES,
    LAYERDB,
    LEASES,
    MOUNTINFO,
    MOUNTS,
    RESIDUE,
    TAGS,
    WRITE_SETS,
    Table,
)
from snapper.snapshot import open_snapshot, rows_to_batch
from tests.boltwriter import Tree, build_db
from tests.synthetic import LABEL_SECRET, SECRET, SyntheticRoot, build_standard

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


REL = "image/overlay2"
BOLT = Path(__file__).parent / "data" / "bolt"
REAL_DBS = {p.name: p.read_bytes() for p in sorted(BOLT.glob("*.db"))}
FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


# --- what every reader must give back ------------------------------------------------------------------------

def check(table: Table, rows: Rows, errors: Rows) -> None:
    """Rows fit ``table`` and errors fit ``errors`` exactly as a collect writes them; every error says what
    is wrong in one line and names its object."""
    rows_to_batch(table, rows)
    rows_to_batch(ERRORS, errors)
    for e in errors:
        msg = e["message"]
        assert isinstance(msg, str) and msg.strip(), e
        assert "\n" not in msg and "Traceback" not in msg, e
        assert e["object"] and e["op"] and e["source"], e


# Thousands of tiny roots: on tmpfs when there is one (rmdir on a disk mounted with `discard` takes ms).
FUZZ_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="snp-fuzz-", dir=FUZZ_TMP) as d:
        yield Path(d)


@contextlib.contextmanager
def data_root() -> Iterator[SyntheticRoot]:
    """An empty synthetic data root (the real directory layout) in a temp dir, removed afterwards."""
    with temp_dir() as d:
        yield SyntheticRoot(d / "root")


# --- filesystem shapes -----------------------------------------------------------------------------------------

DIR, SYMLINK_OUT, SYMLINK_LOOP, FIFO, SOCKET, DEVZERO = "<dir>", "<symlink /etc>", "<symlink loop>", "<fifo>", \
    "<socket>", "<char 1:5>"
SPECIALS = (DIR, SYMLINK_OUT, SYMLINK_LOOP, FIFO, SOCKET, DEVZERO)


def put(parent: bytes, name: bytes, content: bytes | str | None) -> None:
    """Create ``parent/name`` as a regular file with ``content`` (bytes) or as one of SPECIALS; None: absent.
    A reader that opens the FIFO without O_NONBLOCK, or reads the char device (/dev/zero), hangs."""
    if content is None:
        return
    path = os.path.join(parent, name)
    if isinstance(content, bytes):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
    elif content == DIR:
        os.mkdir(path)
    elif content == SYMLINK_OUT:
        os.symlink(b"/etc/passwd", path)
    elif content == SYMLINK_LOOP:
        os.symlink(name, path)
    elif content == FIFO:
        os.mkfifo(path)
    elif content == SOCKET:
        bind_socket(parent, name)
    elif content == DEVZERO:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))


def bind_socket(parent: bytes, name: bytes) -> None:
    """A unix socket at parent/name (bound through /proc/self/fd: sun_path holds only 108 bytes)."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(b"/proc/self/fd/%d/" % fd + name)
    except OSError:  # the name is too long even so: a FIFO is special enough
        os.mkfifo(os.path.join(parent, name))
    finally:
        s.close()
        os.close(fd)


# --- strategies ------------------------------------------------------------------------------------------------

hex64 = st.binary(min_size=32, max_size=32).map(lambda b: b.hex().encode())
buildkit25 = st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=25, max_size=25).map(str.encode)
odd_name = st.one_of(
    st.binary(min_size=1, max_size=255).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
    .filter(lambda b: b not in (b".", b"..")),
    st.sampled_from([b"\xff\xfe", b"bad-\xc3(-utf8", b"new\nline", b"L" * 255, b"-removing", b" ", b"...",
                     b"\xed\xa0\x80", "snowman-\u2603".encode(), b"tab\there", b"back\\slash"]),
)
chain_dir_name = st.one_of(
    hex64,
    st.tuples(hex64, st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=64))
    .map(lambda t: t[0] + b"-" + t[1].encode() + b"-removing"),
    hex64.map(lambda h: h + b"\n"),  # "$" in a regex accepts a trailing newline
    hex64.map(lambda h: h[:-1]),
    hex64.map(lambda h: h.upper()),
    odd_name,
)
digest = hex64.map(lambda h: b"sha256:" + h)
small_content = st.one_of(
    st.none(),
    st.binary(max_size=300),
    digest, digest.map(lambda d: d + b"\n"), digest.map(lambda d: d + b"\nsha256:" + d[7:]), hex64, buildkit25,
    st.integers().map(lambda i: str(i).encode()),
    st.integers(min_value=2**63 - 2, max_value=2**80).map(lambda i: str(i).encode()),
    st.sampled_from([b"", b" ", b"\n", "\u00b2".encode(), "\u0663".encode(), b"9" * 40, b"-1", b"1_000",
                     b"0x10", b"\xff\xfe", b"1e3", b"  42  \n", b"nan", b"\x00\x00"]),
    st.sampled_from(SPECIALS),
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c,
                                                                                          max_size=4), max_leaves=10)
# JSON documents that json.loads still accepts but that hold what no Python str can be written as: a lone
# surrogate; and documents nested deeper than the recursion limit.
LONE_SURROGATE = '"\\ud800-lone"'


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


ODD_JSON = {  # by label: hypothesis shows the label, not 200 kB of brackets
    "deep-list": deep_json(200_000), "open-objects": b"{" * 5000, "deep-object": b'{"a":' * 3000,
    "lone-surrogate": LONE_SURROGATE.encode(), "bom": b"\xef\xbb\xbf{}", "utf16": b"\xff\xfe{\x00}\x00",
    "null": b"null", "list": b"[]", "string": b'"str"', "inf": b"1e999", "zeros": b"\x00" * 100,
    "huge": json.dumps({"rootfs": {"type": "layers", "diff_ids": [f"sha256:{i:064x}" for i in range(5000)]},
                        "created": "x" * 1_000_000}).encode(),
}


def json_doc(doc: Any, how: str, cut: int) -> bytes:
    """Serialize ``doc`` as JSON, then spoil it: truncate, ascii-escape, or keep."""
    raw = json.dumps(doc, ensure_ascii=how == "ascii").encode("utf-8", "surrogatepass")
    if how == "truncate":
        return raw[: cut % max(1, len(raw))]
    return raw


def with_lone_surrogates(raw: bytes) -> bytes:
    """Replace every JSON string value "x" by the escape of a lone surrogate (valid JSON, not valid UTF-8)."""
    return re.sub(rb':\s*"[^"\\]*"', lambda m: b": " + LONE_SURROGATE.encode(), raw, count=3)


def spoiled_json(doc: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes | str | None]:
    """A JSON file as found on a broken or hostile host."""
    return st.one_of(
        st.builds(json_doc, doc, st.sampled_from(["keep", "ascii", "truncate"]), st.integers(0, 10**6)),
        st.builds(lambda d: with_lone_surrogates(json_doc(d, "keep", 0)), doc),
        st.binary(max_size=400),
        st.sampled_from(sorted(ODD_JSON)).map(ODD_JSON.__getitem__),
        json_value.map(lambda v: json.dumps(v).encode()),
        st.none(),
        st.sampled_from(SPECIALS),
    )


KIND = st.sampled_from(["dir", "dir", "dir", "dir", "file", "symlink", "fifo"])


def make_entry(base: bytes, name: bytes, kind: str, files: dict[str, Any]) -> None:
    path = os.path.join(base, name)
    if kind == "dir":
        os.mkdir(path)
        for fname, content in files.items():
            put(path, fname.encode(), content)
    elif kind == "file":
        put(base, name, b"not a directory\n")
    elif kind == "symlink":
        os.symlink(b"/etc", path)
    else:
        os.mkfifo(path)


def dir_entries(files: dict[str, st.SearchStrategy[Any]], names: st.SearchStrategy[bytes] = chain_dir_name,
                max_size: int = 4) -> st.SearchStrategy[list[tuple[bytes, str, dict[str, Any]]]]:
    return st.lists(st.tuples(names, KIND, st.fixed_dictionaries(files)), min_size=1, max_size=max_size,
                    unique_by=lambda e: e[0])


# --- layerdb ---------------------------------------------------------------------------------------------------

@fuzz(250)
@given(dir_entries({"cache-id": small_content, "diff": small_content, "parent": small_content,
                    "size": small_content, "tar-split.json.gz": st.sampled_from([None, b"\x1f\x8b", DIR, FIFO])}))
def test_layerdb_chains(entries: list[tuple[bytes, str, dict[str, Any]]]) -> None:
    with data_root() as sr:
        base = os.fsencode(sr.layerdb / "sha256")
        for name, kind, files in entries:
            make_entry(base, name, kind, files)
        rows, errors = read_chains(sr.image_dir, REL)
    check(LAYERDB, rows, errors)
    assert len(rows) == len(entries)
    for r in rows:
        assert r["chain_id"] is None or FULL_DIGEST.fullmatch(r["chain_id"]), r
        if r["problem"] is None:  # a usable chain: a well-formed name and a cache-id
            assert r["chain_id"] is not None and r["cache_id"], r
            assert HEX64.fullmatch(r["dir_name"][:64]), r


@fuzz(120)
@given(dir_entries({"mount-id": small_content, "init-id": small_content, "parent": small_content},
                   st.one_of(hex64, buildkit25, odd_name, hex64.map(lambda h: h + b"-init"))))
def test_layerdb_mounts(entries: list[tuple[bytes, str, dict[str, Any]]]) -> None:
    with data_root() as sr:
        base = os.fsencode(sr.layerdb / "mounts")
        for name, kind, files in entries:
            make_entry(base, name, kind, files)
        rows, errors = read_mounts(sr.image_dir, REL)
    check(MOUNTS, rows, errors)
    assert len(rows) == len(entries)
    assert all(r["name_class"] in ("hex64", "buildkit25", "other") for r in rows)


@fuzz(60)
@given(dir_entries({"size": small_content, "tar-split.json.gz": small_content, "sub": st.sampled_from([None, DIR])},
                   st.one_of(st.just(b"write-set-1"), odd_name)))
def test_layerdb_write_sets(entries: list[tuple[bytes, str, dict[str, Any]]]) -> None:
    with data_root() as sr:
        base = os.fsencode(sr.layerdb / "tmp")
        for name, kind, files in entries:
            make_entry(base, name, kind, files)
        rows, errors = read_write_sets(sr.image_dir, REL)
    check(WRITE_SETS, rows, errors)
    assert len(rows) == len(entries)


# --- imagedb and repositories.json ------------------------------------------------------------------------------

config_doc = st.fixed_dictionaries(
    {"architecture": st.just("amd64"), "os": st.just("linux")},
    optional={
        "created": json_value,
        "rootfs": st.one_of(
            st.fixed_dictionaries({"type": st.just("layers"),
                                   "diff_ids": st.lists(digest.map(bytes.decode), max_size=5)}),
            st.fixed_dictionaries({"type": json_value, "diff_ids": json_value}),
            json_value,
        ),
        "config": st.just({"Env": [f"TOKEN={SECRET}"]}),
    },
)


@fuzz(200)
@given(
    configs=st.lists(st.tuples(
        spoiled_json(config_doc),
        st.sampled_from(["digest", "digest", "hex", "odd", "nl"]), odd_name,
        st.fixed_dictionaries({"parent": small_content, "lastUpdated": small_content})), min_size=1, max_size=4),
    repositories=spoiled_json(st.one_of(
        st.fixed_dictionaries({"Repositories": st.dictionaries(
            st.text(max_size=20), st.one_of(st.dictionaries(st.text(max_size=30), json_value, max_size=3),
                                            json_value), max_size=3)}),
        st.fixed_dictionaries({"Repositories": json_value}),
        json_value)),
)
def test_imagedb_configs_and_repositories(configs: list[tuple[Any, str, bytes, dict[str, Any]]],
                                          repositories: bytes | str | None) -> None:
    import hashlib

    with data_root() as sr:
        content = os.fsencode(sr.image_dir / "imagedb" / "content" / "sha256")
        meta = os.fsencode(sr.image_dir / "imagedb" / "metadata" / "sha256")
        made: set[bytes] = set()
        for data, naming, odd, metafiles in configs:
            raw = data if isinstance(data, bytes) else b""
            name = {"digest": hashlib.sha256(raw).hexdigest().encode(), "hex": hashlib.sha256(odd).hexdigest().encode(),
                    "odd": odd, "nl": hashlib.sha256(raw).hexdigest().encode() + b"\n"}[naming]
            if name in made:
                continue
            made.add(name)
            put(content, name, data if data is not None else b"")
            if naming != "odd":
                os.mkdir(os.path.join(meta, name))
                for fname, c in metafiles.items():
                    put(os.path.join(meta, name), fname.encode(), c)
        put(os.fsencode(sr.image_dir), b"repositories.json", repositories)
        tags, tag_errors = read_tags(sr.image_dir, REL)
        rows, errors = read_images(sr.image_dir, REL, tags)
    check(TAGS, tags, tag_errors)
    check(IMAGES, rows, errors)
    assert len(rows) == sum(1 for n in made if HEX64.fullmatch(n.decode("utf-8", "replace")))
    for r in rows:
        if r["problem"] is None:
            assert all(FULL_DIGEST.fullmatch(d) for d in r["diff_ids"]), r
            assert len(r["chain_ids"]) == len(r["diff_ids"]) and r["digest_ok"] is True, r
    assert SECRET not in repr(rows) + repr(errors)


# --- containers/*/config.v2.json -------------------------------------------------------------------------------

container_doc = st.fixed_dictionaries(
    {"Config": st.just({"Env": [f"DB_PASSWORD={SECRET}"], "Labels": {"token": LABEL_SECRET}}),
     "Args": st.just(["-c", f"echo {SECRET}"])},
    optional={"ID": st.one_of(hex64.map(bytes.decode), json_value), "Name": json_value, "Image": json_value,
              "Driver": json_value, "Created": json_value,
              "State": st.one_of(json_value, st.fixed_dictionaries({}, optional={
                  k: json_value for k in ("Running", "Paused", "Restarting", "Dead", "RemovalInProgress",
                                          "StartedAt", "Pid")}))},
)


@fuzz(150)
@given(dir_entries({"config.v2.json": spoiled_json(container_doc), "hostconfig.json": small_content},
                   st.one_of(hex64, odd_name)))
def test_container_configs(entries: list[tuple[bytes, str, dict[str, Any]]]) -> None:
    with data_root() as sr:
        base = os.fsencode(sr.root / "containers")
        for name, kind, files in entries:
            make_entry(base, name, kind, files)
        rows, errors = read_containers(sr.root)
    check(CONTAINERS, rows, errors)
    assert len(rows) == len(entries)
    assert all(r["state"] in (None, "dead", "removing", "restarting", "paused", "running", "exited", "created")
               for r in rows)
    # Env, labels and the command line never reach a row or an error message, even from a broken config.
    text = repr(rows) + repr(errors)
    assert SECRET not in text and LABEL_SECRET not in text


# --- /proc/self/mountinfo --------------------------------------------------------------------------------------

field = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b" ", b"_").replace(b"\n", b"_")),
    st.sampled_from([b"/x\\040y", b"\\011tab", b"\\012nl", b"\\134", b"\\777", b"\\400", b"\\0", b"\\", b"\\08"]),
)


@st.composite
def mountinfo_line(draw: st.DrawFn, root: bytes = b"/R") -> bytes:
    ints = st.one_of(st.integers(0, 5000), st.integers(-(2**70), 2**70))
    mp = root + b"/overlay2/" + draw(st.one_of(hex64, odd_name)).replace(b" ", b"\\040").replace(b"\n", b"\\012") \
        + draw(st.sampled_from([b"/merged", b"", b"/diff/x"]))
    opt_fields = draw(st.lists(st.sampled_from([b"shared:1", b"master:2", b"propagate_from:3", b"unbindable"]),
                               max_size=3))
    upper = b"upperdir=" + root + b"/overlay2/" + draw(hex64) + b"/diff"
    sup = b",".join(draw(st.lists(st.sampled_from([b"rw", upper, b"lowerdir=/a:/b", b"workdir=/w", b"upperdir="]),
                                  max_size=4)))
    parts = [str(draw(ints)).encode(), str(draw(ints)).encode(), draw(st.sampled_from([b"0:52", b"x:y", b"8:1"])),
             draw(field), mp, draw(st.sampled_from([b"rw,relatime", b"ro"])), *opt_fields, b"-",
             draw(st.sampled_from([b"overlay", b"ext4", b"tmpfs"])), draw(field), sup]
    cut = draw(st.integers(0, len(parts)))
    return b" ".join(parts[:cut] if draw(st.booleans()) and cut > 0 else parts)


@fuzz(300)
@given(st.one_of(st.binary(max_size=300), mountinfo_line()))
def test_mountinfo_parse_line(line: bytes) -> None:
    rec = parse_line(line)
    assert rec is None or isinstance(rec, dict)
    if rec is not None:
        assert isinstance(rec["mount_point_raw"], bytes)
        assert all(isinstance(rec[k], str) for k in ("root", "fstype", "source", "options", "super_options"))


@fuzz(100)
@given(st.data())
def test_read_mountinfo_file(data: st.DataObject) -> None:
    with temp_dir() as d:
        root = d / "root"
        lines = data.draw(st.lists(st.one_of(mountinfo_line(os.fsencode(root)), st.binary(max_size=200)),
                                   max_size=12))
        src = d / "mountinfo"
        src.write_bytes(b"\n".join(lines) + b"\n")
        rows, errors, points = read_mountinfo(root, str(src))
    check(MOUNTINFO, rows, errors)
    assert len(points) <= len(rows)
    for r in rows:
        assert r["mount_point"].startswith(str(root)), r


# --- BuildKit and containerd bbolt databases ---------------------------------------------------------------------

TARGETS = {  # where each database lives under the data root, and which real file belongs there
    "buildkit/metadata_v2.db": "metadata_v2.db",
    "buildkit/containerd-overlayfs/metadata_v2.db": "metadata_v2.db",
    "buildkit/snapshots.db": "snapshots.db",
    "buildkit/containerdmeta.db": "containerdmeta.db",
    f"containerd/daemon/{META}": "containerd-meta.db",
    f"containerd/daemon/{SNAPSHOTTER}/metadata.db": "snapshotter",
}


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


SNAPSHOTTER_DB = build_db({b"v1": {b"snapshots": {
    b"moby/1/sha256:" + b"a" * 64: {b"id": uvarint(1), b"kind": b"\x03", b"name": b"x"},
    b"moby/2/sha256:" + b"b" * 64: {b"id": uvarint(2), b"kind": b"\x02", b"parent": b"moby/1/sha256:" + b"a" * 64},
    b"moby/3/view": {b"id": uvarint(2**63 + 5), b"kind": b"\x09"},
}}})
SOURCES = {**REAL_DBS, "snapshotter": SNAPSHOTTER_DB}


def corrupt(data: bytes, how: str, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    page = 4096
    pages = max(1, len(buf) // page)
    if how == "truncate":
        return bytes(buf[: rnd.randrange(len(buf) + 1)])
    if how == "flip":
        for _ in range(rnd.randint(1, 64)):
            buf[rnd.randrange(len(buf))] ^= 1 << rnd.randrange(8)
        return bytes(buf)
    if how in ("zero-page", "random-page", "copy-page"):
        p = rnd.randrange(pages)
        src = bytes(page) if how == "zero-page" else rnd.randbytes(page) if how == "random-page" else \
            bytes(buf[rnd.randrange(pages) * page:][:page])
        buf[p * page:(p + 1) * page] = src.ljust(page, b"\0")[: len(buf) - p * page]
        return bytes(buf)
    if how == "page-ids":  # every page header claims to be another page
        for p in range(pages):
            struct.pack_into("<Q", buf, p * page, rnd.randrange(2 * pages))
        return bytes(buf)
    if how == "random":
        return rnd.randbytes(rnd.choice([0, 16, 4095, 4096, 8192, 20000]))
    return bytes(buf)  # "intact"


def read_all_bolt(root: Path) -> list[tuple[Table, Rows, Rows]]:
    out = []
    rows, errors = read_records(root)
    out.append((BUILDKIT_RECORDS, rows, errors))
    rows, errors = read_snapshot_keys(root)
    out.append((BUILDKIT_SNAPSHOTS, rows, errors))
    rows, errors = read_leases(root, "buildkit/containerdmeta.db", "leases")
    out.append((LEASES, rows, errors))
    stores = store_roots(root, False)
    rows, errors = read_snapshotter(stores)
    out.append((CONTAINERD_SNAPSHOTS, rows, errors))
    for path, label in stores:
        objects, labels, held, errors, _status = read_meta(path, label)
        out += [(CTR_OBJECTS, objects, errors), (CTR_LABELS, labels, []), (CTR_LEASE_RESOURCES, held, []),
                (LEASES, lease_rows(label, objects, labels, held), [])]
    rows, errors = read_residue(root, "overlay2")
    out.append((RESIDUE, rows, errors))
    return out


@fuzz(150)
@given(
    plan=st.lists(st.tuples(st.sampled_from(sorted(TARGETS)), st.sampled_from(sorted(SOURCES)),
                            st.sampled_from(["truncate", "flip", "flip", "zero-page", "random-page", "copy-page",
                                             "page-ids", "random", "intact"])),
                  min_size=1, max_size=6, unique_by=lambda t: t[0]),
    seed=st.integers(0, 2**32),
    right_place=st.booleans(),
)
def test_bolt_databases_corrupted(plan: list[tuple[str, str, str]], seed: int, right_place: bool) -> None:
    rnd = random.Random(seed)
    with temp_dir() as root:
        for target, source, how in plan:
            data = SOURCES[TARGETS[target] if right_place else source]
            p = root / target
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(corrupt(data, how, rnd))
        for table, rows, errors in read_all_bolt(root):
            check(table, rows, errors)
            assert all(e["op"] in ("parse", "read", "lstat") for e in errors), errors


bolt_value = st.one_of(
    json_value.map(lambda v: json.dumps({"value": v}).encode()),
    st.builds(lambda v: with_lone_surrogates(json.dumps({"value": v}).encode()), st.text(max_size=5)),
    st.sampled_from([json.dumps({"value": 2**70}).encode(), json.dumps({"value": -(2**63) - 1}).encode()]),
    st.just("deep").map(lambda _: b'{"value":' * 3000),
    st.binary(max_size=60), small_content.filter(lambda c: isinstance(c, bytes)),
)
bolt_key = st.binary(min_size=1, max_size=40)
RECORD_KEYS = [b"cache.recordType", b"cache.description", b"cache.parent", b"cache.equalMutable", b"cache.snapshot",
               b"cache.deleted", b"snapshot.committed", b"cache.chainID", b"cache.createdAt", b"cache.lastUsedAt",
               b"cache.usageCount", b"snapshot.size", b"cache.blobonly"]
maybe_bucket = st.deferred(lambda: st.one_of(st.binary(max_size=20), st.dictionaries(bolt_key, st.binary(max_size=20),
                                                                                        max_size=3)))


@st.composite
def hostile_trees(draw: st.DrawFn) -> dict[str, Tree]:
    records = draw(st.dictionaries(bolt_key, st.one_of(
        st.dictionaries(st.sampled_from(RECORD_KEYS), bolt_value, max_size=8), st.binary(max_size=10)), max_size=4))
    keys = draw(st.dictionaries(bolt_key, st.one_of(st.fixed_dictionaries({}, optional={
        b"parent": st.binary(max_size=30), b"committed": st.binary(max_size=30), b"iscommitted": st.just(b""),
        b"chainid": st.binary(max_size=30),
        b"size": st.one_of(small_content.filter(lambda c: isinstance(c, bytes)), st.just("\u00b2".encode()))}),
        st.binary(max_size=10)), max_size=4))
    leases = draw(st.dictionaries(bolt_key, st.one_of(st.fixed_dictionaries({}, optional={
        b"labels": st.one_of(st.dictionaries(st.just(b"containerd.io/gc.expire"), st.binary(max_size=20)),
                             st.binary(max_size=5)),
        b"snapshots": st.one_of(st.dictionaries(bolt_key, maybe_bucket, max_size=3), st.binary(max_size=5))}),
        st.binary(max_size=5)), max_size=4))
    snaps = draw(st.dictionaries(bolt_key, st.one_of(st.fixed_dictionaries({}, optional={
        b"id": st.one_of(st.integers(0, 2**64 - 1).map(uvarint), st.binary(max_size=12)),
        b"kind": st.binary(max_size=2), b"parent": st.binary(max_size=30)}), st.binary(max_size=5)), max_size=4))
    ns = draw(bolt_key)
    return {
        "buildkit/metadata_v2.db": {b"_main": records} if records else {b"_main": b"not a bucket"},
        "buildkit/snapshots.db": keys or {b"k": b"v"},
        "buildkit/containerdmeta.db": {b"v1": {ns: {b"leases": leases}} if leases else {ns: b"x"}},
        f"containerd/daemon/{META}": {b"v1": {ns: {b"leases": leases or b"x"}}},
        f"containerd/daemon/{SNAPSHOTTER}/metadata.db": {b"v1": {b"snapshots": snaps or b"x"}},
    }


@fuzz(100)
@given(trees=hostile_trees(),
       snapshot_dirs=st.lists(st.one_of(st.integers(0, 2**70).map(lambda i: str(i).encode()),
                                        st.sampled_from(["\u00b2".encode(), "\u0663".encode(), b"01", b"-1"]),
                                        odd_name), max_size=4, unique=True),
       executors=st.lists(odd_name, max_size=3, unique=True),
       tmp_entry=st.sampled_from([None, b"x", DIR, FIFO]))
def test_bolt_databases_hostile_values(trees: dict[str, Tree], snapshot_dirs: list[bytes], executors: list[bytes],
                                       tmp_entry: str | bytes | None) -> None:
    with temp_dir() as root:
        for rel, tree in trees.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(build_db(tree))
        snapdir = os.fsencode(root / "containerd" / "daemon" / SNAPSHOTTER / "snapshots")
        os.makedirs(snapdir)
        for n in snapshot_dirs:
            os.mkdir(os.path.join(snapdir, n))
        execdir = os.fsencode(root / "buildkit" / "executor")
        os.makedirs(execdir)
        for n in executors:
            os.mkdir(os.path.join(execdir, n))
            put(os.path.join(execdir, n), b"config.json", b"{}")
        (root / "tmp").mkdir()
        put(os.fsencode(root / "tmp"), b"entry", tmp_entry)
        (root / "aufs").mkdir()  # a dormant driver tree
        results = read_all_bolt(root)
    for table, rows, errors in results:
        check(table, rows, errors)
    ctr = next(rows for table, rows, _ in results if table is CONTAINERD_SNAPSHOTS)
    assert len([r for r in ctr if r["dir_exists"]]) == len(snapshot_dirs)


# --- the engine API (a daemon that answers oddly, or dies mid-answer) --------------------------------------------

class FakeDaemon:
    """A unix-socket HTTP server answering each GET from ``self.answers`` (first path prefix that matches):
    raw bytes to send, or b"" to close without a word."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, bytes] = {}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    req += chunk
                parts = req.split(b" ")
                target = parts[1].decode("latin-1") if len(parts) > 1 else ""
                answer = next((a for prefix, a in self.answers.items() if target.startswith(prefix)), b"")
                with contextlib.suppress(OSError):
                    conn.sendall(answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the server thread
        self.sock.close()
        self.thread.join(timeout=5)


def http(body: bytes, status: int = 200, how: str = "ok") -> bytes:
    if how == "truncated":  # the daemon died mid-answer
        return b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n" % (status, len(body) + 100) + body[: len(body) // 2]
    if how == "chunked-cut":
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (len(body) + 10) + body
    if how == "not-http":
        return b"SSH-2.0-OpenSSH_9.0\r\n" + body
    if how == "bad-header":
        return b"HTTP/1.1 200 OK\r\n" + b"X" * 70000 + b"\r\n\r\n" + body
    head = b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, len(body))
    return head + body


ENDPOINTS = ["/version", "/info", "/images/json", "/images/", "/containers/json", "/containers/", "/system/df"]
small_json = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                        max_size=3), max_leaves=5)
api_doc = st.one_of(small_json, st.lists(st.dictionaries(st.sampled_from(
    ["Id", "RepoTags", "Size", "GraphDriver", "Name", "Image", "State", "ImageID", "SizeRw", "Containers"]),
    small_json, max_size=5), max_size=3), st.fixed_dictionaries({}, optional={
        k: small_json for k in ("Images", "Containers", "Volumes", "BuildCache", "LayersSize", "GraphDriver",
                                "Version", "ApiVersion", "DockerRootDir", "Driver", "Name", "State")}))
HOW = ["ok", "ok", "ok", "ok", "truncated", "chunked-cut", "not-http", "bad-header", "close", "500"]


@fuzz(60)
@given(answers=st.fixed_dictionaries({e: st.tuples(api_doc, st.sampled_from(HOW)) for e in ENDPOINTS}),
       root_matches=st.booleans())
def test_engine_api_answers(api_daemon: tuple[FakeDaemon, Path], answers: dict[str, tuple[Any, str]],
                            root_matches: bool) -> None:
    daemon, root = api_daemon
    table_of = {"api_images": API_IMAGES, "api_containers": API_CONTAINERS, "api_build_cache": API_BUILD_CACHE,
                "api_df": API_DF}
    daemon.answers = {}
    for endpoint in ENDPOINTS:  # longest prefixes first: /images/json before /images/
        doc, how = answers[endpoint]
        if endpoint == "/info" and root_matches and isinstance(doc, dict):
            doc = {**doc, "DockerRootDir": str(root)}
        body = json.dumps(doc).encode()
        daemon.answers[endpoint] = b"" if how == "close" else http(body, 500) if how == "500" else http(body, how=how)
    try:
        tables, facts, errors = collect_api(str(daemon.path), str(root))
    except (OSError, ValueError):
        return  # the contract: collect turns these into an errors row and goes on
    for name, rows in tables.items():
        check(table_of[name], rows, errors)
    assert isinstance(facts, dict)


@pytest.fixture(scope="module")
def api_daemon() -> Iterator[tuple[FakeDaemon, Path]]:
    with temp_dir() as d:
        daemon = FakeDaemon(d / "s.sock")
        try:
            yield daemon, d / "root"
        finally:
            daemon.close()


def test_collect_when_the_daemon_dies_mid_answer(api_daemon: tuple[FakeDaemon, Path], tmp_path: Path) -> None:
    """The daemon answers /version and /info for this data root, then dies in the middle of /images/json:
    the collect still writes its snapshot; the API's failure is an errors row and the manifest says so."""
    daemon, _ = api_daemon
    root = build_standard(tmp_path / "root", odd=False).root
    daemon.answers = {"/version": http(b'{"Version": "26.1.5", "ApiVersion": "1.45"}'),
                      "/info": http(json.dumps({"DockerRootDir": str(root), "Driver": "overlay2"}).encode()),
                      "/images/json": http(b'[{"Id": "sha256:' + b"a" * 64 + b'"}]', how="truncated")}
    res = collect(CollectOptions(root=str(root), out=str(tmp_path / "snap"), jobs=1, socket=str(daemon.path)))
    assert res.manifest["api_status"].startswith("no answer"), res.manifest["api_status"]
    api_errors = [e for e in pq.read_table(tmp_path / "snap" / "errors.parquet").to_pylist() if e["source"] == "api"]
    assert [e["op"] for e in api_errors] == ["request"] and "IncompleteRead" in api_errors[0]["message"], api_errors


# --- end to end: `snapper collect` on a fuzzed root -------------------------------------------------------------

def fuzz_root(root: Path, rnd: random.Random) -> int:
    """Spoil a standard synthetic root the way a broken or hostile host would; returns how many changes."""
    changes = 0
    meta_files = [p for sub in ("image", "containers") for p in sorted((root / sub).rglob("*"))
                  if p.is_file() and not p.is_symlink()]
    for p in rnd.sample(meta_files, k=len(meta_files) // 3):
        data = p.read_bytes()
        choice = rnd.randrange(6)
        new = [data[: rnd.randrange(len(data) + 1)], rnd.randbytes(rnd.randrange(200)), deep_json(100_000),
               with_lone_surrogates(data) if data.startswith(b"{") else LONE_SURROGATE.encode(),
               b"9" * 30, bytes(b ^ 0x20 for b in data)][choice]
        p.unlink()
        p.write_bytes(new)
        changes += 1
    odd = [b"bad-\xff-name", b"new\nline", b"L" * 255, b"a" * 64 + b"\n", "\u00b2".encode()]
    for base in ("image/overlay2/layerdb/sha256", "image/overlay2/layerdb/mounts", "image/overlay2/layerdb/tmp",
                 "image/overlay2/imagedb/content/sha256", "containers", "overlay2", "buildkit/executor",
                 f"containerd/daemon/{SNAPSHOTTER}/snapshots"):
        b = os.fsencode(root / base)
        os.makedirs(b, exist_ok=True)
        for n in odd:
            put(b, n, rnd.choice([DIR, b"\x00junk", FIFO, SYMLINK_LOOP, SYMLINK_OUT]))
            changes += 1
    for rel, src in TARGETS.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(corrupt(SOURCES[src], rnd.choice(["truncate", "flip", "random-page"]), rnd))
        changes += 1
    return changes


def test_collect_end_to_end_on_a_fuzzed_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    build_standard(root, seed=7, odd=False)
    assert fuzz_root(root, random.Random(7)) > 40
    out = tmp_path / "snap"
    res = subprocess.run([sys.executable, "-m", "snapper.cli", "collect", "--root", str(root), "--out", str(out),
                          "--no-api", "--jobs", "2", "-q"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert len(res.stderr.splitlines()) <= 1 and "Traceback" not in res.stderr, res.stderr
    snap = open_snapshot(out)
    errors = pq.read_table(snap.table_path("errors")).to_pylist()
    sources = {e["source"] for e in errors}
    assert {"layerdb", "images", "containers"} <= sources, sources
    assert len(errors) >= 15
    shutil.rmtree(out)


@pytest.mark.parametrize("depth", [100_000])
def test_deeply_nested_json_is_an_error_row(tmp_path: Path, depth: int) -> None:
    """The smallest reproduction of the recursion case above, for each JSON reader."""
    sr = SyntheticRoot(tmp_path / "root")
    put(os.fsencode(sr.image_dir), b"repositories.json", deep_json(depth))
    put(os.fsencode(sr.image_dir / "imagedb" / "content" / "sha256"), b"a" * 64, deep_json(depth))
    cdir = sr.root / "containers" / ("c" * 64)
    cdir.mkdir()
    put(os.fsencode(cdir), b"config.v2.json", deep_json(depth))
    tags, e1 = read_tags(sr.image_dir, REL)
    images, e2 = read_images(sr.image_dir, REL, tags)
    containers, e3 = read_containers(sr.root)
    assert [e["op"] for e in e1 + e2 + e3] == ["parse", "parse", "parse"]
    assert images[0]["problem"] and containers[0]["problem"]


def test_oversized_metadata_is_an_error_row_not_a_read(tmp_path: Path) -> None:
    """A 65 MB (sparse) image config, container config and repositories.json: refused before reading."""
    sr = SyntheticRoot(tmp_path / "root")
    paths = [sr.image_dir / "repositories.json", sr.image_dir / "imagedb" / "content" / "sha256" / ("b" * 64),
             sr.root / "containers" / ("c" * 64) / "config.v2.json"]
    paths[2].parent.mkdir()
    for p in paths:
        with open(p, "wb") as f:
            f.truncate(65 * 1024 * 1024)
    tags, e1 = read_tags(sr.image_dir, REL)
    images, e2 = read_images(sr.image_dir, REL, tags)
    containers, e3 = read_containers(sr.root)
    errors = e1 + e2 + e3
    assert [e["op"] for e in errors] == ["read", "read", "read"], errors
    assert all("larger than" in e["message"] for e in errors), errors
    check(IMAGES, images, e2)
    check(CONTAINERS, containers, e3)
