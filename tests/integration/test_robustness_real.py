"""Robustness and safety on a real dockerd (issue 7): a read-only data root, a daemon killed mid-collect,
secrets in container configs, hostile upper-dir content (including a 10,000-deep tree); plus churn on a
synthetic root (no daemon needed).

Every test that needs a daemon takes its own ``fresh_engine``; everything it mounts or creates outside the
engine's base dir is removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from snapper.collect import CollectOptions, collect
from snapper.snapshot import open_snapshot
from tests.synthetic import SyntheticRoot, build_standard, make_chain, make_comb

from .engine import EngineFactory, import_busybox
from .scenarios import healthy_busy, upper_dir

SNAPPER = [sys.executable, "-m", "snapper.cli"]
ENV = {**os.environ, "COLUMNS": "200"}


def table(snap: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(snap / f"{name}.parquet").to_pylist()


def errors_of(errors: list[dict[str, Any]], layer: str) -> list[dict[str, Any]]:
    return [e for e in errors if e["source"] == "walk" and (e["object"] == f"overlay2/{layer}"
                                                             or e["object"].startswith(f"overlay2/{layer}/"))]


@contextlib.contextmanager
def read_only_bind(src: Path, target: Path) -> Iterator[Path]:
    """``mount --bind src target`` then ``remount,bind,ro``; always unmounted (lazily if busy)."""
    target.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(target)], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True)
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True)
        target.rmdir()


# --- 3. read-only proof ----------------------------------------------------------------------------------------

def test_collect_of_a_read_only_bind_mount(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    """A data root bind-mounted read-only collects with zero errors and the same layers and files (same
    inodes, sizes and content hashes) as the read-write path: the collector needs no write access at all."""
    eng = fresh_engine()
    healthy_busy(eng)
    eng.stop()
    with read_only_bind(eng.root, eng.base / "ro") as ro:
        with pytest.raises(OSError) as probe:
            (ro / "probe").write_bytes(b"x")
        assert probe.value.errno == errno.EROFS
        collect(CollectOptions(root=str(ro), out=str(tmp_path / "ro"), hash_mode="full", api=False, jobs=2))
    assert not (eng.base / "ro").exists()
    collect(CollectOptions(root=str(eng.root), out=str(tmp_path / "rw"), hash_mode="full", api=False, jobs=2))

    assert table(tmp_path / "ro", "errors") == []
    for name in ("layers", "files", "layerdb", "mounts", "images", "containers", "links", "buildkit_records"):
        assert len(table(tmp_path / "ro", name)) == len(table(tmp_path / "rw", name)), name

    def layers(snap: Path) -> set[tuple[Any, ...]]:
        return {(r["layer_id"], r["file_count"], r["allocated_bytes"], r["walk_status"])
                for r in table(snap, "layers")}

    def files(snap: Path) -> set[tuple[Any, ...]]:
        return {(r["layer_id"], r["path"], r["path_raw"], r["inode"], r["size"], r["hash"])
                for r in table(snap, "files")}

    assert layers(tmp_path / "ro") == layers(tmp_path / "rw")
    assert files(tmp_path / "ro") == files(tmp_path / "rw")
    assert len(table(tmp_path / "ro", "files")) > 100


# --- 4. churn (synthetic root) ---------------------------------------------------------------------------------

CHURN = textwrap.dedent("""
    import os, random, sys, time
    stop, rate, dirs = sys.argv[1], float(sys.argv[2]), [os.fsencode(d) for d in sys.argv[3:]]
    rnd = random.Random(1)
    live = [os.path.join(d, n) for d in dirs for n in os.listdir(d)]  # victims: old files and new ones
    created = deleted = n = 0
    t0 = last = time.monotonic()
    while not os.path.exists(stop):
        for _ in range(100):
            n += 1
            p = os.path.join(rnd.choice(dirs), b"c%d" % n)
            if n % 50 == 0:  # a directory that comes and goes: its scandir races too
                os.mkdir(p)
                for i in range(9):
                    os.close(os.open(os.path.join(p, b"%d" % i), os.O_WRONLY | os.O_CREAT, 0o644))
                created += 10
            else:
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))
                created += 1
            live.append(p)
            while deleted < created and live:
                i = rnd.randrange(len(live))
                live[i], live[-1] = live[-1], live[i]
                v = live.pop()
                if os.path.isdir(v):
                    for f in os.listdir(v):
                        os.unlink(os.path.join(v, f))
                        deleted += 1
                    os.rmdir(v)
                else:
                    os.unlink(v)
                deleted += 1
        now = time.monotonic()
        ahead = created / rate - (now - t0)
        if ahead > 0:
            time.sleep(ahead)
        if now - last >= 0.05:
            print(f"{now:.4f} {created} {deleted}", flush=True)
            last = now
    print(f"{time.monotonic():.4f} {created} {deleted}", flush=True)
""")
CHURN_RATE = 10_000  # files created per second, and as many deleted


def rate_between(samples: list[tuple[float, float, float]], t0: float, t1: float) -> tuple[float, float]:
    """Files created and deleted per second between two instants, from the churner's (t, created, deleted)."""
    # a churner slow to start (a loaded machine) has its first sample after t0: measure from there
    before = ([s for s in samples if s[0] <= t0] or samples[:1])[-1]
    after = next((s for s in samples if s[0] >= t1), samples[-1])
    dt = after[0] - before[0]
    return (after[1] - before[1]) / dt, (after[2] - before[2]) / dt


def test_collect_during_heavy_churn(tmp_path: Path) -> None:
    """Another process creates and deletes ~10k files/s (each way) inside layer dirs while `snapper collect`
    runs: the collect finishes, vanished entries are ENOENT errors rows, and every layer's counts agree with
    its files rows and its errors rows. Synthetic root (no daemon), on tmpfs when there is one: the point is
    the rate of change, which a disk mounted with `discard` cannot sustain for deletes."""
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else tmp_path
    work = base / f"snp-churn-{os.getpid()}"
    stop = work / ".stop-churn"
    churner: subprocess.Popen[str] | None = None
    try:
        root = build_standard(work / "root", seed=3, odd=False).root
        sr = SyntheticRoot(root, seed=99)  # the same root: add the churned layers
        churn_dirs: list[Path] = []
        for _ in range(4):
            layer = sr.add_layer()
            sr.add_bulk(layer, 20_000, per_dir=500)
            churn_dirs += sorted((layer.diff / "bulk").iterdir())
        out = work / "snap"
        churner = subprocess.Popen([sys.executable, "-c", CHURN, str(stop), str(CHURN_RATE), *map(str, churn_dirs)],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # reach the steady rate first
        t0 = time.monotonic()
        res = subprocess.run([*SNAPPER, "collect", "--root", str(root), "--out", str(out), "--no-api", "-q"],
                             capture_output=True, text=True, timeout=300, env=ENV)
        t1 = time.monotonic()
        time.sleep(0.2)
        stop.touch()
        lines = churner.communicate(timeout=60)[0].splitlines()
        samples = [(float(a), float(b), float(c)) for a, b, c in (ln.split() for ln in lines)]
        created_s, deleted_s = rate_between(samples, t0, t1)
        print(f"churn during the collect ({t1 - t0:.2f} s): {created_s:,.0f} files created/s, "
              f"{deleted_s:,.0f} deleted/s")
        assert res.returncode == 0, res.stderr
        assert len(res.stderr.splitlines()) <= 1, res.stderr
        assert created_s >= 5000 and deleted_s >= 5000, (created_s, deleted_s)

        errors = table(out, "errors")
        layers = {r["layer_id"]: r for r in table(out, "layers")}
        counts: dict[str, int] = {}
        for lid in pq.read_table(out / "files.parquet", columns=["layer_id"]).column("layer_id").to_pylist():
            counts[lid] = counts.get(lid, 0) + 1
        for lid, r in layers.items():
            errs = errors_of(errors, lid)
            assert r["file_count"] == counts.get(lid, 0), lid
            assert r["walk_errors"] == len(errs), (lid, errs[:3])
            assert r["walk_status"] == ("partial" if errs else "ok"), (lid, r["walk_status"], errs[:3])
        churned = {d.parent.parent.parent.name for d in churn_dirs}
        walk_errors = [e for e in errors if e["source"] == "walk"]
        assert walk_errors, "the churn never raced the walk: the test proved nothing"
        for e in walk_errors:
            assert e["object"].split("/")[1] in churned, e
            assert e["op"] in ("lstat", "scandir", "readdir") and e["errno"] == errno.ENOENT, e
        print(f"{len(walk_errors)} vanished entries recorded as errors rows: "
              f"{sorted({e['op'] for e in walk_errors})}")
    finally:
        if churner is not None and churner.poll() is None:
            churner.kill()
            churner.wait()
        subprocess.run(["rm", "-rf", str(work)], check=True)


# --- 5. the daemon crashes while snapper works ----------------------------------------------------------------

def holders(path: Path) -> list[int]:
    """Pids that have ``path`` open right now."""
    target = os.fsencode(path)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(os.fsencode(f"/proc/{pid}/fd/{fd}")) == target:
                        found.append(int(pid))
    return found


def test_daemon_killed_during_collect(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    """SIGKILL dockerd while `snapper collect` (API on) is hashing a container's upper dir: the collect
    finishes (exit 0), the manifest says the daemon state changed and that it was gone at the end, and the
    CLI warns. The hashing is made long with sparse files written into the stopped container's upper dir."""
    eng = fresh_engine()
    state = healthy_busy(eng)
    upper = upper_dir(eng, "container", state.containers["snp-exited"])
    eng.stop()
    big = []
    for i in range(2):  # 2 x 3 GiB of holes: seconds of --hash full, no disk space
        p = upper / f"sparse-{i}"
        with open(p, "wb") as f:
            f.truncate(3 << 30)
        big.append(p)
    eng.start()
    eng.docker("start", "snp-running")
    out = tmp_path / "snap"
    proc = subprocess.Popen([*SNAPPER, "collect", "--root", str(eng.root), "--out", str(out), "--hash", "full",
                             "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not any(holders(p) for p in big):  # snapper is hashing the container's upper dir
            assert proc.poll() is None, f"collect ended before it reached the upper dir: {proc.communicate()}"
            assert time.monotonic() < deadline, "collect never opened the sparse files"
            time.sleep(0.05)
        dockerd = eng.pid()
        eng.kill9()
        assert proc.poll() is None, "the collect finished before the daemon was killed: make it longer"
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert dockerd is not None and not eng.running()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    m = json.loads((out / "manifest.json").read_text())
    d = m["daemon"]
    assert d["running"] is True and dockerd in d["pids"], d
    assert d["running_at_end"] is False and d["pids_at_end"] == [], d
    assert d["state_changed"] is True, d
    assert "warning: the daemon changed the store during the collect" in stderr, stderr
    open_snapshot(out)
    hashed = {r["path"]: r["hash"] for r in table(out, "files") if r["layer_id"] == upper.parent.name}
    assert all(hashed[f"diff/{p.name}"] is not None for p in big)


# --- 6. secrets ------------------------------------------------------------------------------------------------

def test_no_env_or_label_value_reaches_a_snapshot(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    """Containers created with ``-e SECRET=...`` and ``--label k=...``: the values are in their config.v2.json
    on disk, and in no byte of any snapshot file (raw, and decompressed: every cell of every table, schema
    and key-value metadata). Snapshot dirs (and the series dirs a collect creates) are 0700 and files 0600
    even with umask 0."""
    eng = fresh_engine()
    import_busybox(eng)
    secret, label = f"SNPSECRET{os.urandom(8).hex()}", f"SNPLABEL{os.urandom(8).hex()}"
    planted = ("-e", f"SECRET={secret}", "-e", f"OTHER=x{secret}x", "--label", f"k={label}",
               "--label", f"com.example.token={label}")
    eng.docker("run", "-d", "--network", "none", "--stop-timeout", "1", "--name", "sec-running", *planted,
               "bb:base", "sleep", "3600")
    eng.docker("create", "--network", "none", "--name", "sec-created", *planted, "bb:base")
    configs = b"".join(p.read_bytes() for p in (eng.root / "containers").glob("*/config.v2.json"))
    assert secret.encode() in configs and label.encode() in configs, "the secret must be on disk to be hidden"

    series = tmp_path / "series"
    res = subprocess.run([*SNAPPER, "collect", "--root", str(eng.root), "--series", str(series), "--hash", "full",
                          "--quiet"], capture_output=True, text=True, timeout=300, env=ENV,
                         preexec_fn=lambda: os.umask(0))
    assert res.returncode == 0, res.stderr
    snap = Path(res.stdout.strip().splitlines()[-1])
    m = json.loads((snap / "manifest.json").read_text())
    assert m["api_status"].startswith("ok"), m["api_status"]  # the API's view was collected too
    assert {r["name"] for r in table(snap, "containers")} >= {"sec-running", "sec-created"}

    files = sorted(snap.iterdir())
    assert {p.name for p in files} >= {"manifest.json", "containers.parquet", "api_containers.parquet"}
    for p in files:
        raw = p.read_bytes()
        texts = [raw]
        if p.suffix == ".parquet":
            pf = pq.ParquetFile(p)
            t = pf.read()
            texts += [repr(t.to_pylist()).encode(), str(t.schema).encode(), repr(pf.metadata.metadata).encode()]
        for text in texts:
            assert secret.encode() not in text and label.encode() not in text, p
            assert secret[9:].encode() not in text and label[8:].encode() not in text, p
    for d in (snap, snap.parent, series):  # the snapshot, and the host and series dirs the collect made
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for p in files:
        assert stat.S_ISREG(p.lstat().st_mode) and stat.S_IMODE(p.lstat().st_mode) == 0o600, p


# --- 7. hostile content in a container's upper dir -------------------------------------------------------------

IN_ACCESS, IN_OPEN = 0x1, 0x20
_EVENT = struct.Struct("iIII")


class Inotify:
    """IN_OPEN / IN_ACCESS events on the entries of some directories (which names were opened or read)."""

    def __init__(self, *dirs: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs: dict[int, Path] = {}
        for d in dirs:
            wd = self.libc.inotify_add_watch(self.fd, os.fsencode(d), IN_OPEN | IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self.dirs[wd] = d

    def events(self) -> list[tuple[Path, bytes, int]]:
        """(watched dir, entry name or b"" for the dir itself, mask) of everything seen so far."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, i)
                name = buf[i + _EVENT.size:i + _EVENT.size + length].rstrip(b"\0")
                out.append((self.dirs[wd], name, mask))
                i += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


def bind_socket(directory: Path, name: bytes) -> None:
    """A unix socket entry (through /proc/self/fd: sun_path holds only 108 bytes); the listener is closed,
    the socket file stays."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(b"/proc/self/fd/%d/" % fd + name)
    finally:
        s.close()
        os.close(fd)


# name -> (kind, detail). Names are bytes: several are not UTF-8, one shows like another (losslessness).
HOSTILE: dict[bytes, tuple[str, Any]] = {
    b"loop-a": ("symlink", b"loop-b"),
    b"loop-b": ("symlink", b"loop-a"),
    b"self": ("symlink", b"self"),
    b"dot": ("symlink", b"."),
    b"up": ("symlink", b"../../../../../../../../.."),
    b"etc": ("symlink", b"/etc"),
    b"shadow": ("symlink", b"/etc/shadow"),
    b"proc": ("symlink", b"/proc"),
    b"proc-root": ("symlink", b"/proc/self/root"),
    b"dev-zero-link": ("symlink", b"/dev/zero"),
    b"fifo": ("fifo", None),
    b"dev-zero": ("char", (1, 5)),  # opening and reading it never ends
    b"dev-null": ("char", (1, 3)),
    b"whiteout": ("char", (0, 0)),
    b"block": ("block", None),  # the device of the host's / itself
    b"sock": ("socket", None),
    b"N" * 255: ("file", b"255-byte name\n"),
    b"D" * 255: ("dir", None),
    b"D" * 255 + b"/" + b"F" * 255: ("file", b"255-byte dir and name\n"),
    b"new\nline": ("file", b"newline\n"),
    b"\n": ("file", b"only a newline\n"),
    b"cr\rtab\t": ("file", b"control characters\n"),
    b"bad-\xff\xfe": ("file", b"not UTF-8\n"),
    b"lit-\xff": ("file", b"the byte 0xff\n"),
    b"lit-\\xff": ("file", b"backslash x f f: shows like the one above\n"),
    b"\xed\xa0\x80-surrogate": ("file", b"UTF-8 of a surrogate: not valid\n"),
    b"dir-\xc3(": ("dir", None),
    b"dir-\xc3(/inner\n\xff": ("file", b"both levels odd\n"),
    b"regular": ("file", b"x" * 100_000),
}


def make_hostile(top: Path, canary: Path) -> None:
    base = os.fsencode(top)
    os.mkdir(base)
    for name, (kind, detail) in HOSTILE.items():
        p = os.path.join(base, name)
        if kind == "symlink":
            os.symlink(detail, p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "char":
            os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(*detail))
        elif kind == "block":
            os.mknod(p, stat.S_IFBLK | 0o600, os.stat("/").st_dev)
        elif kind == "socket":
            bind_socket(top, name)
        elif kind == "dir":
            os.mkdir(p)
        else:
            with open(p, "wb") as f:
                f.write(detail)
    os.symlink(os.fsencode(canary), os.path.join(base, b"canary"))  # a dir outside the data root


def lstat_listing(top: bytes) -> dict[bytes, os.stat_result]:
    """What is really there, relative to ``top``: lstat only, iterative, never following."""
    out = {b".": os.lstat(top)}
    stack = [b""]
    while stack:
        rel = stack.pop()
        for name in os.listdir(os.path.join(top, rel) if rel else top):
            r = os.path.join(rel, name) if rel else name
            st = os.lstat(os.path.join(top, r))
            out[r] = st
            if stat.S_ISDIR(st.st_mode):
                stack.append(r)
    return out


def raw_path(row: dict[str, Any]) -> bytes:
    return row["path_raw"] if row["path_raw"] is not None else row["path"].encode()


def test_hostile_upper_dir(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    """Symlink loops, symlinks to /etc, /proc, /dev/zero and a dir outside the root, a FIFO, char and block
    devices, a socket, 255-byte names, newlines, control characters and invalid UTF-8, written from outside
    into a stopped container's upper dir: `snapper collect --hash full` finishes in time, records every
    entry exactly once with its exact name bytes, never follows a link (no rows below one, nothing opened
    in the dir it points to) and never opens anything but directories and regular files."""
    eng = fresh_engine()
    import_busybox(eng)
    eng.docker("create", "--network", "none", "--name", "hostile", "bb:base")
    upper = upper_dir(eng, "container", "hostile")
    canary = eng.base / "canary"
    canary.mkdir()
    (canary / "secret.txt").write_text("must never be read through the symlink\n")
    make_hostile(upper / "h", canary)
    truth = lstat_listing(os.fsencode(upper.parent))
    watch = Inotify(upper / "h", upper / "h" / ("D" * 255), canary)
    try:
        res = subprocess.run([*SNAPPER, "collect", "--root", str(eng.root), "--out", str(tmp_path / "s"), "--hash",
                              "full", "-q"], capture_output=True, text=True, timeout=180, env=ENV)
        events = watch.events()
    finally:
        watch.close()
    assert res.returncode == 0, res.stderr
    assert len(res.stderr.splitlines()) <= 1, res.stderr

    layer = upper.parent.name
    rows = [r for r in table(tmp_path / "s", "files") if r["layer_id"] == layer]
    by_raw = {raw_path(r): r for r in rows}
    assert len(by_raw) == len(rows), "two rows for one path"
    assert set(by_raw) == set(truth), (set(truth) ^ set(by_raw))
    for rel, st in truth.items():
        r = by_raw[rel]
        assert (r["inode"], r["mode"], r["size"]) == (st.st_ino, st.st_mode, st.st_size), rel
        if r["path_raw"] is None:
            assert r["path"].encode() == rel
    for name, (kind, detail) in HOSTILE.items():
        r = by_raw[b"diff/h/" + name]
        assert r["type"] == {"symlink": "l", "fifo": "p", "char": "c", "block": "b", "socket": "s", "dir": "d",
                             "file": "f"}[kind], name
        if kind == "symlink":
            assert r["link_target"] == detail.decode(), name
        assert (r["hash"] is not None) == (kind == "file"), name
    assert by_raw[b"diff/h/whiteout"]["whiteout"] is True
    lit_byte, lit_text = by_raw[b"diff/h/lit-\xff"], by_raw[b"diff/h/lit-\\xff"]
    assert lit_byte["path"] == lit_text["path"], "the same text, told apart by path_raw"
    assert by_raw[b"diff/h/canary"]["link_target"] == str(canary)

    opened = {(d, n) for d, n, _ in events}
    specials = {n for n, (k, _) in HOSTILE.items() if k not in ("file", "dir") and b"/" not in n}
    assert not {n for d, n in opened if d == upper / "h"} & (specials | {b"canary"}), events
    assert not [e for e in events if e[0] == canary], f"followed the symlink out of the root: {events}"
    assert (upper / "h", b"regular") in opened, "the regular file was hashed, so the watch works"
    walk_errors = errors_of(table(tmp_path / "s", "errors"), layer)
    assert walk_errors == []
    assert {r["layer_id"]: r for r in table(tmp_path / "s", "layers")}[layer]["walk_status"] == "ok"


DEPTH = 10_000


def test_ten_thousand_deep_directories(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    """A 10,000-deep directory chain (20 kB of path) in a container's upper dir, and a 10,000-deep comb (a
    sibling waiting at each level): the collect finishes in time (no recursion limit, no hang, no fd
    exhaustion) and records every level and the file at the bottom, without errors."""
    eng = fresh_engine()
    import_busybox(eng)
    eng.docker("create", "--network", "none", "--name", "deep", "bb:base")
    upper = upper_dir(eng, "container", "deep")
    try:
        for top in ("deep", "comb"):
            (upper / top).mkdir()
        make_chain(upper / "deep", DEPTH)  # top/d/d/.../leaf, made through dir fds
        make_comb(upper / "comb", DEPTH, siblings=1)  # top/d/d/... and s0 beside every d
        res = subprocess.run([*SNAPPER, "collect", "--root", str(eng.root), "--out", str(tmp_path / "s"), "-q",
                              "--no-api"], capture_output=True, text=True, timeout=300, env=ENV)
        assert res.returncode == 0, res.stderr
        layer = upper.parent.name
        paths = pq.read_table(tmp_path / "s" / "files.parquet", columns=["layer_id", "path"],
                              filters=[("layer_id", "=", layer)]).column("path").to_pylist()
        deepest = "diff/deep/" + "/".join(["d"] * DEPTH)
        layer_row = {r["layer_id"]: r for r in table(tmp_path / "s", "layers")}[layer]
        errs = errors_of(table(tmp_path / "s", "errors"), layer)
        assert errs == [], f"{len(errs)} errors, first: {errs[:1]}"
        assert deepest in paths and deepest + "/leaf" in paths
        assert sum(1 for p in paths if p.startswith("diff/deep/")) == DEPTH + 1
        comb = [p for p in paths if p.startswith("diff/comb/")]
        assert len(comb) == len(set(comb)) == 2 * DEPTH
        assert "diff/comb/" + "/".join(["d"] * (DEPTH - 1)) + "/s0" in comb
        assert layer_row["walk_status"] == "ok"
        assert layer_row["file_count"] == int(subprocess.run(["sh", "-c", f"find {upper.parent} -xdev | wc -l"],
                                                             capture_output=True, text=True).stdout)
    finally:
        # shutil.rmtree (Python 3.11) recurses once per level: rm -rf does not.
        subprocess.run(["rm", "-rf", str(upper / "deep"), str(upper / "comb")], check=True)
