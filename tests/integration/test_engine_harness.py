"""The integration harness itself: a private daemon starts, answers, survives kill -9, and cleans up."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from . import scenarios
from .engine import (
    BUSYBOX,
    Engine,
    EngineFactory,
    import_busybox,
    is_static_elf,
    make_busybox_rootfs,
    mounts_under,
    unescape_mountinfo,
)
from .scenarios import BusyState


def test_unescape_mountinfo() -> None:
    assert unescape_mountinfo(rb"/tmp/a\040b\011c\012d\134e") == "/tmp/a b\tc\nd\\e"
    assert unescape_mountinfo(rb"/tmp/bad\377") == os.fsdecode(b"/tmp/bad\xff")


def test_mounts_under_matches_whole_components() -> None:
    assert Path("/proc") in mounts_under(Path("/proc"))
    assert mounts_under(Path("/pro")) == []


def test_busybox_rootfs(tmp_path: Path) -> None:
    if not Path(BUSYBOX).exists() and os.environ.get("CI", "").lower() != "true":
        pytest.skip("no busybox-static")
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    assert is_static_elf(rootfs / "bin" / "busybox")
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert {p.name for p in rootfs.iterdir()} == {"bin", "etc", "tmp", "proc", "sys", "dev"}


def test_daemon_answers(engine: Engine) -> None:
    pid = engine.pid()
    assert pid is not None and engine.running()
    assert stat.S_ISSOCK(engine.sock.stat().st_mode)
    assert len(str(engine.sock)) < 100
    assert engine.version()
    assert engine.dockerd in Path(f"/proc/{pid}/cmdline").read_bytes().decode()


def test_info_says_overlay2(engine: Engine) -> None:
    info = engine.info()
    assert info["Driver"] == "overlay2"
    assert info["DockerRootDir"] == str(engine.root)
    assert (engine.root / "overlay2" / "l").is_dir()


def test_busy_containers_in_three_states(busy_engine: Engine, busy_state: BusyState) -> None:
    out = busy_engine.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}").stdout
    seen = {name: (cid, state) for cid, name, state in (line.split() for line in out.splitlines())}
    for name, cid in busy_state.containers.items():
        assert seen[name] == (cid, busy_state.states[name])
    assert {"running", "exited", "created"} <= set(busy_state.states.values())


def test_busy_images_have_layers_on_disk(busy_engine: Engine, busy_state: BusyState) -> None:
    overlay2 = busy_engine.root / "overlay2"
    for tag, image_id in busy_state.tags.items():
        image = busy_engine.inspect("image", tag)
        assert image["Id"] == image_id
        data = image["GraphDriver"]["Data"]
        upper = Path(data["UpperDir"])
        assert upper.parent.parent == overlay2 and upper.is_dir()
        for lower in filter(None, data.get("LowerDir", "").split(":")):
            assert Path(lower).parent.parent == overlay2 and Path(lower).is_dir()
    layers = {tag: busy_engine.inspect("image", tag)["RootFS"]["Layers"] for tag in busy_state.tags}
    assert layers["legacy:2"][: len(layers["legacy:1"])] == layers["legacy:1"]  # shared base layers
    assert len(layers["legacy:1"]) == 4  # base + RUN echo + RUN dd + COPY (ENV makes no layer)
    assert busy_state.intermediate_images  # the legacy builder keeps untagged parents
    # BuildKit (graphdriver mode) keeps its 25-character snapshot name as the layer's cache-id.
    assert len(scenarios.upper_dir(busy_engine, "image", "bk:1").parent.name) == 25
    df = busy_engine.docker("system", "df", "--format", "{{.Type}}={{.TotalCount}}").stdout.splitlines()
    assert int(dict(kv.split("=") for kv in df)["Build Cache"]) > 0


def test_odd_container_upper_dir(busy_engine: Engine, busy_state: BusyState) -> None:
    upper = scenarios.upper_dir(busy_engine, "container", busy_state.odd_container)
    assert upper.parent.parent == busy_engine.root / "overlay2"
    assert stat.S_ISFIFO(os.lstat(upper / scenarios.ODD_FIFO).st_mode)
    assert os.readlink(upper / scenarios.ODD_SYMLINK) == scenarios.ODD_SYMLINK_TARGET
    a, b = (os.lstat(upper / name) for name in scenarios.ODD_HARDLINKS)
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    sparse = os.lstat(upper / scenarios.ODD_SPARSE)
    assert sparse.st_size == scenarios.ODD_SPARSE_SIZE and sparse.st_blocks * 512 < sparse.st_size // 4
    assert os.path.lexists(os.fsencode(upper) + b"/" + scenarios.ODD_BAD_NAME)
    whiteout = os.lstat(upper / scenarios.ODD_WHITEOUT)
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0


def test_kill9_then_restart(fresh_engine: EngineFactory) -> None:
    eng = fresh_engine()
    import_busybox(eng)
    cid = eng.docker("run", "-d", "--network", "none", "bb:base", "sleep", "3600").stdout.strip()
    before = eng.engine_pids()
    assert len(before) >= 3  # dockerd, containerd, one shim
    eng.kill9()
    assert not eng.running() and eng.engine_pids() == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in before)  # reaped, not zombies
    assert any(mp.name == "merged" for mp in mounts_under(eng.root))  # the crash left the rootfs mounted
    started = time.monotonic()
    eng.start(timeout=60)
    assert time.monotonic() - started < 60
    assert eng.inspect("container", cid)["State"]["Running"] is False
    assert eng.inspect("image", "bb:base")["Id"]


def test_stop_is_clean(fresh_engine: EngineFactory) -> None:
    eng = fresh_engine()
    pid = eng.pid()
    eng.stop()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not eng.running() and eng.engine_pids() == []
    assert not any("overlay2" in mp.parts for mp in mounts_under(eng.base))


def test_cleanup_after_crash_leaves_nothing(fresh_engine: EngineFactory) -> None:
    eng = fresh_engine()
    import_busybox(eng)
    eng.docker("run", "-d", "--network", "none", "bb:base", "sleep", "3600")
    eng.kill9()
    # Mount points whose names mountinfo escapes (space, backslash), one stacked on another.
    odd = eng.base / "a dir\\with escapes"
    odd.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "snp-test", odd], check=True)
    (odd / "inner").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "snp-test", odd / "inner"], check=True)
    assert odd / "inner" in mounts_under(eng.base)
    base = eng.base
    eng.cleanup()
    assert mounts_under(base) == []
    assert not base.exists()
    assert eng.engine_pids() == []
    eng.cleanup()  # idempotent
