"""A snapshot series on a real daemon while it leaks: healthy baseline, a BuildKit duplicate layer, a
crash during `docker load`, then prunes. Asserts the exact appeared / newly leaked / never-reachable sets
and the attribution of the leaked copy to the image layer it duplicates.

With SNAPPER_RECORD_SERIES=DIR the series is also copied to DIR (how tests/data/series was recorded).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from snapper import series
from snapper.collect import CollectOptions, collect

from .engine import EngineFactory, import_busybox
from .images import make_image_tar
from .test_leak_mechanisms import _context, kill_when, layerdb

pytestmark = pytest.mark.integration


def test_series_while_leaking(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    eng = fresh_engine()
    snaps = tmp_path / "series" / "host"
    n = [0]

    def take() -> Path:
        out = snaps / f"s{n[0]}"
        n[0] += 1
        time.sleep(0.05)
        collect(CollectOptions(root=str(eng.root), out=str(out), api=eng.running(), socket=str(eng.sock), jobs=2))
        return out

    import_busybox(eng)
    eng.build(_context(tmp_path / "app", "FROM bb:base\nRUN echo app > /app\n"), "app:1", buildkit=False)
    eng.docker("create", "--network", "none", "--name", "c1", "app:1")
    s0 = take()

    # COPY to / only: parent dirs made by COPY get the build time as mtime, so the diff (and the chain)
    # would differ between the builds and nothing would be duplicated
    dup = _context(tmp_path / "dup", "FROM bb:base\nCOPY site.txt /site.txt\n",
                   {"site.txt": "same content\n"})
    eng.build(dup, "dup:1", buildkit=True)
    eng.build(dup, "dup:2", buildkit=True, extra=["--no-cache"])
    dup_layer = Path(eng.inspect("image", "dup:1")["GraphDriver"]["Data"]["UpperDir"]).parent.name
    s1 = take()

    eng.docker("rmi", "dup:1", "dup:2")
    eng.docker("builder", "prune", "-af")
    s2 = take()

    tar = tmp_path / "ml.tar"
    make_image_tar(tar, "ml:1", [300, 30000], "ml")
    before = set(os.listdir(eng.root / "overlay2"))
    tmp = layerdb(eng) / "tmp"

    def second_layer_extracting() -> bool:
        new = set(os.listdir(eng.root / "overlay2")) - before
        return len(new) >= 2 and tmp.exists() and any(x.startswith("write-set-") for x in os.listdir(tmp))

    kill_when(eng, ["load", "-i", str(tar)], second_layer_extracting)
    crash_dirs = set(os.listdir(eng.root / "overlay2")) - before
    s3 = take()  # offline, right after the crash

    eng.start()
    eng.docker("system", "prune", "-af")
    s4 = take()

    if os.environ.get("SNAPPER_RECORD_SERIES"):
        dest = Path(os.environ["SNAPPER_RECORD_SERIES"])
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(snaps, dest)

    # baseline -> dup builds: two new dirs of the two builds, nothing leaked
    d01 = series.diff(s0, s1, 0)
    assert d01.newly_leaked.num_rows == 0
    assert dup_layer in d01.appeared.column("layer_id").to_pylist()

    # prune of the dup images and build cache: exactly one newly leaked dir, the unadopted BuildKit copy
    d12 = series.diff(s1, s2, 0)
    leaked12 = dict(zip(d12.newly_leaked.column("layer_id").to_pylist(),
                        d12.newly_leaked.column("new_mechanism").to_pylist(), strict=True))
    assert list(leaked12.values()) == ["buildkit-snapshot-without-record"]
    (orphan,) = leaked12
    assert dup_layer in d12.vanished.column("layer_id").to_pylist()
    assert d12.appeared.num_rows == 0

    # the crash during load: every dir it created appeared and is newly leaked
    d23 = series.diff(s2, s3, 0)
    assert set(d23.appeared.column("layer_id").to_pylist()) == crash_dirs
    assert set(d23.newly_leaked.column("layer_id").to_pylist()) == crash_dirs

    # prune: the container and images vanish, the leaks stay
    d34 = series.diff(s3, s4, 0)
    assert d34.newly_leaked.num_rows == 0 and d34.leaks_gone.num_rows == 0
    assert d34.vanished.num_rows > 0

    # appeared(a->b) == vanished(b->a) on real data
    back = series.diff(s4, s3, 0)
    assert sorted(back.vanished.column("layer_id").to_pylist()) == sorted(d34.appeared.column("layer_id").to_pylist())

    h = series.history([snaps], grace_s=0)
    assert len(h.snapshots) == 5
    never = set(h.never_reachable.column("layer_id").to_pylist())
    assert never == crash_dirs, "the dup copy was reachable (build cache) before it leaked"
    att = {r["layer_id"]: r for r in h.attribution.to_pylist()}
    assert att[orphan]["source_layer"] == dup_layer
    assert att[orphan]["path_overlap_pct"] == 100.0
    assert "layer 2/2" in att[orphan]["source"] and "dup:" in att[orphan]["source"]
    timeline = h.timeline.to_pylist()
    assert [r["leaked_dirs"] for r in timeline][:3] == [0, 0, 1]
    assert timeline[3]["leaked_dirs"] == 1 + len(crash_dirs)
