"""snapper.walkpool: the frame protocol, the worker processes, and the pool against the in-process walk."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from snapper.walkpool import read_frame, walk_layers, write_frame
from tests.synthetic import SyntheticRoot


@pytest.fixture(autouse=True)
def python_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module tests the worker processes: the Python walk, even where the native one is built."""
    monkeypatch.setenv("SNAPPER_NATIVE", "0")


def test_frames_round_trip_through_a_pipe_bigger_than_its_buffer() -> None:
    r, w = os.pipe()
    big = ("b", 7, b"x" * (3 << 20), [1, 2, 3], {"k": (1, 2)})  # more than a pipe holds: partial writes
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.extend([read_frame(r), read_frame(r), read_frame(r)]))
    reader.start()
    write_frame(w, big)
    write_frame(w, ("d", 8, None))
    os.close(w)
    reader.join(timeout=30)
    os.close(r)
    assert got == [big, ("d", 8, None), None]  # None: end of file


def test_a_worker_loads_only_the_walk() -> None:
    """The worker's imports stay small (no pyarrow, typing, subprocess): each of --jobs costs ~10 MB."""
    pkg = str(Path(__file__).resolve().parent.parent)
    code = (f"import sys; sys.path[:0] = [{pkg!r}]; import snapper.walkpool; "
            "print(' '.join(sorted(sys.modules)))")
    mods = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()
    assert "snapper.walk" in mods
    assert not [m for m in mods if m.split(".")[0] in ("pyarrow", "typing", "subprocess", "selectors", "duckdb")]


def _collect(sr: SyntheticRoot, jobs: int) -> tuple[list[dict[str, Any]], list[Any], dict[str, int]]:
    names = sorted(os.listdir(os.fsencode(str(sr.overlay))))
    batches: list[pa.RecordBatch] = []
    layers: list[Any] = []
    stats: dict[str, int] = {}
    for kind, payload, errors in walk_layers(os.fsencode(str(sr.overlay)), names, "partial", frozenset(), jobs,
                                             iter([]), stats):
        if kind == "batch":
            batches.append(payload)
        else:
            layers.append((payload.as_dict(), errors))
    rows = pa.Table.from_batches(batches).to_pylist()
    return sorted(rows, key=lambda r: (r["layer_id"], r["path"])), sorted(layers, key=repr), stats


@pytest.mark.parametrize("jobs", [2, 3])
def test_the_pool_gives_the_rows_and_results_of_the_inline_walk(tmp_path: Path, jobs: int) -> None:
    sr = SyntheticRoot(tmp_path / "root", seed=9)
    big = sr.add_layer()
    sr.add_bulk(big, 4000, per_dir=50)  # big enough that idle workers take subtrees of it
    for _ in range(5):
        sr.write(sr.add_layer(), "etc/conf", b"c")
    rows1, layers1, _ = _collect(sr, 1)
    rows_n, layers_n, stats = _collect(sr, jobs)
    assert stats["jobs"] == jobs and stats["tasks"] == 7  # 6 layer dirs and l/
    assert rows_n == rows1 and layers_n == layers1
