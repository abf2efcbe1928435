"""The containerd image store (issue 12) on a real dockerd 26.1 in containerd-snapshotter mode.

A SIGKILL in the middle of ``docker load`` leaves snapshot dirs and blobs held only by the lease of the dead
load. snapper must name exactly those (by snapshot id and digest) as leaked, with the daemon stopped and right
after the restart, with default options; nothing of the live image or container. containerd itself is the
referee: deleting the leases snapper called dead (``ctr leases rm --sync``, which runs the GC) frees exactly
what snapper called leaked, and every live image and container still works afterwards.

dockerd 20.10 has no containerd image store: there the test is skipped (CI runs it on engine 26.1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from snapper import verdict
from snapper.collect import CollectOptions, collect
from snapper.metadata.containerd import CONTENT, SNAPSHOTTER

from .conftest import require_engine
from .engine import Engine, import_busybox
from .test_leak_mechanisms import kill_when

pytestmark = pytest.mark.integration


def _store(eng: Engine) -> Path:
    return eng.root / "containerd" / "daemon"


def _items(eng: Engine) -> set[str]:
    """Snapshot dir ids and blob digests on disk."""
    snaps = set(os.listdir(_store(eng) / SNAPSHOTTER / "snapshots"))
    blobs = {f"sha256:{n}" for n in os.listdir(_store(eng) / CONTENT / "blobs" / "sha256")}
    return snaps | blobs


def _collect(eng: Engine, out: Path) -> dict[str, dict[str, Any]]:
    collect(CollectOptions(root=str(eng.root), out=str(out), api=eng.running(), socket=str(eng.sock), jobs=2))
    return {r["layer_id"]: r for r in verdict.leaks(str(out)).to_pylist()}  # default options


def _ctr(eng: Engine, *args: str) -> str:
    ctr = shutil.which("ctr", path=eng.env.get("PATH")) or shutil.which("ctr")
    assert ctr, "ctr not found next to dockerd"
    sock = eng.exec_root / "containerd" / "containerd.sock"
    return subprocess.run([ctr, "-a", str(sock), *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


@pytest.fixture
def c8d_engine() -> Any:
    require_engine()
    eng = Engine(containerd_store=True)
    try:
        major = int(subprocess.run([eng.dockerd, "--version"], capture_output=True, text=True)
                    .stdout.split()[2].split(".")[0])
        if major < 24:
            pytest.skip(f"dockerd {major}.x has no containerd image store (CI runs this on engine 26.1)")
        eng.start()
        yield eng
    finally:
        eng.cleanup()


def test_load_crash_leaks_exactly_what_the_dead_lease_holds(c8d_engine: Engine, big_tars: dict[str, Path],
                                                             tmp_path: Path) -> None:
    eng = c8d_engine
    import_busybox(eng)
    eng.docker("create", "--name", "keep", "--network", "none", "bb:base")
    live = _items(eng)
    snap_dir = _store(eng) / SNAPSHOTTER / "snapshots"
    before = set(os.listdir(snap_dir))

    def unpacking() -> bool:  # blobs committed, the first new layer snapshot being extracted
        return len(set(os.listdir(snap_dir)) - before) >= 2

    kill_when(eng, ["load", "-i", str(big_tars["big2"])], unpacking)
    stopped = _collect(eng, tmp_path / "stopped")
    eng.start()
    running = _collect(eng, tmp_path / "running")
    # 26.1 imports every blob and records the image before it unpacks: the image and its blobs are live; the
    # snapshots of the cut-off unpack (and blobs only the load needed) are held only by the load's lease, and
    # one snapshotter record may be half-made
    assert "big2" in eng.docker("image", "ls", "--format", "{{.Repository}}").stdout
    on_disk = _items(eng)
    new = on_disk - live
    # what the restart's own GC freed was called self-healing; the rest is the same leak either side
    for gone in stopped.keys() - running.keys():
        assert stopped[gone]["self_heals"] and gone not in on_disk, stopped[gone]
    assert running.keys() <= stopped.keys()
    assert running and set(running) <= new
    for leaks in (stopped, running):
        mechanisms = {r["mechanism"] for r in leaks.values()}
        assert "ctr-dead-lease" in mechanisms
        assert mechanisms <= {"ctr-dead-lease", "ctr-record-without-meta", "ctr-dir-without-record",
                              "ctr-unreferenced"}
        assert all(r["store"] == "containerd/daemon" for r in leaks.values())
    evidence = next(r for r in running.values() if r["mechanism"] == "ctr-dead-lease")["evidence"]
    assert "before the running daemon started" in evidence and "frees itself: after gc.expire" in evidence

    # containerd is the referee: deleting the leases snapper called dead makes its GC (which a delete starts)
    # free exactly what snapper called leaked, half-made records included; nothing live goes
    dead = [r["lease_id"] for r in _rows(tmp_path / "running", "ctr_leases") if r["class"] == "dead"]
    assert dead
    for lease in dead:
        _ctr(eng, "-n", "moby", "leases", "rm", "--sync", lease)
    freed = on_disk - _items(eng)
    assert freed == set(running)  # precision and recall 1, by snapshot id and digest
    assert "hello" in eng.docker("run", "--rm", "--network", "none", "bb:base", "echo", "hello").stdout
    eng.docker("create", "--network", "none", "big2:1", "/none")  # unpacks the loaded image again: it is whole
    eng.docker("start", "keep")
    eng.stop()
    assert _collect(eng, tmp_path / "after") == {}


def _rows(snapshot: Path, query: str) -> list[dict[str, Any]]:
    from snapper import catalog

    rows: list[dict[str, Any]] = catalog.run(verdict.bound(str(snapshot)), query, {}).to_pylist()
    return rows


def _ingests(eng: Engine) -> set[str]:
    d = _store(eng) / CONTENT / "ingest"
    return set(os.listdir(d)) if d.is_dir() else set()


def _crash_commit(eng: Engine, tmp: Path) -> None:
    """Legacy ``docker commit`` of a container with 20,000 new files, killed while the layer blob is written."""
    eng.docker("run", "--name", "writer", "--network", "none", "bb:base", "sh", "-c",
               "mkdir /data && cd /data && for i in $(seq 1 20000); do echo $i > f$i; done")
    kill_when(eng, ["commit", "writer", "committed:1"], lambda: bool(_ingests(eng)))


def _crash_build(eng: Engine, tmp: Path) -> None:
    """A BuildKit ``RUN`` killed while it writes its snapshot."""
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:base\nRUN mkdir /data && cd /data && "
                                    "for i in $(seq 1 30000); do echo $i > f$i; done\n")
    snaps = _store(eng) / SNAPSHOTTER / "snapshots"

    def writing() -> bool:  # some snapshot dir holds the RUN's /data with files in it
        for n in os.listdir(snaps):
            data = snaps / n / "fs" / "data"
            try:
                if len(os.listdir(data)) > 500:
                    return True
            except OSError:
                continue
        return False

    kill_when(eng, ["build", "--network", "none", "-t", "built:1", str(ctx)], writing, buildkit=True)


def _crash_rmi(eng: Engine, tmp: Path) -> None:
    """``docker rmi`` of a 3-layer image killed while its snapshots are being removed."""
    _remove_killed(eng, ["rmi", "big:1"])


def _crash_prune(eng: Engine, tmp: Path) -> None:
    """``docker system prune -af`` killed while the snapshots of an unused image are being removed."""
    _remove_killed(eng, ["system", "prune", "-af"])


def _remove_killed(eng: Engine, args: list[str]) -> None:
    from .images import make_image_tar

    make_image_tar(eng.base / "big.tar", "big:1", [8000, 8000, 8000], "r")
    snaps = _store(eng) / SNAPSHOTTER / "snapshots"
    for _ in range(3):  # a delete faster than the poll is done again (the daemon was not killed)
        eng.docker("load", "-i", str(eng.base / "big.tar"))
        eng.docker("rm", "-f", eng.docker("create", "--network", "none", "big:1", "/x").stdout.strip())  # unpacked
        before = set(os.listdir(snaps))

        def removing(b: set[str] = before) -> bool:
            return len(set(os.listdir(snaps)) & b) < len(b)

        try:
            kill_when(eng, args, removing)
            return
        except AssertionError as e:
            if "before the crash point" not in str(e):
                raise
    pytest.fail(f"the crash point of docker {' '.join(args)} was never reached")


@pytest.mark.parametrize("crash", [_crash_commit, _crash_build, _crash_rmi, _crash_prune],
                         ids=["commit", "buildkit-run", "rmi", "prune"])
def test_crash_verdicts_with_containerd_as_referee(c8d_engine: Engine, crash: Any, tmp_path: Path) -> None:
    """After the crash, stopped and right after the restart, snapper's leaks with default options are what
    containerd frees once the leases snapper called dead are deleted (its GC runs on that delete and cleans
    the snapshotter and the content store); nothing live goes, and the engine still builds and runs."""
    eng = c8d_engine
    import_busybox(eng)
    # running, so that a prune keeps it and its image (the crash stops it; it is started again at the end)
    eng.docker("run", "-d", "--name", "keep", "--stop-timeout", "1", "--network", "none", "bb:base", "sleep", "600")
    live = _items(eng)
    crash(eng, tmp_path)
    stopped = _collect(eng, tmp_path / "stopped")
    eng.start()
    running = _collect(eng, tmp_path / "running")
    on_disk = _items(eng) | {i for i in _ingests(eng)}
    for gone in stopped.keys() - running.keys():  # what the restart itself freed was called self-healing
        assert stopped[gone]["self_heals"], stopped[gone]
    assert running.keys() <= stopped.keys()
    assert not set(running) & live
    dead = [(r["namespace"], r["lease_id"]) for r in _rows(tmp_path / "running", "ctr_leases")
            if r["class"] == "dead"]
    for ns, lease in dead:
        _ctr(eng, "-n", ns, "leases", "rm", "--sync", lease)
    # a snapshot removal marks the snapshotter dirty: its GC pass then runs Cleanup (dirs and records no
    # meta.db snapshot names) even when no dead lease held anything
    _ctr(eng, "-n", "moby", "snapshots", "prepare", "referee")
    _ctr(eng, "-n", "moby", "snapshots", "rm", "referee")
    _ctr(eng, "-n", "moby", "leases", "create", "--id", "referee")
    _ctr(eng, "-n", "moby", "leases", "rm", "--sync", "referee")
    freed = on_disk - (_items(eng) | _ingests(eng))
    held = {k for k, r in running.items() if r["mechanism"] in ("ctr-dead-lease", "ctr-orphan-writable-snapshot")}
    assert held <= freed  # every dir and blob snapper said a dead lease holds, containerd freed with the lease
    assert freed <= set(running)  # and containerd freed nothing snapper did not call leaked
    assert _items(eng) >= live
    assert "hello" in eng.docker("run", "--rm", "--network", "none", "bb:base", "echo", "hello").stdout
    eng.docker("start", "keep")
    # recall: whatever else the crash left, the engine's own records reach, so removing them frees all of it
    # (after the checks above: prune also drops bb:base, which only a stopped container uses)
    others = [c for c in eng.docker("ps", "-aq", "--filter", "name=writer").stdout.split()]
    if others:
        eng.docker("rm", "-f", *others)
    eng.docker("system", "prune", "-af")
    eng.docker("builder", "prune", "-af", buildkit=True)
    left = (_items(eng) | _ingests(eng)) - live
    assert left <= set(running) and all(running[k]["self_heals"] for k in left), left
    eng.stop()
    after = _collect(eng, tmp_path / "after")
    assert set(after) <= left and all(r["self_heals"] for r in after.values())
