"""snapper.collect: one collection of a synthetic data root -> one snapshot, end to end."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from snapper import __version__
from snapper.collect import CollectOptions, collect
from snapper.schema import SCHEMA_VERSION, TABLES
from snapper.snapshot import PARTIAL_MARK, open_snapshot
from tests.synthetic import (
    Standard,
    SyntheticRoot,
    build_standard,
    can_mount,
    delete_between_scandir_and_stat,
    mounted,
    mounts_under,
)

needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root and mount(8)")
SNAPPER = [sys.executable, "-c", "from snapper.cli import main; main()"]


def run_collect(root: Path, out: Path, **kw: Any) -> dict[str, Any]:
    opts = CollectOptions(root=str(root), out=str(out), api=False, **kw)
    return collect(opts).manifest


def rows(snap: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(snap / f"{name}.parquet").to_pylist()


@pytest.fixture(scope="module")
def std(tmp_path_factory: pytest.TempPathFactory) -> Standard:
    return build_standard(tmp_path_factory.mktemp("std") / "root")


@pytest.fixture(scope="module")
def snap(std: Standard, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("snaps") / "one"
    run_collect(std.root, out, hash_mode="full", jobs=1)
    return out


# --- the snapshot ------------------------------------------------------------------------------------------

def test_manifest(snap: Path, std: Standard) -> None:
    m = json.loads((snap / "manifest.json").read_text())
    assert m["schema_version"] == SCHEMA_VERSION
    assert m["tool"] == "snapper" and m["tool_version"] == __version__
    assert m["host"] == os.uname().nodename
    assert m["data_root"] == str(std.root) and m["data_root_source"] == "--root"
    started = datetime.strptime(m["started_utc"], "%Y-%m-%dT%H:%M:%S.%fZ")
    finished = datetime.strptime(m["finished_utc"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert started <= finished and (finished - started).total_seconds() < 60
    assert m["options"] == {"hash": "full", "jobs": 1, "api": False, "root": str(std.root)}
    assert m["rows"] == {t.name: pq.ParquetFile(snap / f"{t.name}.parquet").metadata.num_rows for t in TABLES}
    assert m["rows"]["layers"] == m["overlay2_entries"] == len(os.listdir(std.root / "overlay2"))
    assert m["errors"] == m["rows"]["errors"] == 2  # the corrupt and the missing config.v2.json
    sv = os.statvfs(std.root)
    assert set(m["statvfs"]) == {"total_bytes", "used_bytes", "avail_bytes", "total_inodes", "used_inodes"}
    assert m["statvfs"]["total_bytes"] == sv.f_blocks * sv.f_frsize
    assert {"metadata_s", "walk_s", "total_s"} <= set(m["durations"])
    assert all(isinstance(v, float | int) and v >= 0 for v in m["durations"].values())
    assert m["daemon"]["running"] is False and m["daemon"]["pids"] == []
    assert m["daemon"]["state_changed"] is False
    assert m["layout"]["active_driver"] == "overlay2" and m["layout"]["containerd_store"] is False
    assert m["api_status"] == "skipped (--no-api)"


def test_snapshot_files_0600_dirs_0700(snap: Path) -> None:
    assert stat.S_IMODE(os.stat(snap).st_mode) == 0o700
    for p in snap.iterdir():
        st_ = os.lstat(p)
        assert stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600, p.name


def test_files_table_covers_every_entry(snap: Path, std: Standard) -> None:
    files = rows(snap, "files")
    layers = {r["layer_id"]: r for r in rows(snap, "layers")}
    by_layer: dict[str, int] = {}
    for r in files:
        by_layer[r["layer_id"]] = by_layer.get(r["layer_id"], 0) + 1
    assert by_layer == {k: v["file_count"] for k, v in layers.items()}
    listed = sum(len(ds) + len(fs) for _, ds, fs in os.walk(std.root / "overlay2")) + 1
    assert len(files) + 1 == listed  # + overlay2/ itself, which is not a row
    assert all(r["hash"] is not None for r in files if r["type"] == "f")


def test_jobs_1_and_4_give_identical_tables(std: Standard, snap: Path, tmp_path: Path) -> None:
    run_collect(std.root, tmp_path / "four", hash_mode="full", jobs=4)

    def key(r: dict[str, Any]) -> tuple[str, bytes]:
        return r["layer_id"], r["path_raw"] or r["path"].encode()

    for name in ("files", "layers", "errors", "links", "layerdb", "images", "containers"):
        one = rows(snap, name)
        four = rows(tmp_path / "four", name)
        if name == "files":
            one.sort(key=key)
            four.sort(key=key)
        assert one == four, name


def test_data_root_unchanged_by_collect(tmp_path: Path) -> None:
    std = build_standard(tmp_path / "root")
    time.sleep(0.01)  # so that any access would land on a later timestamp

    def listing() -> list[tuple[Any, ...]]:
        top = os.fsencode(str(std.root))
        paths = [top]
        for dirpath, dirnames, filenames in os.walk(top):
            paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
        out = []
        for p in paths:
            s = os.lstat(p)
            atime = s.st_atime_ns if stat.S_ISREG(s.st_mode) else None
            out.append((p, s.st_mode, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_nlink,
                        s.st_uid, s.st_gid, atime))
        return sorted(out)

    before = listing()
    run_collect(std.root, tmp_path / "snap", hash_mode="full", jobs=2)
    after = listing()
    assert [b[0] for b in before] == [a[0] for a in after]
    fields = ("mode", "size", "mtime_ns", "ctime_ns", "ino", "nlink", "uid", "gid", "atime_ns")
    changed = [(b[0].decode(errors="replace").replace(str(std.root), ""), f)
               for b, a in zip(before, after, strict=True) for f, x, y in zip(fields, b[1:], a[1:], strict=True)
               if x != y]
    assert changed == [], "\n".join(map(str, changed))


# --- hostile entries ----------------------------------------------------------------------------------------

IN_ACCESS, IN_OPEN = 0x01, 0x20


class Inotify:
    """Just enough inotify(7) to see which files a process opens."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths: dict[int, bytes] = {}

    def watch(self, path: Path | str, mask: int = IN_OPEN | IN_ACCESS) -> None:
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(str(path)), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self.paths[wd] = os.fsencode(str(path))

    def events(self) -> list[tuple[bytes, int]]:
        """(path, mask) for every event so far; path is the watched path plus the child name if any."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + length].rstrip(b"\0")
                out.append((os.path.join(self.paths[wd], name) if name else self.paths[wd], mask))
                i += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def test_fifo_and_symlink_never_opened_with_hash_full(tmp_path: Path) -> None:
    std = build_standard(tmp_path / "root")
    odd_dir = std.upper.diff / "odd"
    canary = tmp_path / "canary.txt"
    canary.write_text("a walker that follows symlinks reads this")
    os.symlink(str(canary), odd_dir / "canary-link")
    ino = Inotify()
    try:
        for p in (odd_dir, canary, "/etc/shadow"):
            ino.watch(p)
        # Positive control: the watch does see an open of the FIFO and of the canary.
        os.close(os.open(odd_dir / "fifo", os.O_RDONLY | os.O_NONBLOCK))
        os.close(os.open(canary, os.O_RDONLY))
        control = ino.events()
        assert (os.fsencode(str(odd_dir / "fifo")), IN_OPEN) in control
        assert (os.fsencode(str(canary)), IN_OPEN) in control
        # A blocking open of the FIFO would hang: run the collect as a process with a timeout.
        out = tmp_path / "snap"
        proc = subprocess.run([*SNAPPER, "collect", "--root", str(std.root), "--out", str(out), "--no-api",
                               "--hash", "full", "--jobs", "2", "-q"], capture_output=True, timeout=60,
                              start_new_session=True)
        assert proc.returncode == 0, proc.stderr
        seen = ino.events()
    finally:
        ino.close()
    opened = {p for p, mask in seen if mask & (IN_OPEN | IN_ACCESS)}
    assert os.fsencode(str(odd_dir / "hard-a")) in opened  # the watch works: hashed files were opened
    for never in (odd_dir / "fifo", odd_dir / "shadow-link", odd_dir / "canary-link", canary,
                  Path("/etc/shadow")):
        assert os.fsencode(str(never)) not in opened, never
    files = {(r["path_raw"] or r["path"].encode()): r for r in rows(out, "files")
             if r["layer_id"] == std.upper.dir_id}
    fifo, shadow, link = files[b"diff/odd/fifo"], files[b"diff/odd/shadow-link"], files[b"diff/odd/canary-link"]
    assert (fifo["type"], fifo["hash"]) == ("p", None)
    assert (shadow["type"], shadow["link_target"], shadow["hash"]) == ("l", "/etc/shadow", None)
    assert (link["type"], link["link_target"], link["hash"]) == ("l", str(canary), None)
    assert files[b"diff/odd/hard-a"]["hash"] is not None


def test_file_deleted_mid_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    std = build_standard(tmp_path / "root")
    root = std.root
    layer = std.images["app"].layers[0].dir_id
    victim = root / "overlay2" / layer / "diff" / "etc" / "os-release"
    # the hook deletes the file from inside the Python walk's scandir: the native walk's threads list with
    # getdents64, out of its reach (it reports the same row: tests/test_nwalk.py checks its error records)
    monkeypatch.setenv("SNAPPER_NATIVE", "0")
    delete_between_scandir_and_stat(monkeypatch, victim.parent, victim)
    m = run_collect(root, tmp_path / "snap", hash_mode="full", jobs=1)
    walk_errors = [e for e in rows(tmp_path / "snap", "errors") if e["source"] == "walk"]
    assert walk_errors == [{"source": "walk", "object": f"overlay2/{layer}/diff/etc/os-release", "op": "lstat",
                            "errno": errno.ENOENT, "message": "vanished during the walk"}]
    lrow = next(r for r in rows(tmp_path / "snap", "layers") if r["layer_id"] == layer)
    assert (lrow["walk_status"], lrow["walk_errors"]) == ("partial", 1)
    assert m["errors"] == 3 and m["rows"]["layers"] == len(os.listdir(root / "overlay2"))


def test_entry_names_that_are_not_utf8(tmp_path: Path) -> None:
    sr = SyntheticRoot(tmp_path / "root")
    sr.add_layer()
    bad = os.path.join(os.fsencode(str(sr.overlay)), b"bad-\xff-layer")
    os.makedirs(os.path.join(bad, b"diff"))
    with open(os.path.join(bad, b"diff", b"f\xfe"), "wb") as f:
        f.write(b"x")
    run_collect(sr.root, tmp_path / "snap", jobs=2)
    layers = {r["layer_id"]: r for r in rows(tmp_path / "snap", "layers")}
    assert layers["bad-\\xff-layer"]["name_class"] == "other" and layers["bad-\\xff-layer"]["file_count"] == 3
    f = next(r for r in rows(tmp_path / "snap", "files") if r["path_raw"] == b"diff/f\xfe")
    assert f["layer_id"] == "bad-\\xff-layer" and f["path"] == "diff/f\\xfe"


# --- mounts ---------------------------------------------------------------------------------------------------

@needs_mount
def test_mounted_merged_dirs(tmp_path: Path) -> None:
    std = build_standard(tmp_path / "root", odd=False)
    web = std.containers["web"].mount
    other = std.containers["job"].mount
    (other.path / "merged").mkdir()
    src = tmp_path / "bind-src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "from-bind").write_text("not walked")
    out = tmp_path / "snap"
    try:
        with mounted(web.path / "merged", "--bind", str(src)), \
                mounted(other.path / "merged", "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
            (other.path / "merged" / "from-tmpfs").write_text("not walked")
            m = run_collect(std.root, out, hash_mode="partial", jobs=2)
    finally:
        assert mounts_under(tmp_path) == []
    files = rows(out, "files")
    for layer in (web, other):
        merged = [r for r in files if r["layer_id"] == layer.dir_id and r["path"] == "merged"]
        assert len(merged) == 1 and merged[0]["mount_point"] is True and merged[0]["opaque"] is False
        assert not [r for r in files if r["layer_id"] == layer.dir_id and r["path"].startswith("merged/")]
    assert [r["path"] for r in files if r["mount_point"]] == ["merged", "merged"]
    layers = {r["layer_id"]: r for r in rows(out, "layers")}
    assert layers[web.dir_id]["mounted"] is True and layers[other.dir_id]["mounted"] is True
    assert layers[web.dir_id]["has_merged"] is True
    assert [lid for lid, r in layers.items() if r["mounted"]] == sorted([web.dir_id, other.dir_id])
    info = {r["rel_path"]: r for r in rows(out, "mountinfo")}
    assert set(info) == {f"overlay2/{web.dir_id}/merged", f"overlay2/{other.dir_id}/merged"}
    assert info[f"overlay2/{other.dir_id}/merged"]["fstype"] == "tmpfs"
    assert info[f"overlay2/{web.dir_id}/merged"]["layer_id"] == web.dir_id
    assert m["rows"]["mountinfo"] == 2


# --- interruption ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root whose ``collect --hash full`` takes a second or two: 6k small files in four layers plus
    768 MiB of sparse files (holes cost nothing to create but are read and hashed like data)."""
    sr = SyntheticRoot(tmp_path_factory.mktemp("big") / "root", seed=7)
    prev = None
    for _ in range(4):
        prev = sr.add_layer(None, prev)
        sr.add_bulk(prev, 1_500)
        for j in range(2):
            with open(prev.diff / f"sparse{j}.img", "wb") as f:
                f.truncate(96 << 20)
    return sr.root


def _popen_collect(root: Path, out: Path, jobs: int, hash_mode: str = "full") -> subprocess.Popen[bytes]:
    return subprocess.Popen([*SNAPPER, "collect", "--root", str(root), "--out", str(out), "--no-api",
                             "--jobs", str(jobs), "--hash", hash_mode, "--no-base", "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


@contextlib.contextmanager
def process_group(p: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Whatever happens, kill everything left in the process group the collect started (its walkers)."""
    try:
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
        if p.stdout:
            p.stdout.close()
        if p.stderr:
            p.stderr.close()


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(d))
    return alive


def _wait_for(path: Path, p: subprocess.Popen[bytes], timeout: float = 30) -> float:
    """Poll until ``path`` exists (or the process ended); return when it appeared (monotonic)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return time.monotonic()


def test_sigkill_never_leaves_a_snapshot_dir(big_root: Path, tmp_path: Path) -> None:
    series = tmp_path / "series"
    with process_group(_popen_collect(big_root, series / "baseline", jobs=2)) as p:
        appeared = _wait_for(series / f".baseline.partial-{p.pid}", p)
        assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
        writing = time.monotonic() - appeared  # how long the partial dir exists
    open_snapshot(series / "baseline")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # (jobs, kill the whole group?, delay after the partial dir appeared; None = before it can exist)
    plan = [(1, True, None), (2, False, 0.0), (1, False, rng.uniform(0.05, writing / 2)),
            (2, True, rng.uniform(0.05, writing / 2))]
    allowed = {"baseline"}
    killed = 0
    for i, (jobs, group, delay) in enumerate(plan):
        out = series / f"kill{i}"
        with process_group(_popen_collect(big_root, out, jobs)) as p:
            partial = series / f".kill{i}.partial-{p.pid}"
            if delay is None:
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                _wait_for(partial, p)
                time.sleep(delay)
            # Either the collect and its walkers, or the collect alone (process_group reaps the walkers).
            (os.killpg if group else os.kill)(p.pid, signal.SIGKILL)
            rc = p.wait(timeout=10)
        why = f"seed {seed}, run {i}: jobs {jobs}, delay {delay}, rc {rc}, writing {writing:.2f}s"
        if rc == 0 or out.exists():
            # it finished (or was killed between the final rename and its exit): then it is whole
            open_snapshot(out)
            allowed.add(out.name)
            continue
        killed += 1
        assert rc == -signal.SIGKILL, why
        assert not out.exists(), f"{why}: {out} appeared after kill -9"
        allowed.add(partial.name)
        unexpected = sorted(e.name for e in series.iterdir() if e.name not in allowed)
        assert unexpected == [], why
    assert killed >= 2, f"seed {seed}: only {killed} of {len(plan)} collects were killed"
    # a partial dir carries its mark, or is empty (killed between mkdir and writing the mark: the next run
    # removes an empty mark-less partial of a dead process, see clean_stale_partials)
    assert all((e / PARTIAL_MARK).exists() or not any(e.iterdir())
               for e in series.iterdir() if ".partial-" in e.name)
    # The next collect into a sibling path succeeds and removes the partials of the dead runs.
    with process_group(_popen_collect(big_root, series / "after", jobs=1, hash_mode="none")) as p:
        assert p.wait(timeout=60) == 0
    open_snapshot(series / "after")
    assert not [e.name for e in series.iterdir() if ".partial-" in e.name]


def test_walk_workers_exit_when_the_collect_is_killed(big_root: Path, tmp_path: Path) -> None:
    with process_group(_popen_collect(big_root, tmp_path / "snap", jobs=2)) as p:
        deadline = time.monotonic() + 15
        while len(_group_alive(p.pid)) < 3 and time.monotonic() < deadline:  # the collect + 2 walkers
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGKILL)  # the collect only, as the OOM killer would
        p.wait(timeout=10)
        deadline = time.monotonic() + 3
        while _group_alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_alive(p.pid) == []


def test_root_without_overlay2(tmp_path: Path) -> None:
    (tmp_path / "root" / "containers").mkdir(parents=True)
    (tmp_path / "root" / "image" / "overlay2").mkdir(parents=True)  # a store (without it: no Docker store here)
    m = run_collect(tmp_path / "root", tmp_path / "snap", jobs=1)
    assert m["overlay2_entries"] == 0 and m["rows"]["files"] == 0 and m["rows"]["layers"] == 0
    assert m["layout"]["active_driver"] is None
    assert any("no overlay2 tree" in n for n in m["layout"]["notes"])
    open_snapshot(tmp_path / "snap")


def test_one_big_layer_is_split_among_walkers_and_stays_du_exact(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Subtree tasks: idle walkers take over dirs of a layer another walker is in; per-layer totals still
    count each hard-linked inode once (links spread over subtrees that different walkers list). (The walk
    worker processes: the Python walk; the native walk's threads share one stack of dirs.)"""
    monkeypatch.setenv("SNAPPER_NATIVE", "0")
    from tests.synthetic import du_allocated, du_apparent, find_count

    sr = SyntheticRoot(tmp_path / "root", seed=11)
    big = sr.add_layer()
    sr.add_bulk(big, 6000, per_dir=60)
    bulk = big.diff / "bulk"
    for i in range(0, 100, 3):  # hard links between dirs far apart in the walk
        os.link(bulk / f"d{i:04d}" / f"f{i * 60:06d}", bulk / f"d{99 - i:04d}" / f"link{i}")
    (bulk / "d0001" / f"f{60:06d}").write_bytes(b"x" * 10000)
    out4 = tmp_path / "four"
    m = run_collect(sr.root, out4, jobs=4, use_base=False, nice=False)
    assert m["walk"]["subtree_tasks"] > 0, m["walk"]
    run_collect(sr.root, tmp_path / "one", jobs=1, use_base=False, nice=False)

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r["layer_id"], r["path"]

    assert sorted(rows(out4, "files"), key=key) == sorted(rows(tmp_path / "one", "files"), key=key)
    layer = next(r for r in rows(out4, "layers") if r["layer_id"] == big.dir_id)
    assert layer["file_count"] == find_count(big.path)
    assert layer["allocated_bytes"] == du_allocated(big.path)
    assert layer["apparent_bytes"] == du_apparent(big.path)
    assert rows(out4, "layers") == rows(tmp_path / "one", "layers")


def test_a_walker_that_dies_fails_the_collect_cleanly(big_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk worker killed (OOM killer) mid-walk: the collect reports it and leaves no snapshot. (Worker
    processes: the Python walk; the native walk runs in threads of the collect itself.)"""
    monkeypatch.setenv("SNAPPER_NATIVE", "0")
    out = tmp_path / "snap"
    with process_group(_popen_collect(big_root, out, jobs=2)) as p:
        deadline = time.monotonic() + 15
        while len(_group_alive(p.pid)) < 3 and time.monotonic() < deadline:  # the collect + 2 walkers
            time.sleep(0.01)
        walkers = [pid for pid in _group_alive(p.pid) if pid != p.pid]
        assert walkers, "no walker started"
        os.kill(walkers[0], signal.SIGKILL)
        rc = p.wait(timeout=60)
        err = p.stderr.read().decode() if p.stderr else ""
    if rc == 0:  # the walker had already finished its share: nothing to check
        pytest.skip("the collect finished before the walker was killed")
    assert rc == 1 and "walk worker" in err and "exited unexpectedly" in err, err
    assert not out.exists()
    assert not [e for e in tmp_path.iterdir() if ".partial-" in e.name]
