"""snapper.nwalk: the native walk gives the rows, layer results and errors rows of the Python walk."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from snapper import nwalk
from snapper.metadata.mountinfo import read_mountinfo
from snapper.walkpool import walk_layers
from tests.synthetic import SyntheticRoot, add_odd_files, can_mount, make_chain, make_comb, mounted

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _built() -> bool:
    try:
        from snapper import _nwalk  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture()
def native() -> None:
    """The extension must be built under CI=true (so CI exercises it); elsewhere the tests skip without it."""
    if not _built():
        if os.environ.get("CI") == "true":
            pytest.fail("snapper._nwalk is not built (pip install -e . builds it; see setup.py)")
        pytest.skip("snapper._nwalk is not built (python3 setup.py build_ext --inplace)")


Walked = tuple[list[dict[str, Any]], list[Any]]


def walk(overlay: Path, use_native: bool, monkeypatch: pytest.MonkeyPatch, hash_mode: str = "none",
         mount_points: frozenset[bytes] = frozenset(), jobs: int = 1) -> Walked:
    """Every entry of ``overlay`` through walk_layers: sorted rows, and sorted (layer result, errors)."""
    monkeypatch.setenv("SNAPPER_NATIVE", "1" if use_native else "0")
    assert (nwalk.native_module() is not None) == use_native
    names = sorted(os.listdir(os.fsencode(str(overlay))))
    batches: list[pa.RecordBatch] = []
    layers: list[Any] = []
    for kind, payload, errors in walk_layers(os.fsencode(str(overlay)), names, hash_mode, mount_points, jobs,
                                             iter([]), {}):
        if kind == "batch":
            batches.append(payload)
        else:
            layers.append((payload.as_dict(), sorted(errors, key=repr)))
    rows = pa.Table.from_batches(batches).to_pylist() if batches else []
    return (sorted(rows, key=lambda r: (r["layer_id"], r["path"], r["path_raw"] or b"")),
            sorted(layers, key=lambda x: x[0]["layer_id"]))


def assert_same(overlay: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> Walked:
    py = walk(overlay, False, monkeypatch, **kw)
    nat = walk(overlay, True, monkeypatch, **kw)
    assert len(nat[0]) == len(py[0])
    for a, b in zip(nat[0], py[0], strict=True):
        assert a == b
    assert nat[1] == py[1]
    return nat


def hostile(sr: SyntheticRoot) -> SyntheticRoot:
    """The trees tests/test_walk.py builds, in one root: odd names and kinds (FIFO, symlinks, sparse, hard
    links, whiteouts, opaque dirs, non-UTF-8 and 255-byte names), a hard link across layers, a chain past
    PATH_MAX, a comb whose every level keeps siblings waiting, a huge flat dir, an entry that is a file."""
    odd = sr.add_layer()
    add_odd_files(sr, odd)
    other = sr.add_layer()
    sr.write(other, "shared", b"one inode in two layers")
    os.link(other.diff / "shared", odd.diff / "shared-link")
    deep = sr.add_layer()
    make_chain(deep.diff, 18, b"D" * 255)  # 18 * 256 bytes of path: past PATH_MAX
    (deep.diff / "comb").mkdir()
    make_comb(deep.diff / "comb", 700)  # more levels keep a fd than MAX_FDS allows
    flat = sr.add_layer()
    sr.add_bulk(flat, 6_000, per_dir=6_000, data=b"x")
    sr.write(flat, "sub/.wh.gone", b"")
    (sr.overlay / "not-a-dir").write_bytes(b"an entry that is a file")
    return sr


@pytest.fixture()
def sr(tmp_path: Path) -> Iterator[SyntheticRoot]:
    yield SyntheticRoot(tmp_path / "root")
    subprocess.run(["rm", "-rf", str(tmp_path / "root")], check=True)  # shutil.rmtree recurses per level


@pytest.mark.parametrize("hash_mode", ["none", "partial", "full"])
def test_same_rows_on_the_hostile_tree(native: None, sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch,
                                       hash_mode: str) -> None:
    hostile(sr)
    before = set(os.listdir("/proc/self/fd"))
    rows, layers = assert_same(sr.overlay, monkeypatch, hash_mode=hash_mode)
    assert set(os.listdir("/proc/self/fd")) == before  # every fd closed
    assert len(rows) > 8_000
    paths = {r["path"] for r in rows}
    assert any(len(p.encode()) > 4096 for p in paths)  # deeper than PATH_MAX
    assert any(r["whiteout"] for r in rows) and any(r["opaque"] for r in rows)
    assert any(r["path_raw"] is not None for r in rows) and any(r["link_target"] for r in rows)
    if hash_mode != "none":
        assert sum(r["hash"] is not None for r in rows) > 5_000
    assert all(res["walk_status"] == "ok" for res, _ in layers)


def test_same_rows_when_no_parent_fd_is_kept(native: None, sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_fds=0: every dir is opened from the layer's top fd, a PATH_MAX-sized chunk of path per openat."""
    monkeypatch.setattr(nwalk, "MAX_FDS", 0)
    assert_same(hostile(sr).overlay, monkeypatch)


def test_same_rows_without_proc(native: None, sr: SyntheticRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opaque xattrs read through an fd of each dir when /proc/self/fd is not there."""
    monkeypatch.setattr(nwalk, "PROC_FD", False)
    assert_same(hostile(sr).overlay, monkeypatch)


def test_same_rows_with_one_thread_and_with_many(native: None, sr: SyntheticRoot,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hostile(sr)
    monkeypatch.setenv(nwalk.THREADS_ENV, "1")
    one = walk(sr.overlay, True, monkeypatch)
    monkeypatch.setenv(nwalk.THREADS_ENV, "32")
    assert walk(sr.overlay, True, monkeypatch) == one


@pytest.mark.skipif(not can_mount(), reason="needs root and mount(8)")
def test_mount_points_below_the_top_are_recorded_not_descended(native: None, sr: SyntheticRoot, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    layer = sr.add_layer()
    sr.write(layer, "a/b/file", b"x")
    for d in ("a/tmp", "a/b/bound"):
        (layer.diff / d).mkdir()
    src = tmp_path / "bind-src"
    src.mkdir()
    (src / "inside-bind").write_bytes(b"must not be walked")
    with mounted(layer.diff / "a/tmp", "-t", "tmpfs", "-o", "size=1m", "tmpfs"), \
            mounted(layer.diff / "a/b/bound", "--bind", str(src)):
        (layer.diff / "a/tmp/inside-tmpfs").write_bytes(b"must not be walked")
        points = read_mountinfo(sr.root)[2]
        rows, _ = assert_same(sr.overlay, monkeypatch, mount_points=points)
    mounts = {r["path"] for r in rows if r["mount_point"]}
    assert mounts == {"diff/a/tmp", "diff/a/b/bound"}
    assert not [r for r in rows if "inside" in r["path"]]


class _Swapping(nwalk.TreeWalker):
    """Lists a layer's top, then swaps its diff/ before the threads open it."""

    swap: Any = None

    def walk_layer(self, name: bytes) -> Any:
        handoff = self.handoff

        def swap_then_hand(dirs: list[tuple[str, int]], ino: int) -> None:
            type(self).swap(Path(os.fsdecode(self.top)) / "diff")
            assert handoff is not None
            handoff(dirs, ino)

        self.handoff = swap_then_hand
        try:
            return super().walk_layer(name)
        finally:
            self.handoff = handoff


@pytest.mark.parametrize("how", ["symlink", "other dir", "gone"])
def test_dir_replaced_after_lstat_is_not_followed(native: None, sr: SyntheticRoot, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    layer = sr.add_layer()
    sr.write(layer, "etc/passwd", b"root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"must not be walked")

    def swap(diff: Path) -> None:
        diff.rename(diff.with_name("old-diff"))
        if how == "symlink":
            diff.symlink_to(elsewhere)
        elif how == "other dir":
            diff.mkdir()
            (diff / "secret").write_bytes(b"must not be walked")

    _Swapping.swap = staticmethod(swap)
    monkeypatch.setattr(nwalk, "TreeWalker", _Swapping)
    rows, layers = walk(sr.overlay, True, monkeypatch)
    assert not [r for r in rows if "secret" in r["path"] or r["path"].startswith("diff/")]
    (res, errors), = [x for x in layers if x[0]["layer_id"] == layer.dir_id]
    assert res["walk_status"] == "partial" and res["walk_errors"] == 1
    msg = {"symlink": "no longer a directory (replaced between lstat and open): not listed",
           "other dir": "replaced by another directory or a symlink between lstat and open: not listed",
           "gone": "vanished during the walk"}[how]
    assert errors == [{"source": "walk", "object": f"overlay2/{layer.dir_id}/diff", "op": "scandir",
                       "errno": None if how == "other dir" else errors[0]["errno"], "message": msg}]


def test_same_rows_on_a_generated_100k_tree(native: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_gen_nwalk", BENCH / "gen.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen
    spec.loader.exec_module(gen)
    s = gen.generate(tmp_path / "root", 100_000, 0, "sparse")
    rows, layers = assert_same(tmp_path / "root" / "overlay2", monkeypatch, jobs=2)
    assert len(rows) >= 0.9 * s.entries and len(layers) == len(s.layers) + 1


def test_fallback_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPPER_NATIVE", "0")
    assert nwalk.native_module() is None
    assert nwalk.fallback_reason() == "SNAPPER_NATIVE=0: using the pure-Python walk"
    monkeypatch.setenv("SNAPPER_NATIVE", "1")
    monkeypatch.setitem(sys.modules, "snapper._nwalk", None)  # as if it was never built
    assert nwalk.native_module() is None
    reason = nwalk.fallback_reason()
    assert reason is not None and "not built" in reason and "\n" not in reason


@pytest.mark.parametrize("native_env", ["0", "1"])
def test_collect_says_in_one_line_when_it_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     native_env: str) -> None:
    from typer.testing import CliRunner

    from snapper.cli import app
    from tests.synthetic import build_standard

    std = build_standard(tmp_path / "root", odd=False)
    monkeypatch.setenv("SNAPPER_NATIVE", native_env)
    res = CliRunner().invoke(app, ["collect", "--root", str(std.root), "--out", str(tmp_path / "snap"), "--no-api",
                                   "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if "walk" in line]
    if native_env == "0":
        assert notes == ["note: SNAPPER_NATIVE=0: using the pure-Python walk"]
    elif _built():
        assert notes == []
