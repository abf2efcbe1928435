"""bench/gen.py (the benchmark's tree generator) and bench/run.py, at the quick size: deterministic, shaped like
a real overlay2 store, and collected exactly (per-layer counts as `find -xdev`, bytes as `du -sx`)."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq
import pytest

from snapper import verdict
from snapper.collect import CollectOptions, collect
from tests.synthetic import du_allocated

BENCH = Path(__file__).resolve().parent.parent / "bench"
QUICK = 20_000


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


gen = _load("gen")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return gen.generate(tmp_path_factory.mktemp("bench") / "root", QUICK, seed=0)


@pytest.fixture(scope="module")
def quick_snap(quick: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-snap") / "snap"
    collect(CollectOptions(root=quick.root, out=str(out), api=False, use_base=False, nice=False, jobs=3))
    return out


def listing(root: Path) -> list[tuple[Any, ...]]:
    """What the generator promises to reproduce: names, types, sizes, modes, link targets, link counts and
    the mtimes of files in layers (not inode numbers, ctimes, or the mtimes of dirs and metadata files,
    which the clock sets)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(str(root))):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, os.fsencode(str(root)))
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            mtime = st.st_mtime_ns if stat.S_ISREG(st.st_mode) and b"/diff/" in rel else None
            out.append((rel, st.st_mode, st.st_size if not stat.S_ISDIR(st.st_mode) else 0, target, mtime,
                        st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0, st.st_rdev))
    return sorted(out)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = gen.generate(tmp_path / "a", 3000, seed=7)
    b = gen.generate(tmp_path / "b", 3000, seed=7)
    c = gen.generate(tmp_path / "c", 3000, seed=8)
    assert a.digest == b.digest != c.digest
    assert a.entries == b.entries and 2900 <= a.entries <= 3300
    assert listing(tmp_path / "a") == listing(tmp_path / "b")
    assert [p.dir_id for p in a.layers] == [p.dir_id for p in b.layers]


def test_quick_tree_is_shaped_like_overlay2(quick: Any) -> None:
    root = Path(quick.root)
    overlay = root / "overlay2"
    assert QUICK <= quick.entries <= QUICK * 1.02
    names = os.listdir(overlay)
    kinds = collections.Counter("l" if n == "l" else "init" if n.endswith("-init") else
                                "hex64" if re.fullmatch(r"[0-9a-f]{64}", n) else
                                "buildkit25" if re.fullmatch(r"[0-9a-z]{25}", n) else "other" for n in names)
    assert kinds["l"] == 1 and kinds["hex64"] > 50 and kinds["init"] >= 2 and kinds["buildkit25"] >= 2
    assert kinds["other"] == 0
    links = {os.readlink(overlay / "l" / s) for s in os.listdir(overlay / "l")}
    for plan in quick.layers:
        d = overlay / plan.dir_id
        assert (d / "diff").is_dir(), plan
        if plan.role != "leaked-copy":
            assert (d / "link").read_text() == plan.link_id and f"../{plan.dir_id}/diff" in links
        if plan.parent:
            assert (d / "work").is_dir() and (d / "lower").read_text().startswith("l/")
            assert (overlay / plan.parent / "committed").exists()
    site = list(overlay.glob("*/diff/opt/conda/lib/python3.11/site-packages/*/__init__.py"))
    assert len(site) > 20
    # whiteouts, opaque dirs, FIFOs, sparse files, odd names, hard links inside and across layers
    kinds_seen: collections.Counter[str] = collections.Counter()
    inodes: dict[int, set[str]] = collections.defaultdict(set)
    for dirpath, dirnames, filenames in os.walk(os.fsencode(str(overlay))):
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            layer = os.path.relpath(p, os.fsencode(str(overlay))).split(b"/")[0].decode()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                kinds_seen["whiteout"] += 1
            elif stat.S_ISFIFO(st.st_mode):
                kinds_seen["fifo"] += 1
            elif stat.S_ISREG(st.st_mode) and st.st_blocks * 512 < st.st_size // 2:
                kinds_seen["sparse"] += 1
            if b"\xff" in n:
                kinds_seen["non-utf8"] += 1
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                inodes[st.st_ino].add(layer)
    assert min(kinds_seen[k] for k in ("whiteout", "fifo", "sparse", "non-utf8")) >= 2, kinds_seen
    assert any(len(layers) == 1 for layers in inodes.values())  # conda's package cache, perl
    assert any(len(layers) > 1 for layers in inodes.values())  # the leaked cp -al copy
    # the layer store: every image layer's cache-id is a dir; the leaked dirs have no chain or no image
    layerdb = root / "image" / "overlay2" / "layerdb" / "sha256"
    cache_ids = {(d / "cache-id").read_text() for d in layerdb.iterdir()}
    assert cache_ids <= set(names)
    roles = {p.dir_id: p.role for p in quick.layers}
    assert {lid for lid, role in roles.items() if role in ("leaked-create", "leaked-buildkit", "leaked-copy")}
    assert not cache_ids & {lid for lid, r in roles.items() if r in ("leaked-create", "leaked-buildkit")}


def test_collect_counts_equal_find_and_du_per_layer(quick: Any, quick_snap: Path) -> None:
    overlay = Path(quick.root) / "overlay2"
    found = subprocess.run(["find", str(overlay), "-mindepth", "1", "-xdev", "-printf", r"%P\0"],
                           capture_output=True, check=True).stdout.split(b"\0")[:-1]
    per_layer = collections.Counter(p.split(b"/")[0].decode("utf-8", "backslashreplace") for p in found)
    layers = {r["layer_id"]: r for r in pq.read_table(quick_snap / "layers.parquet").to_pylist()}
    assert {k: v["file_count"] for k, v in layers.items()} == dict(per_layer)
    assert sum(per_layer.values()) == quick.entries == pq.ParquetFile(quick_snap / "files.parquet").metadata.num_rows
    # du -sx per layer where it is tricky: hard links (conda, the cp -al copy), sparse files (upper dirs)
    tricky = [p.dir_id for p in quick.layers if p.role in ("runtime", "leaked-copy", "rw")][:8]
    for lid in tricky:
        assert layers[lid]["allocated_bytes"] == du_allocated(overlay / lid), lid


def test_verdicts_find_exactly_the_planted_leaks(quick: Any, quick_snap: Path) -> None:
    leaked = set(verdict.leaks(str(quick_snap), 0, 0).column("layer_id").to_pylist())
    planted = {p.dir_id for p in quick.layers if p.role.startswith("leaked-")}
    assert leaked == planted


def test_run_py_quick_mode(quick: Any, tmp_path: Path) -> None:
    work = Path(quick.root).parent
    (work / "gen.json").write_text(json.dumps({"requested": QUICK, "seed": 0, "data": "real", "entries": quick.entries,
                                               "layers": [vars(p) for p in quick.layers], "images": quick.images,
                                               "containers": quick.containers, "seconds": quick.seconds}))
    out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--entries", str(QUICK), "--quick", "--work",
                          str(work), "--results", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / f"{QUICK}-quick.json").read_text())
    assert res["tree"]["entries"] == quick.entries
    assert res["warm"][0]["snapper"]["manifest"]["rows"] == quick.entries
    inc = res["incremental"]["warm"][0]["snapper"]["manifest"]["incremental"]
    assert inc["reused_layers"] > 0 and inc["walked_layers"] >= res["incremental"]["new_dirs"]
    assert set(os.listdir(Path(quick.root) / "overlay2")) == {p.dir_id for p in quick.layers} | {"l"}
    assert "warm:" in out.stdout
