"""snapper.incremental: reuse the rows of unchanged committed layer dirs from a base snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from snapper import incremental
from snapper.collect import CollectOptions, collect, low_priority
from snapper.metadata.layerdb import read_chains
from snapper.metadata.overlay import list_entries, read_links
from snapper.snapshot import table_digest
from tests.synthetic import Standard, SyntheticRoot, build_standard


def run(root: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return collect(CollectOptions(root=str(root), out=str(out), api=False, **kw)).manifest


def rows(snap: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(snap / f"{name}.parquet").to_pylist()


def files_sorted(snap: Path) -> list[dict[str, Any]]:
    return sorted(rows(snap, "files"), key=lambda r: (r["layer_id"], r["path_raw"] or r["path"].encode()))


def plan_of(std: Standard, base: Path, hash_mode: str = "partial") -> incremental.Plan:
    """What collect decides for ``std.root`` against ``base`` (the same inputs collect reads)."""
    overlay = os.fsencode(str(std.root / "overlay2"))
    chains, _ = read_chains(std.root / "image" / "overlay2", "image/overlay2")
    link_rows, _ = read_links(overlay)
    links = {r["short_id"]: r["target_layer_id"] for r in link_rows if r["well_formed"] and not r["dangling"]}
    b, why = incremental.usable(base, std.root, hash_mode)
    assert b is not None, why
    return incremental.plan(b, why, overlay, list_entries(overlay)[0], chains, links, set())


@pytest.fixture()
def std(tmp_path: Path) -> Standard:
    return build_standard(tmp_path / "root")


def test_unchanged_committed_layers_are_reused_and_the_result_equals_a_full_collect(std: Standard,
                                                                                    tmp_path: Path) -> None:
    base = tmp_path / "base"
    m0 = run(std.root, base, hash_mode="partial", use_base=False)
    assert m0["incremental"]["base"] is None and m0["incremental"]["reused_layers"] == 0
    before = plan_of(std, base)
    sr = SyntheticRoot(std.root, seed=99)  # more of the same shapes, on the existing root
    app = std.images["app"]
    # Since the base: a writable upper dir gets a file, a new layer appears, a committed layer's diff/ is
    # touched (its signature changes) and another committed layer is deleted and re-created (new inode).
    sr.write(std.upper, "tmp/new-since-base", b"x" * 100)
    new = sr.add_layer(None, app.layers[-1])
    sr.write(new, "srv/fresh.txt", b"fresh")
    touched = app.layers[0]
    (touched.diff / "added-later").write_bytes(b"late")
    recreated = app.layers[1]
    shutil.copytree(recreated.path, tmp_path / "saved", symlinks=True)
    shutil.rmtree(recreated.path)
    shutil.copytree(tmp_path / "saved", recreated.path, symlinks=True)

    after = plan_of(std, base)
    inc = tmp_path / "inc"
    m1 = run(std.root, inc, hash_mode="partial", base=str(base), jobs=2)
    full = tmp_path / "full"
    run(std.root, full, hash_mode="partial", use_base=False, jobs=1)
    assert files_sorted(inc) == files_sorted(full)
    assert rows(inc, "layers") == rows(full, "layers")
    assert rows(inc, "errors") == rows(full, "errors")

    image_layers = {lay.dir_id for img in std.images.values() for lay in img.layers}
    uppers = {c.mount.dir_id for c in std.containers.values()}
    assert image_layers <= set(before.reused)  # unchanged image layers: copied
    assert uppers.isdisjoint(before.reused) and "l" not in before.reused  # writable: walked
    walked = {os.fsdecode(n) for n in after.walk}
    assert {std.upper.dir_id, new.dir_id, touched.dir_id, recreated.dir_id, "l"} <= walked
    assert set(after.reused) == set(before.reused) - {touched.dir_id, recreated.dir_id}
    layers = {r["layer_id"]: r for r in rows(full, "layers")}
    for lid in after.reused:  # only committed dirs: a parent or a layer-store cache-id
        assert layers[lid]["has_committed"] or lid in image_layers or lid == std.removing_cache_id, lid
    info = m1["incremental"]
    assert info["base"] == str(base) and info["reason"] == "--base"
    assert (info["reused_layers"], info["walked_layers"]) == (len(after.reused), len(after.walk))
    assert info["reused_rows"] == sum(layers[lid]["file_count"] for lid in after.reused)


def test_top_level_files_and_work_changed_in_place_are_walked_again(std: Standard, tmp_path: Path) -> None:
    """A committed dir's `link`, `lower`, `committed` or `work/` changed in place (the dir's own mtime and
    ctime stay) must not lend the base's stale rows: the incremental snapshot equals a full one, row for row."""
    layers = list({lay.dir_id: lay for img in std.images.values() for lay in img.layers}.values())
    committed_dir = next(lay for lay in layers if (lay.path / "committed").exists())
    with_lower = next(lay for lay in layers if (lay.path / "lower").exists() and lay is not committed_dir)
    with_work = next(lay for lay in layers if (lay.path / "work").is_dir() and lay not in (committed_dir, with_lower))
    with_link = next(lay for lay in layers if (lay.path / "link").exists()
                     and lay not in (committed_dir, with_lower, with_work))
    (with_work.path / "work" / "work").mkdir(exist_ok=True)
    base = tmp_path / "base"
    run(std.root, base, hash_mode="partial", use_base=False)
    assert {committed_dir.dir_id, with_lower.dir_id, with_work.dir_id, with_link.dir_id} <= set(
        plan_of(std, base).reused)
    time.sleep(0.01)
    tops = {lay.dir_id: os.lstat(lay.path) for lay in (committed_dir, with_lower, with_work, with_link)}
    with open(committed_dir.path / "committed", "ab") as f:  # in place: same inode, the dir is untouched
        f.write(b"x")
    with open(with_lower.path / "lower", "r+b") as f:
        f.write(f.read())
    (with_work.path / "work" / "work" / "inode").write_bytes(b"overlay work file")
    with open(with_link.path / "link", "r+b") as f:
        f.write(f.read())
    for lid, st in tops.items():  # the old signature (dir and diff/ times) cannot see these changes
        now = os.lstat(std.root / "overlay2" / lid)
        assert (now.st_ino, now.st_mtime_ns, now.st_ctime_ns) == (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    after = plan_of(std, base)
    assert {committed_dir.dir_id, with_lower.dir_id, with_work.dir_id, with_link.dir_id}.isdisjoint(after.reused)
    inc, full = tmp_path / "inc", tmp_path / "full"
    run(std.root, inc, hash_mode="partial", base=str(base))
    run(std.root, full, hash_mode="partial", use_base=False)
    assert files_sorted(inc) == files_sorted(full)
    assert rows(inc, "layers") == rows(full, "layers")
    assert rows(inc, "layer_signatures") == rows(full, "layer_signatures")


def test_a_base_without_layer_signatures_reuses_nothing(std: Standard, tmp_path: Path) -> None:
    base = tmp_path / "base"
    run(std.root, base, hash_mode="partial", use_base=False)
    assert plan_of(std, base).reused
    (base / "layer_signatures.parquet").unlink()  # as written before schema 1.2
    m = json.loads((base / "manifest.json").read_text())
    m["schema_minor"] = 1
    m["rows"].pop("layer_signatures")
    (base / "manifest.json").write_text(json.dumps(m))
    assert plan_of(std, base).reused == {}


def test_writable_dirs_are_walked_even_when_unchanged(std: Standard, tmp_path: Path) -> None:
    run(std.root, tmp_path / "base", use_base=False)
    m = run(std.root, tmp_path / "inc", base=str(tmp_path / "base"))
    layers = {r["layer_id"]: r for r in rows(tmp_path / "inc", "layers")}
    upper_dirs = {c.mount.dir_id for c in std.containers.values()}
    # Container upper dirs are never parents nor image layers: walked every time.
    walked = m["incremental"]["walked_layers"]
    assert walked >= len(upper_dirs) + 1  # + l/
    assert m["incremental"]["reused_layers"] == len(layers) - walked
    assert files_sorted(tmp_path / "inc") == files_sorted(tmp_path / "base")


def test_default_base_is_the_newest_earlier_snapshot_of_the_same_root(std: Standard, tmp_path: Path) -> None:
    series = tmp_path / "series"
    first = collect(CollectOptions(root=str(std.root), api=False, series_dir=str(series))).path
    assert first.parent.parent == series
    other = build_standard(tmp_path / "other-root", seed=3)
    collect(CollectOptions(root=str(other.root), api=False, series_dir=str(series)))  # newer, another root
    time.sleep(1.1)  # default snapshot names are per second
    second = collect(CollectOptions(root=str(std.root), api=False, series_dir=str(series)))
    assert second.manifest["incremental"]["base"] == str(first)
    assert second.manifest["incremental"]["reused_layers"] > 5
    third = collect(CollectOptions(root=str(std.root), api=False, series_dir=str(series), use_base=False))
    assert third.manifest["incremental"]["base"] is None
    assert third.manifest["incremental"]["reason"] == "disabled (--no-base)"
    assert files_sorted(second.path) == files_sorted(third.path)


def test_a_base_of_another_root_schema_or_hash_mode_is_not_used(std: Standard, tmp_path: Path) -> None:
    other = build_standard(tmp_path / "other-root", seed=5)
    run(other.root, tmp_path / "other", use_base=False)
    m = run(std.root, tmp_path / "a", base=str(tmp_path / "other"))
    assert m["incremental"]["base"] is None and "not " + str(std.root) in m["incremental"]["reason"]

    run(std.root, tmp_path / "old", use_base=False)
    manifest = tmp_path / "old" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["schema_version"] = 0
    os.chmod(manifest, 0o600)
    manifest.write_text(json.dumps(data))
    m = run(std.root, tmp_path / "b", base=str(tmp_path / "old"))
    assert m["incremental"]["base"] is None and "schema version 0" in m["incremental"]["reason"]

    run(std.root, tmp_path / "nohash", use_base=False, hash_mode="none")
    m = run(std.root, tmp_path / "c", base=str(tmp_path / "nohash"), hash_mode="partial")
    assert m["incremental"]["base"] is None and "--hash none" in m["incremental"]["reason"]
    assert all(r["hash"] is not None for r in rows(tmp_path / "c", "files") if r["type"] == "f")

    m = run(std.root, tmp_path / "d", base=str(tmp_path / "does-not-exist"))
    assert m["incremental"]["base"] is None and "not a snapshot" in m["incremental"]["reason"]
    for snap in "abcd":
        assert files_sorted(tmp_path / snap) == files_sorted(tmp_path / "old") or snap == "c"


def test_a_layer_whose_base_walk_had_errors_is_walked_again(std: Standard, tmp_path: Path) -> None:
    run(std.root, tmp_path / "base", use_base=False)
    lid = std.images["base"].layers[0].dir_id
    layers = pq.read_table(tmp_path / "base" / "layers.parquet")
    status = ["partial" if x == lid else s for x, s in zip(layers.column("layer_id").to_pylist(),
                                                           layers.column("walk_status").to_pylist(), strict=True)]
    import pyarrow as pa

    path = tmp_path / "base" / "layers.parquet"
    os.chmod(path, 0o600)
    pq.write_table(layers.set_column(layers.schema.get_field_index("walk_status"), "walk_status",
                                     pa.array(status, pa.string())), path)
    manifest = json.loads((tmp_path / "base" / "manifest.json").read_text())
    manifest["table_digests"]["layers"] = table_digest(path)  # an edit the manifest knows of
    (tmp_path / "base" / "manifest.json").write_text(json.dumps(manifest))
    m = run(std.root, tmp_path / "inc", base=str(tmp_path / "base"))
    inc_layers = {r["layer_id"]: r for r in rows(tmp_path / "inc", "layers")}
    assert inc_layers[lid]["walk_status"] == "ok"
    assert m["incremental"]["reused_layers"] > 0
    assert files_sorted(tmp_path / "inc") == files_sorted(tmp_path / "base")


def test_low_priority_is_inherited_by_children_and_restored(tmp_path: Path) -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)
    with low_priority(True) as prio:
        out = subprocess.run(["sh", "-c", "cut -d' ' -f19 /proc/self/stat; ionice -p $$ 2>/dev/null || true"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
    assert prio["nice"] == 19 and int(out[0]) == 19
    if os.geteuid() == 0 and prio["io_class"] == "idle" and out[1]:
        assert out[1].strip() == "idle"
    if os.geteuid() == 0:  # raising priority back needs CAP_SYS_NICE
        assert os.getpriority(os.PRIO_PROCESS, 0) == before
    with low_priority(False) as prio:
        assert prio["io_class"] == "unchanged" and os.getpriority(os.PRIO_PROCESS, 0) == before


def test_manifest_records_priority(std: Standard, tmp_path: Path) -> None:
    m = run(std.root, tmp_path / "s", use_base=False)
    assert m["priority"]["nice"] == 19
    m = run(std.root, tmp_path / "t", use_base=False, nice=False)
    assert m["priority"] == {"nice": os.getpriority(os.PRIO_PROCESS, 0), "io_class": "unchanged"}


def test_row_groups_of_reused_rows_are_copied_as_bytes(std: Standard, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Committed dirs' rows get row groups of their own; a row group whose rows are all reused is copied
    byte for byte (spliced), one holding a changed dir is decoded and filtered; the file stays valid."""
    import snapper.fileswriter as collect_mod
    from snapper.snapshot import connect, open_snapshot

    monkeypatch.setattr(collect_mod, "_FILES_ROW_GROUP", 40)  # many row groups on a small tree
    run(std.root, tmp_path / "base", use_base=False, jobs=1)
    groups = incremental.group_layers(tmp_path / "base" / "files.parquet")
    stable = plan_of(std, tmp_path / "base", "none").stable
    assert len(groups) >= 3 and all(g <= stable or not g & stable for g in groups)  # never mixed
    (std.images["app"].layers[0].diff / "changed").write_bytes(b"x")
    m = run(std.root, tmp_path / "inc", base=str(tmp_path / "base"), jobs=2)
    info = m["incremental"]
    assert 0 < info["reused_rows_copied_as_bytes"] < info["reused_rows"]
    run(std.root, tmp_path / "full", use_base=False, jobs=1)
    assert files_sorted(tmp_path / "inc") == files_sorted(tmp_path / "full")
    snap = open_snapshot(tmp_path / "inc")  # footer and row counts agree with the manifest
    n = connect(snap).execute("SELECT count(*), count(DISTINCT layer_id) FROM files").fetchone()
    assert n == (m["rows"]["files"], m["rows"]["layers"])
    # and the next collect copies the rows of the collect that copied them
    m2 = run(std.root, tmp_path / "inc2", base=str(tmp_path / "inc"), jobs=2)
    assert m2["incremental"]["reused_rows_copied_as_bytes"] == m2["incremental"]["reused_rows"]
    assert files_sorted(tmp_path / "inc2") == files_sorted(tmp_path / "full")


def test_thrift_footer_round_trips(std: Standard, tmp_path: Path) -> None:
    run(std.root, tmp_path / "s", use_base=False)
    path = tmp_path / "s" / "files.parquet"
    meta, start = incremental.read_footer(path)
    out = bytearray()
    incremental._write_struct(out, meta)
    data = path.read_bytes()
    assert bytes(out) == data[start:-8]


def test_a_base_with_a_damaged_files_table_means_a_full_walk(std: Standard, tmp_path: Path) -> None:
    run(std.root, tmp_path / "base", use_base=False)
    files = tmp_path / "base" / "files.parquet"
    data = bytearray(files.read_bytes())
    data[4:4096] = b"\xff" * len(data[4:4096])  # the first pages: the footer stays valid
    os.chmod(files, 0o600)
    files.write_bytes(bytes(data))
    m = run(std.root, tmp_path / "inc", base=str(tmp_path / "base"))
    assert m["incremental"]["base"] is None and "corrupt Parquet file" in m["incremental"]["reason"]
    assert m["incremental"]["reused_layers"] == 0
    run(std.root, tmp_path / "full", use_base=False)
    assert files_sorted(tmp_path / "inc") == files_sorted(tmp_path / "full")
