"""A containerd host with no dockerd (Kubernetes nodes, nerdctl): a private containerd, ``ctr`` in namespace
k8s.io, a SIGKILL of containerd in the middle of ``ctr images import``.

The import's lease (the client library gives every operation one, with a 24 h gc.expire) outlives the crash:
after the restart it is a root that no client will ever delete, and the unpacked layers it holds are leaked
until it expires. snapper collects the containerd root itself (``--root``) and must name exactly what
containerd frees when those leases are deleted (the referee), while the imported image, a container made from
it and an unexpired lease of the running containerd stay live and in-flight.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapper import catalog, verdict
from snapper.collect import CollectOptions, collect
from snapper.metadata.containerd import CONTENT, SNAPSHOTTER

from .conftest import require_engine
from .engine import become_subreaper, mounts_under

pytestmark = pytest.mark.integration


def _binary(name: str) -> str | None:
    extra = os.environ.get("SNAPPER_DOCKERD_PATH", "")
    return shutil.which(name, path=f"{extra}:/usr/bin:/usr/sbin") if extra else shutil.which(name)


class Containerd:
    """A private containerd under /tmp/snc-XXXXXX: root/, state/, c.sock, config.toml, containerd.log."""

    def __init__(self) -> None:
        binary, ctr = _binary("containerd"), _binary("ctr")
        if not binary or not ctr:
            pytest.skip("containerd/ctr not installed")
        self.binary, self.ctr_binary = binary, ctr
        self.base = Path(tempfile.mkdtemp(prefix="snc-", dir="/tmp"))
        self.root = self.base / "root"
        self.sock = self.base / "c.sock"
        self.config = self.base / "config.toml"
        self.config.write_text(
            f'version = 2\nroot = "{self.root}"\nstate = "{self.base / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n')
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        become_subreaper()
        log = (self.base / "containerd.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "--config", str(self.config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run([self.ctr_binary, "-a", str(self.sock), "version"], capture_output=True).returncode:
            assert self.proc.poll() is None, (self.base / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not answer"
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None

    def ctr(self, *args: str, timeout: float = 300) -> str:
        return subprocess.run([self.ctr_binary, "-a", str(self.sock), "-n", "k8s.io", *args], check=True,
                              capture_output=True, text=True, timeout=timeout).stdout

    def popen_ctr(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([self.ctr_binary, "-a", str(self.sock), "-n", "k8s.io", *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cleanup(self) -> None:
        self.stop()
        for m in sorted(mounts_under(self.base), key=lambda p: len(str(p)), reverse=True):
            subprocess.run(["umount", "-l", str(m)], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    require_engine()
    c = Containerd()
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


def _items(c: Containerd) -> set[str]:
    snaps = set(os.listdir(c.root / SNAPSHOTTER / "snapshots"))
    blobs_dir = c.root / CONTENT / "blobs" / "sha256"
    blobs = {f"sha256:{n}" for n in os.listdir(blobs_dir)} if blobs_dir.is_dir() else set()
    return snaps | blobs


def _collect(c: Containerd, out: Path) -> dict[str, dict[str, Any]]:
    collect(CollectOptions(root=str(c.root), out=str(out), api=False, jobs=2))
    return {r["layer_id"]: r for r in verdict.leaks(str(out)).to_pylist()}  # default options


def test_import_crash_on_a_plain_containerd(containerd: Containerd, big_tars: dict[str, Path],
                                            tmp_path: Path) -> None:
    c = containerd
    c.ctr("images", "import", str(big_tars["big1"]))
    c.ctr("containers", "create", "docker.io/library/big1:1", "keep")
    live = _items(c)
    snaps = c.root / SNAPSHOTTER / "snapshots"
    before = set(os.listdir(snaps))
    for _ in range(5):  # the crash point: the unpack of the second image has begun
        proc = c.popen_ctr("images", "import", str(big_tars["big2"]))
        deadline = time.monotonic() + 120
        while len(set(os.listdir(snaps)) - before) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        reached = proc.poll() is None
        c.kill9()
        proc.kill()
        proc.wait()
        # a real restart takes longer than this test's: a change in the last ~0.1 s before a daemon's start
        # cannot be told from one just after it (start times have 10 ms ticks), and is called in-flight
        time.sleep(0.5)
        c.start()
        if reached:
            break
        c.ctr("images", "rm", "--sync", "docker.io/library/big2:1")
    else:
        pytest.fail("the crash point of ctr images import was never reached")
    c.ctr("leases", "create", "--id", "held-by-a-running-client")  # made by the running containerd: in-flight
    leaks = _collect(c, tmp_path / "after-crash")
    on_disk = _items(c)
    assert leaks and set(leaks) <= on_disk - live
    assert {r["store"] for r in leaks.values()} == {str(c.root)}
    assert "ctr-dead-lease" in {r["mechanism"] for r in leaks.values()}
    leases = {r["lease_id"]: r for r in catalog.run(verdict.bound(str(tmp_path / "after-crash")), "ctr_leases",
                                                    {}).to_pylist()}
    assert leases["held-by-a-running-client"]["class"] == "in-flight"
    dead = [k for k, r in leases.items() if r["class"] == "dead"]
    assert dead and all(leases[k]["expire_ns"] for k in dead)  # the client library's 24 h expiry
    for lease in dead:
        c.ctr("leases", "rm", "--sync", lease)
    verdicts = catalog.run(verdict.bound(str(tmp_path / "after-crash")), "ctr_verdicts", {"grace_seconds": 3600})
    # containerd frees exactly what snapper called leaked
    assert on_disk - _items(c) == set(leaks), verdicts.select(["name", "verdict", "mechanism", "evidence"])
    assert "keep" in c.ctr("containers", "ls", "-q")
    c.ctr("containers", "create", "docker.io/library/big2:1", "keep2")  # unpacks the crashed import again: whole
    c.stop()
    assert set(_collect(c, tmp_path / "stopped")) == set()

