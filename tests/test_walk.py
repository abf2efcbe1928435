"""snapper.walk: the lstat-only walk of one overlay2 entry, on synthetic layers."""

from __future__ import annotations

import collections
import errno
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapper import walk
from snapper.filerows import LayerWalker
from snapper.metadata.mountinfo import read_mountinfo
from snapper.schema import FILES
from snapper.walk import PARTIAL_CHUNK, LayerResult, show_bytes, type_char
from tests.synthetic import (
    LONG_NAME,
    NEWLINE,
    NON_UTF8,
    SPARSE_SIZE,
    Layer,
    SyntheticRoot,
    add_odd_files,
    after_listing,
    can_mount,
    delete_between_scandir_and_stat,
    du_allocated,
    du_apparent,
    find_count,
    make_chain,
    make_comb,
    mounted,
    mounts_under,
    resolved,
)

needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root and mount(8)")


def walk_layer(overlay: Path, name: str | bytes, hash_mode: str = "none",
               mount_points: frozenset[bytes] = frozenset(), batch_rows: int = 65536,
               **tree: Any) -> tuple[LayerResult, list[dict[str, Any]], list[dict[str, Any]]]:
    """Walk one entry; return its result, its files rows and its errors rows. ``tree``: TreeWalker
    attributes to set first (max_open, proc_fd)."""
    batches: list[pa.RecordBatch] = []
    w = LayerWalker(os.fsencode(str(overlay)), "overlay2", hash_mode, mount_points, batches.append, batch_rows)
    for k, v in tree.items():
        setattr(w.tree, k, v)
    res = w.walk(os.fsencode(name))
    w.flush()
    rows = pa.Table.from_batches(batches, schema=FILES.schema).to_pylist() if batches else []
    return res, rows, w.errors


def by_raw_path(rows: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """Rows keyed by their exact path bytes (path_raw when set, else the UTF-8 path)."""
    return {(r["path_raw"] if r["path_raw"] is not None else r["path"].encode()): r for r in rows}


@pytest.fixture()
def sr(tmp_path: Path) -> SyntheticRoot:
    return SyntheticRoot(tmp_path / "root")


@pytest.fixture()
def odd_layer(sr: SyntheticRoot) -> tuple[Layer, dict[str, bytes]]:
    layer = sr.add_layer()
    return layer, add_odd_files(sr, layer)


# --- names ------------------------------------------------------------------------------------------------

def test_non_utf8_newline_and_255_byte_names(sr: SyntheticRoot, odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    layer, odd = odd_layer
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id)
    assert errors == [] and res.walk_status == "ok"
    rows_by = by_raw_path(rows)

    bad = rows_by[b"diff/" + odd["non_utf8"]]
    assert bad["path_raw"] == b"diff/odd/" + NON_UTF8  # the exact bytes
    assert bad["path"] == "diff/odd/bad-\\xff\\xfe-name"  # shown as \xNN
    child = rows_by[b"diff/" + odd["non_utf8_dir_child"]]
    assert child["path_raw"] == b"diff/odd/" + NON_UTF8 + b".d/child"
    assert child["path"] == "diff/odd/bad-\\xff\\xfe-name.d/child"

    nl = rows_by[b"diff/odd/" + NEWLINE]
    assert nl["path"] == "diff/odd/new\nline" and nl["path_raw"] is None

    long = rows_by[b"diff/odd/" + LONG_NAME]
    assert long["path"].rsplit("/", 1)[1] == "L" * 255 and long["path_raw"] is None
    assert long["size"] == len(b"long" * 10)
    deep = rows_by[b"diff/" + odd["long_dir_child"]]
    assert deep["type"] == "f" and deep["path"].endswith("/" + "L" * 255)

    # Every UTF-8 row has a null path_raw; every path_raw is a non-UTF-8 path.
    for r in rows:
        if r["path_raw"] is None:
            r["path"].encode("utf-8")
        else:
            with pytest.raises(UnicodeDecodeError):
                r["path_raw"].decode("utf-8")
            assert r["path"] == r["path_raw"].decode("utf-8", "backslashreplace")


def _names() -> st.SearchStrategy[bytes]:
    raw = st.binary(min_size=1, max_size=255).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
    text = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                   max_size=60).map(lambda s: s.encode()).filter(lambda b: len(b) <= 255)
    return st.one_of(raw, text).filter(lambda b: b not in (b".", b".."))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_names())
def test_any_name_round_trips_through_path_and_path_raw(tmp_path: Path, name: bytes) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    diff = os.fsencode(str(base / "layer" / "diff"))
    os.makedirs(diff)
    fd = os.open(os.path.join(diff, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, name)
    os.close(fd)
    _, rows, errors = walk_layer(base, "layer", "full")
    assert errors == []
    (row,) = [r for r in rows if r["type"] == "f"]
    exact = b"diff/" + name
    assert (row["path_raw"] if row["path_raw"] is not None else row["path"].encode()) == exact
    assert row["path"] == exact.decode("utf-8", "backslashreplace")
    try:
        exact.decode("utf-8")
        assert row["path_raw"] is None
    except UnicodeDecodeError:
        assert row["path_raw"] == exact
    assert row["hash"] == xxhash.xxh3_128(name).digest()
    assert show_bytes(exact) == (row["path"], row["path_raw"])


# --- sizes: hard links, sparse files, du and find ------------------------------------------------------------

def test_hard_links_in_a_layer_counted_once_like_du(sr: SyntheticRoot) -> None:
    layer = sr.add_layer()
    a = sr.write(layer, "usr/bin/tool", os.urandom(100_000))
    os.link(a, layer.diff / "usr/bin/tool-alias")
    os.makedirs(layer.diff / "opt")
    os.link(a, layer.diff / "opt/tool-copy")
    sr.write(layer, "etc/conf", b"x" * 5000)
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id)
    assert errors == []
    tools = [r for r in rows if r["path"].endswith(("tool", "tool-alias", "tool-copy"))]
    assert len(tools) == 3 and len({r["inode"] for r in tools}) == 1 and {r["nlink"] for r in tools} == {3}
    # Each row still shows its own allocation; the layer total counts the inode once.
    assert res.allocated_bytes == sum(r["allocated"] for r in rows) - 2 * tools[0]["allocated"]
    assert res.allocated_bytes == du_allocated(layer.path)
    assert res.apparent_bytes == du_apparent(layer.path)
    assert res.file_count == find_count(layer.path) == len(rows)


def test_odd_layer_matches_du_and_find(sr: SyntheticRoot, odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    layer, _ = odd_layer
    res, rows, _ = walk_layer(sr.overlay, layer.dir_id, "partial")
    assert res.allocated_bytes == du_allocated(layer.path)
    assert res.apparent_bytes == du_apparent(layer.path)
    assert res.file_count == find_count(layer.path) == len(rows)


def test_hard_link_across_layers(sr: SyntheticRoot) -> None:
    one = sr.add_layer()
    two = sr.add_layer(None, one)
    shared = sr.write(one, "lib/shared.so", os.urandom(50_000))
    os.makedirs(two.diff / "lib")
    os.link(shared, two.diff / "lib/shared.so")
    res1, rows1, _ = walk_layer(sr.overlay, one.dir_id)
    res2, rows2, _ = walk_layer(sr.overlay, two.dir_id)
    r1 = next(r for r in rows1 if r["path"] == "diff/lib/shared.so")
    r2 = next(r for r in rows2 if r["path"] == "diff/lib/shared.so")
    assert (r1["inode"], r1["dev"], r1["nlink"]) == (r2["inode"], r2["dev"], 2)
    # Each layer counts the shared inode once, as `du` of that layer alone does ...
    assert res1.allocated_bytes == du_allocated(one.path)
    assert res2.allocated_bytes == du_allocated(two.path)
    # ... so the per-layer totals add up to more than `du` of both together, by exactly that inode.
    assert res1.allocated_bytes + res2.allocated_bytes - du_allocated(one.path, two.path) == r1["allocated"]


def test_sparse_file(sr: SyntheticRoot, odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    layer, odd = odd_layer
    _, rows, _ = walk_layer(sr.overlay, layer.dir_id)
    sparse = by_raw_path(rows)[b"diff/" + odd["sparse"]]
    assert sparse["size"] == SPARSE_SIZE
    assert 0 < sparse["allocated"] < sparse["size"]
    assert sparse["allocated"] == os.lstat(os.path.join(os.fsencode(layer.diff), odd["sparse"])).st_blocks * 512


# --- overlay markers --------------------------------------------------------------------------------------

def test_whiteouts_and_opaque_dirs(sr: SyntheticRoot, odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    layer, odd = odd_layer
    os.mknod(layer.diff / "null-like", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a char device, not 0/0
    os.mkdir(layer.diff / "user-opaque")
    os.setxattr(layer.diff / "user-opaque", "user.overlay.opaque", b"y")
    os.mkdir(layer.diff / "not-opaque")
    os.setxattr(layer.diff / "not-opaque", "trusted.overlay.opaque", b"n")
    _, rows, errors = walk_layer(sr.overlay, layer.dir_id)
    assert errors == []
    rows_by = by_raw_path(rows)
    wh = rows_by[b"diff/" + odd["whiteout"]]
    assert (wh["type"], wh["whiteout"], wh["size"]) == ("c", True, 0)
    assert rows_by[b"diff/null-like"]["whiteout"] is False and rows_by[b"diff/null-like"]["type"] == "c"
    assert [r["path"] for r in rows if r["whiteout"]] == ["diff/odd/deleted-file"]
    assert sorted(r["path"] for r in rows if r["opaque"]) == ["diff/odd/opaque-dir", "diff/user-opaque"]
    assert rows_by[b"diff/" + odd["opaque_child"]]["opaque"] is False


def test_layer_markers_and_dot_row(sr: SyntheticRoot) -> None:
    base = sr.add_layer()
    child = sr.add_layer(None, base)
    res, rows, _ = walk_layer(sr.overlay, child.dir_id)
    assert res.markers == {"diff": True, "link": True, "lower": True, "work": True}
    assert res.link_id == child.link_id and res.lower == f"l/{base.link_id}"
    dot = rows[0]
    st_dir = os.lstat(child.path)
    assert (dot["path"], dot["type"], dot["inode"]) == (".", "d", st_dir.st_ino)
    assert (res.dir_inode, res.dir_mtime_ns) == (st_dir.st_ino, st_dir.st_mtime_ns)
    assert res.link_mtime_ns == os.lstat(child.path / "link").st_mtime_ns
    assert res.diff_ctime_ns == os.lstat(child.diff).st_ctime_ns
    res_base, _, _ = walk_layer(sr.overlay, base.dir_id)
    assert res_base.markers == {"diff": True, "link": True, "committed": True} and res_base.lower is None


def test_entry_that_is_a_file(sr: SyntheticRoot) -> None:
    (sr.overlay / "stray").write_bytes(b"x" * 10)
    res, rows, errors = walk_layer(sr.overlay, "stray")
    assert (res.entry_type, res.file_count, errors) == ("f", 1, [])
    assert [(r["path"], r["type"], r["size"]) for r in rows] == [(".", "f", 10)]


def test_small_batches_give_the_same_rows(sr: SyntheticRoot, odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    layer, _ = odd_layer
    _, big, _ = walk_layer(sr.overlay, layer.dir_id, "partial")
    _, small, _ = walk_layer(sr.overlay, layer.dir_id, "partial", batch_rows=3)
    assert small == big


# --- never open anything but regular files -----------------------------------------------------------------

def test_fifo_and_symlink_recorded_never_opened(sr: SyntheticRoot, odd_layer: tuple[Layer, dict[str, bytes]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    layer, odd = odd_layer
    opened: list[tuple[bytes, int]] = []  # (absolute path, flags)
    real_open = os.open

    def spy(path: Any, flags: int, *args: Any, dir_fd: int | None = None, **kw: Any) -> int:
        where = os.fsencode(os.readlink(f"/proc/self/fd/{dir_fd}")) if dir_fd is not None else b""
        opened.append((os.path.join(where, os.fsencode(path)), flags))
        return real_open(path, flags, *args, dir_fd=dir_fd, **kw)

    monkeypatch.setattr(os, "open", spy)
    _, rows, errors = walk_layer(sr.overlay, layer.dir_id, "full")
    monkeypatch.undo()
    assert errors == []
    diff = os.fsencode(str(layer.diff))
    paths = [p for p, _ in opened]
    assert os.path.join(diff, odd["fifo"]) not in paths
    assert os.path.join(diff, odd["shadow"]) not in paths
    assert b"/etc/shadow" not in paths
    # Only regular files (to hash, and the link/lower markers to read) and directories (each once, to list
    # it), never through a symlink at the end.
    dirs = [p for p, f in opened if f & os.O_DIRECTORY]
    assert dirs and len(set(dirs)) == len(dirs), [p for p, n in collections.Counter(dirs).items() if n > 1]
    for p, flags in opened:
        assert flags & os.O_NOFOLLOW, p
        mode = os.lstat(p).st_mode
        assert stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and flags & os.O_DIRECTORY), p
    assert {p for p, f in opened if f & os.O_DIRECTORY} == \
        {os.fsencode(str(d)) for d in [layer.path, *layer.path.rglob("*")] if d.is_dir() and not d.is_symlink()}
    rows_by = by_raw_path(rows)
    fifo = rows_by[b"diff/" + odd["fifo"]]
    assert (fifo["type"], fifo["hash"], fifo["link_target"]) == ("p", None, None)
    link = rows_by[b"diff/" + odd["shadow"]]
    assert (link["type"], link["link_target"], link["hash"]) == ("l", "/etc/shadow", None)
    assert link["size"] == len("/etc/shadow")  # the link itself, not the file it names
    assert all(r["hash"] is not None for r in rows if r["type"] == "f")
    assert all(r["hash"] is None for r in rows if r["type"] != "f")


def test_file_replaced_by_fifo_after_lstat_is_not_read(sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    """content_hash re-checks the inode after open: a swap between lstat and open is an error row."""
    layer = sr.add_layer()
    target = sr.write(layer, "swap", b"data")
    real_hash = walk.content_hash

    def swap_then_hash(path: str | bytes, st_: os.stat_result, mode: str, dir_fd: int | None = None) -> bytes:
        if resolved(path, dir_fd) == os.fsencode(str(target)):
            os.unlink(target)
            os.mkfifo(target)
        return real_hash(path, st_, mode, dir_fd)

    monkeypatch.setattr(walk, "content_hash", swap_then_hash)
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id, "full")
    assert [(e["op"], e["object"]) for e in errors] == [("hash", f"overlay2/{layer.dir_id}/diff/swap")]
    assert next(r for r in rows if r["path"] == "diff/swap")["hash"] is None
    assert res.walk_status == "partial"


# --- failures are rows -----------------------------------------------------------------------------------

def test_file_deleted_mid_walk_is_one_error_row(sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = sr.add_layer()
    for i in range(5):
        sr.write(layer, f"tmp/f{i}", b"x")
    delete_between_scandir_and_stat(monkeypatch, layer.diff / "tmp", layer.diff / "tmp/f3")
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id, "full")
    assert errors == [{"source": "walk", "object": f"overlay2/{layer.dir_id}/diff/tmp/f3", "op": "lstat",
                       "errno": errno.ENOENT, "message": "vanished during the walk"}]
    assert (res.walk_status, res.walk_errors) == ("partial", 1)
    assert sorted(r["path"] for r in rows if r["path"].startswith("diff/tmp/")) == \
        ["diff/tmp/f0", "diff/tmp/f1", "diff/tmp/f2", "diff/tmp/f4"]


def test_layer_vanished_before_walk(sr: SyntheticRoot) -> None:
    res, rows, errors = walk_layer(sr.overlay, "0" * 64)
    assert (res.walk_status, res.walk_errors, rows) == ("vanished", 1, [])
    assert errors[0]["op"] == "lstat" and errors[0]["errno"] == errno.ENOENT


def test_unreadable_dir_is_an_error_row_not_a_crash(sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = sr.add_layer()
    sr.write(layer, "locked/inner", b"x")
    sr.write(layer, "open/fine", b"x")
    real = os.open
    locked = os.fsencode(str(layer.diff / "locked"))

    def refuse(path: Any, flags: int, *args: Any, dir_fd: int | None = None, **kw: Any) -> int:
        if resolved(path, dir_fd) == locked:  # root reads anything: refuse the way the kernel would
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, flags, *args, dir_fd=dir_fd, **kw)

    monkeypatch.setattr(os, "open", refuse)
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id)
    assert [(e["op"], e["errno"], e["object"]) for e in errors] == \
        [("scandir", errno.EACCES, f"overlay2/{layer.dir_id}/diff/locked")]
    assert res.walk_status == "partial"
    assert {"diff/locked", "diff/open/fine"} <= {r["path"] for r in rows}


@pytest.fixture
def rm_after() -> Iterator[list[Path]]:
    """Dirs to remove with ``rm -rf`` after the test: pytest's own clean-up (shutil.rmtree) recurses once
    per level and fails on the deep trees these tests make."""
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        subprocess.run(["rm", "-rf", str(d)], check=True)


def test_paths_longer_than_path_max_are_walked(sr: SyntheticRoot, rm_after: list[Path]) -> None:
    layer = sr.add_layer()
    rm_after.append(layer.path)
    make_chain(layer.diff, 18, b"D" * 255)  # 18 * 256 bytes > PATH_MAX
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id)
    assert errors == []
    assert res.file_count == find_count(layer.path) == len(rows)
    deepest = "diff/" + "/".join(["D" * 255] * 18) + "/leaf"
    assert len(deepest.encode()) > 4096 and deepest in {r["path"] for r in rows}


def test_deep_comb_past_the_fd_budget_is_linear(sr: SyntheticRoot, rm_after: list[Path]) -> None:
    """3,000 levels that each keep siblings waiting: parent fds past max_open are not kept, subdirs are
    reached by climbing with "..", every entry is recorded once, no fd is left open."""
    layer = sr.add_layer()
    rm_after.append(layer.path)
    make_comb(layer.diff, 3000)
    before = set(os.listdir("/proc/self/fd"))
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id, "partial")
    assert set(os.listdir("/proc/self/fd")) == before
    assert errors == [] and res.walk_status == "ok"
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == find_count(layer.path) == 3 + 4 * 3000
    assert "diff/" + "/".join(["d"] * 2999) + "/s2" in set(paths)


def test_opaque_dirs_found_past_path_max_with_or_without_proc(sr: SyntheticRoot, rm_after: list[Path],
                                                             odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    """xattrs have no *at calls: they are read through /proc/self/fd/<parent>/<name>, or without /proc
    through an fd of the dir itself; either way an opaque dir deeper than PATH_MAX is flagged."""
    layer, _ = odd_layer
    rm_after.append(layer.path)
    make_chain(layer.diff, 18, b"O" * 255)
    fd = os.open(layer.diff, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(18):
            nfd = os.open(b"O" * 255, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.setxattr(fd, "trusted.overlay.opaque", b"y")
    finally:
        os.close(fd)
    deepest = "diff/" + "/".join(["O" * 255] * 18)
    _, with_proc, errors = walk_layer(sr.overlay, layer.dir_id, "partial")
    _, without, errors_without = walk_layer(sr.overlay, layer.dir_id, "partial", proc_fd=False)
    assert errors == errors_without == []
    assert without == with_proc
    opaque = {r["path"] for r in with_proc if r["opaque"]}
    assert deepest in opaque and len(opaque) >= 2  # and the odd layer's own opaque dir


@pytest.mark.parametrize("max_open", [0, 1, 3])
def test_dirs_reopened_when_parent_fds_are_not_kept(sr: SyntheticRoot, max_open: int, rm_after: list[Path],
                                                    odd_layer: tuple[Layer, dict[str, bytes]]) -> None:
    """With few (or no) parent fds kept, subdirs are reopened (climbing with ".." past PATH_MAX): the same
    rows, no fd left open."""
    layer, _ = odd_layer
    rm_after.append(layer.path)
    make_chain(layer.diff, 40, b"E" * 200)  # 8 kB of path: two chunks
    for i in range(4):  # a wide, deep comb: every level keeps subdirs waiting
        make_chain(layer.diff / "odd", 30, b"c%d" % i)
    before = set(os.listdir("/proc/self/fd"))
    res_all, all_rows, errs_all = walk_layer(sr.overlay, layer.dir_id, "partial")
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id, "partial", max_open=max_open)
    assert set(os.listdir("/proc/self/fd")) == before
    assert errors == errs_all == []
    assert rows == all_rows and res == res_all
    assert res.file_count == find_count(layer.path)


def test_many_dirs_waiting_keep_at_most_max_open_fds(sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = sr.add_layer()
    for i in range(6):
        make_chain(layer.diff, 50, b"w%d" % i)  # 50 levels of dirs that each have a sibling chain waiting
        (layer.diff / f"w{i}" / "x").mkdir()
    most = [0]
    real = os.scandir

    def count(path: Any = ".") -> Any:
        most[0] = max(most[0], len(os.listdir("/proc/self/fd")))
        return real(path)

    monkeypatch.setattr(os, "scandir", count)
    base = len(os.listdir("/proc/self/fd"))
    res, _, errors = walk_layer(sr.overlay, layer.dir_id, "partial", max_open=5)
    assert errors == [] and res.file_count == find_count(layer.path)
    assert most[0] - base <= 5 + 3, most[0] - base  # the kept ones + top + the dir being listed (+ listdir's)


def test_dir_swapped_for_a_symlink_after_lstat_is_not_followed(sr: SyntheticRoot, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """TOCTOU: diff/sub is a directory when its parent is listed, a symlink to /etc-like bait when the walk
    gets to it. The walk must not list the bait: one errors row, nothing below diff/sub."""
    layer = sr.add_layer()
    sr.write(layer, "sub/mine", b"x")
    bait = tmp_path / "bait"
    (bait / "deeper").mkdir(parents=True)
    (bait / "shadow").write_bytes(b"secret")

    def swap() -> None:
        os.rename(layer.diff / "sub", layer.diff / "moved")
        os.symlink(bait, layer.diff / "sub")

    after_listing(monkeypatch, layer.diff, swap)
    res, rows, errors = walk_layer(sr.overlay, layer.dir_id, "partial")
    assert not [r for r in rows if r["path"].startswith("diff/sub/")]
    # O_NOFOLLOW|O_DIRECTORY on a symlink: ENOTDIR
    assert [(e["object"], e["op"], e["errno"]) for e in errors] == [(f"overlay2/{layer.dir_id}/diff/sub", "scandir",
                                                                     errno.ENOTDIR)]
    assert res.walk_status == "partial"


def test_dir_swapped_for_another_dir_is_not_listed(sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = sr.add_layer()
    sr.write(layer, "sub/mine", b"x")

    def swap() -> None:
        os.rename(layer.diff / "sub", layer.diff / "moved")
        (layer.diff / "sub").mkdir()
        (layer.diff / "sub" / "planted").write_bytes(b"y")

    after_listing(monkeypatch, layer.diff, swap)
    _, rows, errors = walk_layer(sr.overlay, layer.dir_id, "partial")
    assert not [r for r in rows if r["path"].startswith("diff/sub/")]
    assert len(errors) == 1 and "replaced" in errors[0]["message"], errors


def test_ancestor_swapped_for_a_symlink_is_not_followed_from_the_top(sr: SyntheticRoot, tmp_path: Path) -> None:
    """A dir given away to another walker is opened from the layer's top: if an ancestor became a symlink to a
    copy of the tree meanwhile, the path reaches another inode, which is not listed."""
    layer = sr.add_layer()
    sr.write(layer, "a/b/c/d/mine", b"x")
    ino = os.lstat(layer.diff / "a/b/c").st_ino
    copy = tmp_path / "copy"
    shutil.copytree(layer.diff / "a", copy)
    (copy / "b" / "c" / "d" / "planted").write_bytes(b"y")
    os.rename(layer.diff / "a", layer.diff / "moved")
    os.symlink(copy, layer.diff / "a")
    raws: list[Any] = []
    tw = walk.TreeWalker(os.fsencode(str(sr.overlay)), "overlay2", "none", frozenset(), raws.append)
    tw.walk_dirs(os.fsencode(layer.dir_id), os.lstat(layer.path).st_dev, [("diff/a/b/c", ino)])
    assert raws == []
    assert [(e["object"], e["errno"]) for e in tw.errors] == [(f"overlay2/{layer.dir_id}/diff/a/b/c", None)]
    assert "replaced" in tw.errors[0]["message"]
    # The same dir, not swapped: listed.
    os.unlink(layer.diff / "a")
    os.rename(layer.diff / "moved", layer.diff / "a")
    tw.walk_dirs(os.fsencode(layer.dir_id), os.lstat(layer.path).st_dev, [("diff/a/b/c", ino)])
    assert len(tw.errors) == 1 and sum(r[1] for r in raws) == 2  # d and d/mine


def test_ancestor_moved_while_climbing_lists_the_dir_that_was_seen(sr: SyntheticRoot, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No parent fds kept: subdirs are opened by climbing from the dir listed last (".."), so an ancestor
    swapped for a symlink to a planted copy is never entered; the directory lstat saw is listed."""
    layer = sr.add_layer()
    sr.write(layer, "a/b/c/d/mine", b"x")
    copy = tmp_path / "copy"
    shutil.copytree(layer.diff / "a", copy)
    (copy / "b" / "c" / "d" / "planted").write_bytes(b"y")

    def swap() -> None:
        os.rename(layer.diff / "a", layer.diff / "moved")
        os.symlink(copy, layer.diff / "a")

    after_listing(monkeypatch, layer.diff / "a" / "b", swap)
    _, rows, errors = walk_layer(sr.overlay, layer.dir_id, "partial", max_open=0)
    assert errors == []
    paths = {r["path"] for r in rows}
    assert {"diff/a/b/c/d", "diff/a/b/c/d/mine"} <= paths
    assert not [p for p in paths if "planted" in p]


# --- content hashes ------------------------------------------------------------------------------------------

SIZES = [0, 1, 1000, 2 * PARTIAL_CHUNK - 1, 2 * PARTIAL_CHUNK, 2 * PARTIAL_CHUNK + 1, 300_000, (1 << 20) + 7]


def expected_partial(data: bytes) -> bytes:
    body = data if len(data) <= 128 * 1024 else data[:64 * 1024] + data[-64 * 1024:]
    return xxhash.xxh3_128(len(data).to_bytes(8, "little") + body).digest()


@pytest.mark.parametrize("mode", ["none", "partial", "full"])
def test_hash_modes_match_xxhash(sr: SyntheticRoot, mode: str) -> None:
    layer = sr.add_layer()
    contents = {f"f{n}": os.urandom(n) for n in SIZES}
    for name, data in contents.items():
        sr.write(layer, name, data)
    _, rows, errors = walk_layer(sr.overlay, layer.dir_id, mode)
    assert errors == []
    got = {r["path"][len("diff/"):]: r["hash"] for r in rows if r["type"] == "f"}
    for name, data in contents.items():
        if mode == "none":
            assert got[name] is None
        elif mode == "partial":
            assert got[name] == expected_partial(data), name
        else:
            assert got[name] == xxhash.xxh3_128(data).digest(), name
        assert got[name] is None or len(got[name]) == 16


def test_partial_hash_ignores_the_middle_full_does_not(sr: SyntheticRoot) -> None:
    layer = sr.add_layer()
    head, tail = os.urandom(PARTIAL_CHUNK), os.urandom(PARTIAL_CHUNK)
    sr.write(layer, "a", head + b"A" * 10_000 + tail)
    sr.write(layer, "b", head + b"B" * 10_000 + tail)
    sr.write(layer, "c", head + b"B" * 10_001 + tail)  # one byte longer: the size is in the hash
    _, part, _ = walk_layer(sr.overlay, layer.dir_id, "partial")
    _, full, _ = walk_layer(sr.overlay, layer.dir_id, "full")
    p = {r["path"]: r["hash"] for r in part}
    f = {r["path"]: r["hash"] for r in full}
    assert p["diff/a"] == p["diff/b"] != p["diff/c"]
    assert len({f["diff/a"], f["diff/b"], f["diff/c"]}) == 3


# --- mount points --------------------------------------------------------------------------------------------

@needs_mount
def test_mount_points_are_recorded_not_descended(sr: SyntheticRoot, tmp_path: Path) -> None:
    layer = sr.add_layer()
    sr.write(layer, "etc/app.conf", b"conf")
    for d in ("merged", "bound", "sp ace"):
        (layer.path / d).mkdir()
    src = tmp_path / "bind-src"
    src.mkdir()
    (src / "inside-bind").write_bytes(b"must not be walked")
    try:
        with mounted(layer.path / "merged", "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
            (layer.path / "merged" / "inside-tmpfs").write_bytes(b"must not be walked")
            with mounted(layer.path / "bound", "--bind", str(src)), \
                    mounted(layer.path / "sp ace", "--bind", str(src)):  # mountinfo escapes it as sp\040ace
                _, _, points = read_mountinfo(sr.root)
                assert {os.fsencode(str(layer.path / d)) for d in ("merged", "bound", "sp ace")} <= points
                res, rows, errors = walk_layer(sr.overlay, layer.dir_id, "full", points)
                # Without mountinfo only st_dev is left: it still catches the tmpfs.
                _, rows_dev_only, _ = walk_layer(sr.overlay, layer.dir_id, "none")
                alloc_du = du_allocated(layer.path)
    finally:
        assert mounts_under(sr.root) == []
    assert errors == []
    rows_by = {r["path"]: r for r in rows}
    assert rows_by["merged"]["dev"] != rows_by["."]["dev"]
    assert not [r for r in rows if r["path"].startswith(("merged/", "bound/", "sp ace/"))]
    assert {r["path"] for r in rows if r["mount_point"]} == {"merged", "bound", "sp ace"}
    dev_only = {r["path"]: r["mount_point"] for r in rows_dev_only}
    assert dev_only["merged"] is True and "merged/inside-tmpfs" not in dev_only
    # du -x skips the tmpfs (another device) but descends the same-device bind mount; snapper skips both.
    bound_alloc = os.lstat(src).st_blocks * 512 + os.lstat(src / "inside-bind").st_blocks * 512
    assert res.allocated_bytes == alloc_du - 2 * bound_alloc


def test_type_char_covers_every_kind(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    os.symlink("x", tmp_path / "l")
    (tmp_path / "f").write_bytes(b"")
    os.mknod(tmp_path / "c", stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(tmp_path / "b", stat.S_IFBLK, os.makedev(7, 0))
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "s"))
    s.close()
    got = {n: type_char(os.lstat(tmp_path / n).st_mode) for n in "plfcbs"}
    assert got == {n: n for n in "plfcbs"}
    assert type_char(os.lstat(tmp_path).st_mode) == "d"


def test_entry_that_is_a_symlink_is_not_followed(sr: SyntheticRoot) -> None:
    os.symlink("/etc", sr.overlay / "evil")
    res, rows, errors = walk_layer(sr.overlay, "evil", "full")
    assert (res.entry_type, res.file_count, errors) == ("l", 1, [])
    assert [(r["path"], r["type"], r["link_target"], r["hash"]) for r in rows] == [(".", "l", "/etc", None)]
