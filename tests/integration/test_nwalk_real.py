"""The native walk on a real daemon's data root: the rows, layer results and errors of the Python walk."""

from __future__ import annotations

import pytest

from snapper.metadata.mountinfo import read_mountinfo
from tests.test_nwalk import assert_same, native  # noqa: F401  (native: the fixture)

from .engine import Engine
from .scenarios import ODD_FIFO, ODD_SYMLINK, BusyState

pytestmark = pytest.mark.integration


def test_native_walk_matches_the_python_walk_on_a_real_data_root(native: None, busy_engine: Engine,  # noqa: F811
                                                                 busy_state: BusyState,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    points = read_mountinfo(busy_engine.root)[2]
    assert points  # the running container's merged/ is mounted: recorded, not descended
    rows, layers = assert_same(busy_engine.root / "overlay2", monkeypatch, hash_mode="full", mount_points=points)
    paths = {r["path"] for r in rows}
    for odd in (ODD_FIFO, ODD_SYMLINK):
        assert any(p.endswith(odd.lstrip("/")) for p in paths), odd
    assert any(r["mount_point"] for r in rows)
    assert sum(r["hash"] is not None for r in rows) > 10 and len(layers) > 5
