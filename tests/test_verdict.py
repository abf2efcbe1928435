"""Verdict logic on synthetic roots: every mechanism, and `unknown`/`in-flight` wherever metadata that could
keep a dir alive is unreadable or the daemon may still be working. Never a false `leaked`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from snapper import verdict
from snapper.collect import CollectOptions, collect
from tests.synthetic import Standard, SyntheticRoot, build_standard


def snap_of(root: Path, tmp: Path, name: str = "snap") -> Path:
    out = tmp / name
    collect(CollectOptions(root=str(root), out=str(out), api=False, jobs=1))
    return out


def by_layer(path: Path, grace_s: int = 0) -> dict[str, dict[str, Any]]:
    return {r["layer_id"]: r for r in verdict.verdicts(str(path), grace_s).to_pylist()}


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Standard, dict[str, dict[str, Any]], Path]:
    base = tmp_path_factory.mktemp("std")
    std = build_standard(base / "root", seed=3, odd=False)
    path = snap_of(std.root, base)
    return std, by_layer(path), path


def test_standard_root_mechanisms(standard: tuple[Standard, dict[str, dict[str, Any]], Path]) -> None:
    std, v, _ = standard
    for img in std.images.values():
        for layer in img.layers:
            assert v[layer.dir_id]["verdict"] == "live", layer.dir_id
    for name, c in std.containers.items():  # running, exited and dead containers keep their dirs
        if name == "broken":  # a corrupt config.v2.json: whether dockerd loads it cannot be told
            for d in (c.mount.dir_id, c.init.dir_id):
                assert v[d]["verdict"] == "unknown" and "readable config.v2.json" in v[d]["evidence"]
            continue
        assert v[c.mount.dir_id]["verdict"] == "live" and v[c.init.dir_id]["verdict"] == "live"
    assert v[std.containers["zombie"].mount.dir_id]["reached_by"] == "container"
    leaked = {k: r["mechanism"] for k, r in v.items() if r["verdict"] == "leaked"}
    bk_rw = next(k for k, r in v.items() if r["mount_name"] == std.buildkit_mount)
    assert leaked == {
        std.removing_cache_id: "interrupted-image-delete",
        bk_rw: "orphan-container-mount",
        std.layers["buildcache"].dir_id: "buildkit-snapshot-without-record",
        std.layers["leaked"].dir_id: "interrupted-layer-create",
        std.layers["unresolved"].dir_id: "interrupted-layer-create",
        "stray.txt": "stray-dir",
    }
    assert v[std.removing_cache_id]["self_heals"] is True
    assert sum(r["self_heals"] for r in v.values()) == 1
    assert "write-set-123" in v[std.layers["leaked"].dir_id]["evidence"]
    assert v["l"]["verdict"] == "live"


def test_leaked_metadata_lists_what_holds_no_dir(standard: tuple[Standard, dict[str, dict[str, Any]], Path]) -> None:
    std, _, path = standard
    rows = verdict.leaked_metadata(str(path), 0).to_pylist()
    kinds = {(r["kind"], r["object"].rsplit("/", 1)[-1]) for r in rows}
    assert ("write-set", "write-set-123") in kinds
    assert ("dangling-link", std.dangling_short) in kinds
    assert ("orphan-buildkit-mount", std.buildkit_mount) in kinds
    assert ("unreachable-chain", std.removing_dir) in kinds


def _simple(tmp: Path) -> tuple[SyntheticRoot, Any, Any]:
    sr = SyntheticRoot(tmp / "root", seed=11)
    img = sr.add_image([{"bin/sh": b"sh"}, {"opt/conda/lib/python3.11/site-packages/sklearn/a.py": b"x"}],
                       ["ml:1"])
    other = sr.add_image([{"etc/other": b"o"}], ["other:1"])
    return sr, img, other


def test_corrupt_image_config_makes_unreachable_chains_unknown(tmp_path: Path) -> None:
    sr, img, other = _simple(tmp_path)
    # delete ml:1's config as a crashed rmi would: its chains are unreachable -> leaked
    cfg = sr.image_dir / "imagedb" / "content" / "sha256" / img.image_id[7:]
    cfg.unlink()
    v = by_layer(snap_of(sr.root, tmp_path, "a"))
    assert {v[layer.dir_id]["mechanism"] for layer in img.layers} == {"interrupted-image-delete"}
    # now a corrupt config sits beside them: it might reference those chains -> unknown, never leaked
    (sr.image_dir / "imagedb" / "content" / "sha256" / ("f" * 64)).write_bytes(b'{"rootfs": {"diff_ids": [tru')
    v = by_layer(snap_of(sr.root, tmp_path, "b"))
    for layer in img.layers:
        assert v[layer.dir_id]["verdict"] == "unknown"
        assert "image config(s) are unreadable" in v[layer.dir_id]["evidence"]
    assert v[other.layers[0].dir_id]["verdict"] == "live"


def test_unreadable_buildkit_db_makes_buildkit_dirs_unknown(tmp_path: Path) -> None:
    sr, img, _ = _simple(tmp_path)
    bk = sr.add_layer(sr.buildkit_id(), img.top)
    v = by_layer(snap_of(sr.root, tmp_path, "a"))
    assert v[bk.dir_id]["mechanism"] == "buildkit-snapshot-without-record"
    (sr.root / "buildkit").mkdir()
    (sr.root / "buildkit" / "metadata_v2.db").write_bytes(b"\0" * 8192)  # no valid meta page
    v = by_layer(snap_of(sr.root, tmp_path, "b"))
    assert v[bk.dir_id]["verdict"] == "unknown"
    assert "BuildKit" in v[bk.dir_id]["evidence"]


def test_container_without_config_is_an_orphan_mount_and_a_corrupt_config_unknown(tmp_path: Path) -> None:
    """dockerd skips a container dir without config.v2.json at load ("failed to load container"): with no daemon
    running, its RW and -init dirs are orphan-container-mount and the image layers it alone pins are
    pinned-by-orphan-mount. A corrupt config is undecidable: unknown."""
    sr, img, _ = _simple(tmp_path)
    c = sr.add_container(img, "c", "exited")
    cfg = sr.root / "containers" / c.cid / "config.v2.json"
    cfg.write_text("{not json")
    v = by_layer(snap_of(sr.root, tmp_path))
    assert v[c.mount.dir_id]["verdict"] == "unknown" and v[c.init.dir_id]["verdict"] == "unknown"
    cfg.unlink()
    v = by_layer(snap_of(sr.root, tmp_path, "m"))
    for d in (c.mount.dir_id, c.init.dir_id):
        assert (v[d]["verdict"], v[d]["mechanism"]) == ("leaked", "orphan-container-mount")
        assert "has no config.v2.json" in v[d]["evidence"] and "failed to load container" in v[d]["evidence"]
    # and with the container dir gone entirely it is a plain orphan mount
    import shutil

    shutil.rmtree(sr.root / "containers" / c.cid)
    v = by_layer(snap_of(sr.root, tmp_path, "b"))
    assert v[c.mount.dir_id]["mechanism"] == "orphan-container-mount"
    assert "does not exist" in v[c.mount.dir_id]["evidence"]


def test_layerdb_entry_without_cache_id_makes_ownerless_dirs_unknown(tmp_path: Path) -> None:
    sr, img, _ = _simple(tmp_path)
    lost = sr.add_layer()
    v = by_layer(snap_of(sr.root, tmp_path, "a"))
    assert v[lost.dir_id]["mechanism"] == "interrupted-layer-create"
    broken = sr.layerdb / "sha256" / ("e" * 64)
    broken.mkdir()
    (broken / "diff").write_text(sr.digest())
    v = by_layer(snap_of(sr.root, tmp_path, "b"))
    assert v[lost.dir_id]["verdict"] == "unknown"
    assert v[img.layers[0].dir_id]["verdict"] == "live"


def test_partial_delete_remnant_and_lone_init(tmp_path: Path) -> None:
    sr, img, _ = _simple(tmp_path)
    remnant = sr.add_layer(with_link=False)
    sr.write(remnant, "usr/lib/half.so", b"x")
    init = sr.add_layer(f"{sr.hex64()}-init", img.top)
    v = by_layer(snap_of(sr.root, tmp_path))
    assert v[remnant.dir_id]["mechanism"] == "partial-delete-remnant"
    assert v[init.dir_id]["mechanism"] == "orphan-container-mount"


def test_running_daemon_and_young_dirs_are_in_flight(tmp_path: Path) -> None:
    sr, _img, _ = _simple(tmp_path)
    young = sr.add_layer()
    path = snap_of(sr.root, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["daemon"]["running"] = True  # as if dockerd ran on this root during the collect
    (path / "manifest.json").write_text(json.dumps(m))
    v = by_layer(path, grace_s=3600)
    assert v[young.dir_id]["verdict"] == "in-flight"
    assert "grace" in v[young.dir_id]["evidence"]
    v = by_layer(path, grace_s=0)
    assert v[young.dir_id]["verdict"] == "leaked"
    assert verdict.leaks(str(path), 0, 3600).num_rows == 0


def test_explain_gives_the_chain_of_references(standard: tuple[Standard, dict[str, dict[str, Any]], Path]) -> None:
    std, _, path = standard
    app = std.images["app"]
    rows = verdict.explain(str(path), app.layers[0].dir_id[:12], 0).to_pylist()
    kept = [r["detail"] for r in rows if r["section"] == "kept alive by"]
    assert kept[0].startswith("container ") or kept[0].startswith("image ")
    assert kept[-1].endswith(app.layers[0].dir_id)
    leaked = verdict.explain(str(path), std.layers["leaked"].dir_id, 0).to_pylist()
    assert leaked[0] == {"section": "dir", "detail": "overlay2/" + std.layers["leaked"].dir_id}
    assert leaked[1] == {"section": "verdict", "detail": "leaked (interrupted-layer-create)"}
    from snapper.errors import UsageError

    with pytest.raises(UsageError):
        verdict.explain(str(path), "nonexistent", 0)


def test_extraction_deep_in_an_old_looking_dir_is_in_flight(tmp_path: Path) -> None:
    """A layer still being extracted: top-level timestamps old, new inodes deep in diff/ -> in-flight."""
    import os
    import time

    sr, _img, _ = _simple(tmp_path)
    pulling = sr.add_layer()
    deep = pulling.diff / "opt" / "conda" / "lib"
    deep.mkdir(parents=True)
    time.sleep(2.2)
    (deep / "new.py").write_bytes(b"x")
    newest = os.lstat(deep / "new.py").st_ctime_ns
    path = snap_of(sr.root, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["daemon"]["running"] = True
    m["started_ns"] = newest + 1_000_000_000  # collected 1 s after the newest file, 3 s after the top level
    (path / "manifest.json").write_text(json.dumps(m))
    assert by_layer(path, grace_s=2)[pulling.dir_id]["verdict"] == "in-flight"
    assert by_layer(path, grace_s=0)[pulling.dir_id]["verdict"] == "leaked"
