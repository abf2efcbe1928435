"""snapper.quarantine: the journal survives a torn line, moves never replace, the quarantine goes on the mount
the moves come from (the reclaim scenarios themselves are in tests/test_reclaim.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapper import quarantine
from tests.synthetic import SyntheticRoot, can_mount, mounted


def test_journal_ignores_a_torn_line(tmp_path: Path) -> None:
    j = quarantine.Journal(tmp_path / "j")
    j.append({"ev": "a"})
    with open(tmp_path / "j", "ab") as f:
        f.write(b'{"ev": "to')  # killed mid-write
    assert [r["ev"] for r in j.read()] == ["a"]
    j.append({"ev": "b"})
    assert [r["ev"] for r in j.read()] == ["a", "b"]


def test_move_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # empty: plain rename(2) would replace it
    with pytest.raises(FileExistsError):
        quarantine.move_noreplace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a").is_dir()


def test_quarantine_beside_the_data_root_unless_a_mount_is_in_the_way(tmp_path: Path) -> None:
    root = tmp_path / "root"
    SyntheticRoot(root)
    assert quarantine.choose_dir(root) == tmp_path / ".snapper-quarantine"
    if not can_mount():
        pytest.skip("needs root and mount(8) for the bind mount")
    with mounted(root, "--bind", str(root)):  # what dockerd does to its data root
        assert quarantine.choose_dir(root) == root / ".snapper-quarantine"
        with mounted(root / "overlay2", "-t", "tmpfs", "tmpfs"), pytest.raises(quarantine.QuarantineError):
            quarantine.choose_dir(root)  # overlay2/ on a mount of its own: no place for renames
