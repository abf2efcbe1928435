"""`snapper collect` against a real, busy dockerd: the snapshot agrees with find, du and docker inspect."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from snapper.collect import CollectOptions, collect
from snapper.snapshot import open_snapshot

from .engine import Engine
from .scenarios import ODD_FIFO, ODD_SYMLINK, BusyState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busy_snapshot(busy_engine: Engine, busy_state: BusyState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "snap"
    collect(CollectOptions(root=str(busy_engine.root), out=str(out), socket=str(busy_engine.sock),
                           hash_mode="full", jobs=3))
    return out


def q(snap: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    for name in ("files", "layers", "images", "containers", "mounts", "layerdb", "api_images", "api_containers",
                 "errors", "mountinfo"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{snap}/{name}.parquet')")
    return con.execute(sql, list(params)).fetchall()


def test_every_overlay2_entry_matches_find_and_du(busy_engine: Engine, busy_snapshot: Path) -> None:
    overlay = busy_engine.root / "overlay2"
    rows = {r[0]: r[1:] for r in q(busy_snapshot, "SELECT layer_id, file_count, allocated_bytes FROM layers")}
    assert set(rows) == set(os.listdir(overlay))
    assert any(r for r in q(busy_snapshot, "SELECT 1 FROM layers WHERE mounted")), "a running container"
    for name, (count, alloc) in rows.items():
        d = overlay / name
        found = subprocess.run(["find", str(d), "-xdev"], capture_output=True, check=True).stdout.count(b"\n")
        du = int(subprocess.run(["du", "-sx", "-B1", str(d)], capture_output=True, text=True,
                                check=True).stdout.split()[0])
        assert (count, alloc) == (found, du), name


def test_images_containers_mounts_agree_with_docker_inspect(busy_engine: Engine, busy_snapshot: Path) -> None:
    overlay = str(busy_engine.root / "overlay2") + "/"
    chain_dir = dict(q(busy_snapshot, "SELECT chain_id, cache_id FROM layerdb"))
    images = {r[0]: r[1] for r in q(busy_snapshot, "SELECT image_id, chain_ids FROM images")}
    listed = busy_engine.docker("images", "-aq", "--no-trunc").stdout.split()
    assert set(listed) == set(images)
    for iid in listed:
        gd = busy_engine.inspect("image", iid)["GraphDriver"]["Data"]
        want = [gd["UpperDir"], *(gd.get("LowerDir") or "").split(":")]
        want_dirs = [p[len(overlay):].split("/")[0] for p in want if p]
        got_dirs = [chain_dir[c] for c in reversed(images[iid])]
        assert got_dirs == want_dirs, iid
    mounts = {r[0]: r[1:] for r in q(busy_snapshot, "SELECT name, mount_id, init_id FROM mounts")}
    containers = {r[0]: r[1:] for r in q(busy_snapshot, "SELECT container_id, name, state, image FROM containers")}
    ids = busy_engine.docker("ps", "-aq", "--no-trunc").stdout.split()
    assert set(ids) == set(containers) == set(mounts)
    for cid in ids:
        info = busy_engine.inspect("container", cid)
        data = info["GraphDriver"]["Data"]
        mount_id, init_id = mounts[cid]
        assert data["UpperDir"] == f"{overlay}{mount_id}/diff"
        assert data["LowerDir"].split(":")[0] == f"{overlay}{init_id}/diff"
        name, state, image = containers[cid]
        assert (name, state, image) == (info["Name"].lstrip("/"), info["State"]["Status"], info["Image"])
    # the API cross-check tables say the same
    api = dict(q(busy_snapshot, "SELECT container_id, mount_layer_id FROM api_containers"))
    assert api == {cid: mounts[cid][0] for cid in ids}


def test_odd_upper_dir_is_recorded_never_followed(busy_engine: Engine, busy_state: BusyState,
                                                  busy_snapshot: Path) -> None:
    cid = busy_state.odd_container
    mount_id = (busy_engine.root / "image/overlay2/layerdb/mounts" / cid / "mount-id").read_text()
    rows = {r[0]: r[1:] for r in q(busy_snapshot, "SELECT path, type, link_target, hash, whiteout, path_raw, "
                                   "nlink, allocated, size FROM files WHERE layer_id = ?", mount_id)}
    fifo = rows["diff/" + ODD_FIFO.lstrip("/")]
    assert fifo[0] == "p" and fifo[2] is None
    shadow = rows["diff/" + ODD_SYMLINK.lstrip("/")]
    assert shadow[0] == "l" and shadow[1] == "/etc/shadow" and shadow[2] is None
    assert any(r[3] for r in rows.values()), "a whiteout (char 0/0) for the deleted applet"
    assert any(r[4] is not None and b"\xff" in r[4] for r in rows.values()), "the non-UTF-8 name, losslessly"
    assert any(r[5] == 2 for r in rows.values()), "the hard-link pair"
    assert any(r[0] == "f" and r[6] < r[7] for r in rows.values()), "the sparse file"
    assert q(busy_snapshot, "SELECT count(*) FROM errors")[0][0] == 0


def _listing(root: Path) -> list[tuple[Any, ...]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            out.append((p, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_nlink,
                        st.st_atime_ns if stat.S_ISREG(st.st_mode) else 0))
        dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(dirpath, d))]
    return sorted(out)


def test_data_root_unchanged_by_collect_with_full_hashes(fresh_engine: Any, tmp_path: Path) -> None:
    """Stopped daemon (nothing else writes): lstat listing incl. atimes identical before and after."""
    from .scenarios import healthy_busy

    eng = fresh_engine()
    healthy_busy(eng)
    eng.stop()
    before = _listing(eng.root)
    collect(CollectOptions(root=str(eng.root), out=str(tmp_path / "s"), hash_mode="full", api=False, jobs=2))
    from snapper import verdict

    verdict.leaks(str(tmp_path / "s"))
    assert _listing(eng.root) == before


def test_sigkill_during_collect_leaves_no_snapshot(busy_engine: Engine, tmp_path: Path) -> None:
    """SIGKILL at 20 random points of a collect: never a dir at --out that is not a whole snapshot, and the
    next run succeeds and removes the partial leftovers."""
    import random
    import shutil

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "snapper.cli", "collect", "--root", str(busy_engine.root), "--out", str(out),
                "--hash", "full", "--no-api", "--jobs", "2", "--no-base", "--quiet"]

    t = time.monotonic()
    subprocess.run(cmd(tmp_path / "timing"), check=True, capture_output=True)
    duration = time.monotonic() - t
    shutil.rmtree(tmp_path / "timing")
    rng = random.Random(7)
    killed = attempts = 0
    out = tmp_path / "killed"
    while killed < 20:  # 20 kills that really interrupted a collect (runs that finished first don't count)
        attempts += 1
        assert attempts <= 80, f"only {killed} collects could be interrupted in {attempts} attempts"
        p = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        t = time.monotonic()
        time.sleep(rng.uniform(0.05, duration))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if out.exists():
            # it completed before the kill (or was killed between the final rename and its exit): whole
            open_snapshot(out)
            shutil.rmtree(out)
            duration = min(duration, time.monotonic() - t)  # aim earlier next time
            continue
        killed += 1
    good = tmp_path / "good"
    subprocess.run(cmd(good), check=True, capture_output=True)
    open_snapshot(good)
    assert sorted(os.listdir(tmp_path)) == ["good"], "stale partial dirs are cleaned by the next run"
