"""snapper.docker_root: finding the data root, refusing one without a store, and the layout it holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapper.docker_root import STORE_DIRS, detect_layout
from snapper.errors import DataRootError
from tests.synthetic import build_standard

REPO = Path(__file__).resolve().parent.parent


def test_root_without_a_store_is_an_error_naming_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "some-file").write_text("x")
    (tmp_path / "volumes").mkdir()  # not a store on its own
    with pytest.raises(DataRootError) as ei:
        detect_layout(tmp_path, "--root", tmp_path / "no-daemon.json")
    line = ei.value.line()
    assert line.startswith(f"{tmp_path}: no Docker store here (--root; looked for image/, overlay2/")
    assert "containerd/" in line and "--data-root" in line


@pytest.mark.parametrize("store", STORE_DIRS)
def test_any_store_dir_is_enough(tmp_path: Path, store: str) -> None:
    (tmp_path / store).mkdir()
    detect_layout(tmp_path, "--root", tmp_path / "no-daemon.json")


@pytest.fixture
def private_root() -> Iterator[Path]:
    """A standard root whose layer store is 0700 and owned by another user: without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (what a non-root user lacks) it cannot be read."""
    top = Path(tempfile.mkdtemp(prefix="snapper-perm-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        root = build_standard(top / "root", odd=False).root
        os.chmod(root, 0o755)
        os.chown(root / "image", 65534, 65534)
        os.chmod(root / "image", 0o700)
        (top / "out").mkdir(mode=0o777)
        os.chmod(top / "out", 0o777)
        yield root
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
@pytest.mark.parametrize("where", ["store", "root"])
def test_collect_without_read_capabilities_says_it_needs_root(private_root: Path, where: str) -> None:
    if where == "root":
        os.chown(private_root, 65534, 65534)
        os.chmod(private_root, 0o700)
    out = private_root.parent / "out" / "snap"
    proc = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m",
                           "snapper.cli", "collect", "--root", str(private_root), "--out", str(out), "--no-api",
                           "--jobs", "1"],
                          capture_output=True, text=True, timeout=120, cwd="/",
                          env={**os.environ, "PYTHONPATH": str(REPO), "HOME": "/tmp"})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("snapper: error: " + str(private_root)), lines[0]
    assert "permission denied (reading a Docker data root needs root (or CAP_DAC_READ_SEARCH)" in lines[0]
    assert not out.exists() and os.listdir(out.parent) == []


# --- issue 17 item 14: the active driver is decided from evidence -----------------------------------------

def make_legacy_root(root: Path, driver: str, repositories_mtime: float | None = None) -> Path:
    """A data root of an older engine whose active driver is ``driver`` (overlay or aufs): the driver's tree and
    image/<driver>/ with a layer store, an image store and repositories.json (the layout of public test data
    of Docker forensics tools)."""
    layer = "a" * 64
    tree = root / driver
    if driver == "aufs":
        for sub in ("diff", "layers", "mnt"):
            (tree / sub / layer).mkdir(parents=True)
        (tree / "diff" / layer / "etc").mkdir()
        (tree / "diff" / layer / "etc" / "hostname").write_text("legacy\n")
    else:
        (tree / layer / "root" / "etc").mkdir(parents=True)
        (tree / layer / "root" / "etc" / "hostname").write_text("legacy\n")
    chain = tree.parent / "image" / driver / "layerdb" / "sha256" / ("c" * 64)
    chain.mkdir(parents=True)
    (chain / "cache-id").write_text(layer)
    (chain / "diff").write_text("sha256:" + "d" * 64)
    (chain / "size").write_text("7")
    (root / "image" / driver / "imagedb" / "content" / "sha256").mkdir(parents=True)
    repos = root / "image" / driver / "repositories.json"
    repos.write_text('{"Repositories": {}}')
    if repositories_mtime is not None:
        os.utime(repos, (repositories_mtime, repositories_mtime))
    (root / "containers").mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("driver", ["aufs", "overlay"])
def test_legacy_driver_in_use_is_active_not_dormant(tmp_path: Path, driver: str) -> None:
    root = make_legacy_root(tmp_path / "root", driver)
    layout = detect_layout(root, "--root", tmp_path / "no-daemon.json", [])
    assert layout.active_driver == driver
    assert layout.driver_evidence == f"image/{driver}/ holds layerdb and imagedb"
    assert layout.unclassified == driver
    assert not any("(dormant store)" in n for n in layout.notes), layout.notes
    assert any(n.startswith(f"the active storage driver is {driver} (image/{driver}/ holds layerdb and imagedb): "
                            "snapper classifies overlay2 only") for n in layout.notes)


def test_overlay2_store_in_use_leaves_an_old_aufs_tree_dormant(tmp_path: Path) -> None:
    root = make_legacy_root(tmp_path / "root", "aufs", repositories_mtime=1_600_000_000)
    (root / "overlay2" / ("b" * 64) / "diff").mkdir(parents=True)
    (root / "image" / "overlay2" / "layerdb").mkdir(parents=True)
    (root / "image" / "overlay2" / "imagedb").mkdir(parents=True)
    (root / "image" / "overlay2" / "repositories.json").write_text("{}")  # written now: the store in use
    layout = detect_layout(root, "--root", tmp_path / "no-daemon.json", [])
    assert layout.active_driver == "overlay2" and layout.unclassified is None
    assert layout.driver_evidence.startswith("image/overlay2/ holds the newest repositories.json")
    assert "aufs/ holds data of another storage driver (dormant store)" in layout.notes


def test_daemon_json_storage_driver_wins_over_the_trees(tmp_path: Path) -> None:
    import json

    root = make_legacy_root(tmp_path / "root", "aufs")
    (root / "overlay2" / ("b" * 64) / "diff").mkdir(parents=True)
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": str(root), "storage-driver": "overlay2"}))
    layout = detect_layout(root, f"data-root in {cfg}", cfg, [])
    assert layout.active_driver == "overlay2" and layout.driver_evidence == f"storage-driver in {cfg}"


def test_running_daemon_flag_wins(tmp_path: Path) -> None:
    from snapper.docker_root import DaemonProcess

    root = make_legacy_root(tmp_path / "root", "aufs")
    d = DaemonProcess(4242, "dockerd", str(root), (), "aufs")
    layout = detect_layout(root, "--root", tmp_path / "no-daemon.json", [d])
    assert layout.active_driver == "aufs"
    assert layout.driver_evidence == "--storage-driver of the running dockerd (pid 4242)"


@pytest.mark.parametrize("driver", ["aufs", "overlay"])
def test_every_command_names_an_unclassified_driver(tmp_path: Path, driver: str) -> None:
    from typer.testing import CliRunner

    from snapper.cli import app

    runner = CliRunner()
    root = make_legacy_root(tmp_path / "root", driver)
    snap = tmp_path / "snap"
    res = runner.invoke(app, ["collect", "--root", str(root), "--out", str(snap), "--no-api", "--jobs", "1"])
    assert res.exit_code == 0, res.stderr
    assert f"note: the active storage driver is {driver} (image/{driver}/ holds layerdb and imagedb)" in res.stderr
    for argv in (["leaks", str(snap)], ["explain", str(snap), "abc"], ["metrics", str(snap), "-o", str(tmp_path / "m")],
                 ["history", str(snap)], ["report", str(snap), "-o", str(tmp_path / "r.html")]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 1, (argv, res.output)
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"snapper: error: {snap}: the active storage driver is "
                                                       f"{driver} "), (argv, lines)
    show = runner.invoke(app, ["show", str(snap)])
    assert show.exit_code == 0 and f"driver          {driver} (not classified by snapper)" in show.stdout
    q = runner.invoke(app, ["query", "leaked_metadata", str(snap), "-f", "csv", "-p", "grace_seconds=0"])
    assert q.exit_code == 0, q.stderr
    assert q.stderr.startswith(f"warning: {snap}: the active storage driver is {driver}")
    assert "dormant" not in q.stdout  # the tree in use is never called dormant


def test_unclassified_driver_of_old_and_new_manifests() -> None:
    from snapper.docker_root import unclassified_driver

    assert unclassified_driver("overlay2", ["overlay2", "aufs"], False) is None  # aufs is the dormant one
    assert unclassified_driver("aufs", ["aufs"], False) == "aufs"
    assert unclassified_driver(None, ["aufs"], False) == "aufs"  # written before the driver was decided
    assert unclassified_driver(None, ["aufs"], True) is None  # the containerd store is in use
    assert unclassified_driver(None, [], False) is None
