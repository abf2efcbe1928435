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
