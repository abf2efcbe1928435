"""snapper.metadata: layer store, image store, containers, overlay2 links and lower chains, mountinfo,
read directly from a synthetic data root and through a full collect."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapper.collect import CollectOptions, collect
from snapper.metadata.containers import read_containers
from snapper.metadata.files import MAX_METADATA_BYTES, NotRegular, read_bytes
from snapper.metadata.imagedb import read_images, read_tags
from snapper.metadata.layerdb import chain_ids, name_class, read_chains, read_mounts, read_write_sets
from snapper.metadata.mountinfo import parse_line, read_mountinfo
from snapper.metadata.overlay import list_entries, read_links, resolve_lower
from snapper.schema import TABLES
from tests.synthetic import LABEL_SECRET, SECRET, Standard, SyntheticRoot, build_standard, chain_id

REL = "image/overlay2"


@pytest.fixture(scope="module")
def std(tmp_path_factory: pytest.TempPathFactory) -> Standard:
    return build_standard(tmp_path_factory.mktemp("std") / "root")


@pytest.fixture(scope="module")
def snap(std: Standard, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("snaps") / "snap"
    collect(CollectOptions(root=str(std.root), out=str(out), hash_mode="full", jobs=1, api=False))
    return out


def table(snap: Path, name: str) -> list[dict[str, Any]]:
    return pq.read_table(snap / f"{name}.parquet").to_pylist()


def image_dir(std: Standard) -> Path:
    return std.root / "image" / "overlay2"


# --- layerdb ---------------------------------------------------------------------------------------------

def test_layerdb_rows(std: Standard) -> None:
    rows, errors = read_chains(image_dir(std), REL)
    assert errors == []
    by_dir = {r["dir_name"]: r for r in rows}
    expected: dict[str, tuple[str, str | None, str]] = {}  # chain -> (diff, parent, cache-id)
    for img in std.images.values():
        for i, (c, d, layer) in enumerate(zip(img.chain_ids, img.diff_ids, img.layers, strict=True)):
            expected[c] = (d, img.chain_ids[i - 1] if i else None, layer.dir_id)
    live = {r["chain_id"]: r for r in rows if not r["removing"]}
    assert set(live) == set(expected)
    for c, (d, parent, cache) in expected.items():
        r = live[c]
        assert r["dir_name"] == c.split(":")[1]
        assert (r["diff_id"], r["parent"], r["cache_id"]) == (d, parent, cache)
        assert r["has_tar_split"] is True and r["problem"] is None and isinstance(r["size"], int)
    rm = by_dir[std.removing_dir]
    assert rm["removing"] is True and rm["chain_id"] == std.removing_chain
    assert rm["cache_id"] == std.removing_cache_id and rm["problem"] is None
    assert rm["parent"] == std.images["app"].chain_ids[0]
    # The app image's top layer was built by BuildKit: its cache-id is a 25-char id.
    assert name_class(live[std.images["app"].chain_ids[-1]]["cache_id"]) == "buildkit25"


def test_malformed_layerdb_entries_are_rows_and_errors(tmp_path: Path) -> None:
    sr = SyntheticRoot(tmp_path / "root")
    base = sr.layerdb / "sha256"
    good = sr.add_chain(None, sr.digest(), sr.hex64(), 10)
    (base / ("a" * 64)).mkdir()  # no files at all
    bad = base / ("b" * 64)
    bad.mkdir()
    (bad / "cache-id").write_text("x")
    (bad / "diff").write_text("md5:123")
    (bad / "parent").write_text("sha256:short")
    (bad / "size").write_text("12kB")
    (base / "not-a-chain").mkdir()
    (base / ("c" * 64)).write_text("a file")
    fifo_dir = base / ("d" * 64)
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "cache-id")  # never opened for reading: O_NONBLOCK + regular-file check
    rows, errors = read_chains(sr.image_dir, REL)
    by = {r["dir_name"]: r for r in rows}
    assert by[good.split(":")[1]]["problem"] is None
    assert by["a" * 64]["problem"] == "no cache-id"
    p = by["b" * 64]["problem"]
    assert "size is not a number" in p and "diff is not a sha256 digest" in p and "parent is not" in p
    # The name problem is kept next to the content problems (it used to be overwritten by them).
    assert by["not-a-chain"]["problem"] == "name is not a chain id; no cache-id"
    assert by["not-a-chain"]["chain_id"] is None
    assert by["c" * 64]["problem"] == "not a directory"
    assert "unreadable" in by["d" * 64]["problem"]
    objs = {e["object"] for e in errors}
    assert f"{REL}/layerdb/sha256/{'a' * 64}" in objs and f"{REL}/layerdb/sha256/{'d' * 64}" in objs
    assert all(set(e) == {"source", "object", "op", "errno", "message"} for e in errors)


def test_mounts(std: Standard) -> None:
    rows, errors = read_mounts(image_dir(std), REL)
    assert errors == []
    by = {r["name"]: r for r in rows}
    for c in std.containers.values():
        r = by[c.cid]
        assert (r["name_class"], r["mount_id"], r["init_id"], r["parent"]) == \
            ("hex64", c.mount.dir_id, c.init.dir_id, c.image.chain_ids[-1])
        assert c.init.dir_id == c.mount.dir_id + "-init"
    bk = by[std.buildkit_mount]
    assert bk["name_class"] == "buildkit25" and bk["init_id"] is None and bk["problem"] is None
    assert name_class(bk["mount_id"]) == "hex64"


def test_mount_without_mount_id(tmp_path: Path) -> None:
    sr = SyntheticRoot(tmp_path / "root")
    (sr.layerdb / "mounts" / ("e" * 64)).mkdir()
    rows, errors = read_mounts(sr.image_dir, REL)
    assert rows[0]["problem"] == "no mount-id"
    assert [(e["source"], e["op"]) for e in errors] == [("mounts", "parse")]


def test_write_sets(std: Standard) -> None:
    rows, errors = read_write_sets(image_dir(std), REL)
    assert errors == []
    ws = std.root / "image/overlay2/layerdb/tmp/write-set-123"
    assert rows == [{"name": "write-set-123", "entry_type": "d", "files": 2,
                     "bytes": sum(p.stat().st_size for p in ws.iterdir()),
                     "mtime_ns": ws.stat().st_mtime_ns, "ctime_ns": ws.stat().st_ctime_ns}]


def test_name_classes() -> None:
    assert name_class("a" * 64) == "hex64"
    assert name_class("a" * 64 + "-init") == "hex64-init"
    assert name_class("0123456789abcdefghijklmno") == "buildkit25"
    for other in ("A" * 64, "a" * 63, "l", "a" * 64 + "-removing", "0123456789abcdefghijklmnoP"):
        assert name_class(other) == "other"


# --- image store ------------------------------------------------------------------------------------------

def test_chain_ids_are_the_oci_chain(std: Standard) -> None:
    rows, errors = read_images(image_dir(std), REL, read_tags(image_dir(std), REL)[0])
    assert errors == []
    by = {r["image_id"]: r for r in rows}
    chains = {r["chain_id"] for r in read_chains(image_dir(std), REL)[0]}
    for img in std.images.values():
        r = by[img.image_id]
        assert r["digest_ok"] is True and r["problem"] is None
        assert r["diff_ids"] == img.diff_ids
        assert r["chain_ids"] == img.chain_ids  # computed independently by the builder
        assert r["top_chain_id"] == img.chain_ids[-1]
        assert set(r["chain_ids"]) <= chains  # every chain is in the layer store
        assert sorted(r["tags"]) == sorted(img.tags)
        assert r["parent"] == img.parent
        assert hashlib.sha256(img.config).hexdigest() == img.image_id.split(":")[1]
    app = std.images["app"]
    assert sorted(by[app.image_id]["tags"]) == ["app:1.0", "app:latest"]
    assert by[std.images["child"].image_id]["tags"] == []  # dangling
    assert by[std.images["child"].image_id]["parent"] == std.images["base"].image_id
    assert by[app.image_id]["last_updated"] == "2026-11-01T10:00:00Z"


@given(st.lists(st.binary(min_size=1, max_size=8), min_size=0, max_size=6))
def test_chain_ids_property(seeds: list[bytes]) -> None:
    diffs = ["sha256:" + hashlib.sha256(s).hexdigest() for s in seeds]
    expected: list[str] = []
    for d in diffs:  # tests.synthetic.chain_id is written independently of snapper's
        expected.append(chain_id(expected[-1] if expected else None, d))
    assert chain_ids(diffs) == expected


def test_chain_id_by_hand() -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]


def test_tags(std: Standard) -> None:
    rows, errors = read_tags(image_dir(std), REL)
    assert errors == []
    assert rows == [
        {"repository": "app", "ref": "app:1.0", "image_id": std.images["app"].image_id},
        {"repository": "app", "ref": "app:latest", "image_id": std.images["app"].image_id},
        {"repository": "base", "ref": "base:1", "image_id": std.images["base"].image_id},
    ]


def test_tampered_and_corrupt_image_configs(tmp_path: Path) -> None:
    sr = SyntheticRoot(tmp_path / "root")
    img = sr.add_image([{"a": b"1"}], ("x:1",))
    content = sr.image_dir / "imagedb" / "content" / "sha256"
    hexid = img.image_id.split(":")[1]
    (content / hexid).write_bytes(img.config.replace(b'"os":"linux"', b'"os":"Linux"'))  # tampered
    garbage = b"{ this is not json"
    (content / hashlib.sha256(garbage).hexdigest()).write_bytes(garbage)
    bad_ids = json.dumps({"rootfs": {"diff_ids": ["sha256:nothex"]}}).encode()
    (content / hashlib.sha256(bad_ids).hexdigest()).write_bytes(bad_ids)
    (content / "README").write_text("stray")
    rows, errors = read_images(sr.image_dir, REL, read_tags(sr.image_dir, REL)[0])
    by = {r["image_id"]: r for r in rows}
    t = by[img.image_id]
    assert t["digest_ok"] is False and "does not match" in t["problem"] and t["tags"] == ["x:1"]
    assert t["chain_ids"] == img.chain_ids  # still parsed
    g = by["sha256:" + hashlib.sha256(garbage).hexdigest()]
    assert g["digest_ok"] is True and g["problem"].startswith("corrupt config") and g["chain_ids"] is None
    assert "not a list of sha256 digests" in by["sha256:" + hashlib.sha256(bad_ids).hexdigest()]["problem"]
    assert len(rows) == 3
    assert sorted(e["object"].rsplit("/", 1)[1] for e in errors) == sorted(
        [hexid, hashlib.sha256(garbage).hexdigest(), hashlib.sha256(bad_ids).hexdigest(), "README"])


def test_corrupt_repositories_json(tmp_path: Path) -> None:
    sr = SyntheticRoot(tmp_path / "root")
    (sr.image_dir / "repositories.json").write_text('{"Repositories": {"a": {"a:1": "sha256:')
    rows, errors = read_tags(sr.image_dir, REL)
    assert rows == [] and [(e["source"], e["op"]) for e in errors] == [("tags", "parse")]
    (sr.image_dir / "repositories.json").write_text('{"Repositories": {"a": [], "b": {"b:1": 5, "b:2": "x"}}}')
    rows, errors = read_tags(sr.image_dir, REL)
    assert rows == [{"repository": "b", "ref": "b:2", "image_id": "x"}] and len(errors) == 2


# --- containers ------------------------------------------------------------------------------------------

def test_containers_state_and_problems(std: Standard) -> None:
    rows, errors = read_containers(std.root)
    by = {r["container_id"]: r for r in rows}
    assert len(rows) == len(std.containers) + 1  # + the config-less one
    expect = {"web": ("running", True, False), "job": ("exited", False, False), "zombie": ("dead", False, True)}
    for name, (state, running, dead) in expect.items():
        c = std.containers[name]
        r = by[c.cid]
        assert (r["name"], r["state"], r["running"], r["dead"]) == (name, state, running, dead)
        assert r["image"] == c.image.image_id and r["driver"] == "overlay2" and r["config_present"] is True
        assert r["problem"] is None and r["removal_in_progress"] is False
    broken = by[std.broken_cid]
    assert broken["config_present"] is True and broken["problem"].startswith("corrupt config.v2.json")
    assert broken["state"] is None
    ghost = by[std.ghost_cid]
    assert ghost["config_present"] is False and ghost["problem"] == "config.v2.json missing"
    assert ghost["mtime_ns"] == (std.root / "containers" / std.ghost_cid).stat().st_mtime_ns
    assert sorted((e["object"], e["op"]) for e in errors) == sorted([
        (f"containers/{std.broken_cid}/config.v2.json", "parse"),
        (f"containers/{std.ghost_cid}/config.v2.json", "read"),
    ])


@pytest.mark.parametrize("state,expected", [
    ({"Running": True, "Paused": True}, "paused"),
    ({"Running": True, "Restarting": True}, "restarting"),
    ({"RemovalInProgress": True}, "removing"),
    ({"StartedAt": "0001-01-01T00:00:00Z"}, "created"),
    ({}, "created"),
    ({"StartedAt": "2026-01-01T00:00:00Z"}, "exited"),
])
def test_container_states(tmp_path: Path, state: dict[str, Any], expected: str) -> None:
    d = tmp_path / "containers" / ("f" * 64)
    d.mkdir(parents=True)
    (d / "config.v2.json").write_text(json.dumps({"ID": "f" * 64, "State": state, "Name": "/n"}))
    (rows, errors) = read_containers(tmp_path)
    assert rows[0]["state"] == expected and errors == []


def test_container_id_mismatch_and_non_object(tmp_path: Path) -> None:
    for cid, body in (("1" * 64, json.dumps({"ID": "2" * 64, "State": {}})), ("3" * 64, "[]")):
        d = tmp_path / "containers" / cid
        d.mkdir(parents=True)
        (d / "config.v2.json").write_text(body)
    rows, errors = read_containers(tmp_path)
    assert "differs from the directory name" in rows[0]["problem"]
    assert "not a JSON object" in rows[1]["problem"]
    assert len(errors) == 2


def test_no_secret_anywhere_in_the_snapshot(snap: Path, std: Standard) -> None:
    # The secret is really in the data root ...
    web_cfg = (std.root / "containers" / std.containers["web"].cid / "config.v2.json").read_bytes()
    assert SECRET.encode() in web_cfg and LABEL_SECRET.encode() in web_cfg
    # ... and in no byte of any snapshot file (Parquet statistics and dictionaries are stored in clear) ...
    files = sorted(snap.iterdir())
    assert len(files) == len(TABLES) + 1
    for p in files:
        data = p.read_bytes()
        for secret in (SECRET, LABEL_SECRET):
            assert secret.encode() not in data, p.name
    # ... nor in any decoded value (the pages themselves are zstd-compressed).
    for t in TABLES:
        text = json.dumps(table(snap, t.name), default=repr)
        assert SECRET not in text and LABEL_SECRET not in text, t.name


def test_snapshot_keeps_corrupt_and_missing_configs_as_rows(snap: Path, std: Standard) -> None:
    containers = {r["container_id"]: r for r in table(snap, "containers")}
    assert containers[std.broken_cid]["problem"].startswith("corrupt")
    assert containers[std.ghost_cid]["problem"] == "config.v2.json missing"
    assert containers[std.containers["web"].cid]["state"] == "running"
    errs = [e for e in table(snap, "errors") if e["source"] == "containers"]
    assert len(errs) == 2
    assert len(table(snap, "files")) > 100  # the run went on after the bad configs


def test_metadata_reads_do_not_follow_or_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/etc/shadow", tmp_path / "link")
    with pytest.raises(NotRegular):
        read_bytes(tmp_path / "fifo")
    with pytest.raises(OSError):  # ELOOP: O_NOFOLLOW
        read_bytes(tmp_path / "link")
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(MAX_METADATA_BYTES + 1)
    with pytest.raises(NotRegular, match="larger than"):
        read_bytes(big)


# --- overlay2/l and lower chains ------------------------------------------------------------------------------

def test_links(std: Standard) -> None:
    overlay = os.fsencode(str(std.root / "overlay2"))
    rows, errors = read_links(overlay)
    assert errors == []
    by = {r["short_id"]: r for r in rows}
    dangling = by[std.dangling_short]
    assert dangling["dangling"] is True and dangling["well_formed"] is True and dangling["is_symlink"] is True
    assert [r["short_id"] for r in rows if r["dangling"]] == [std.dangling_short]
    on_disk = {p.name for p in (std.root / "overlay2" / "l").iterdir()}
    assert set(by) == on_disk
    web = std.containers["web"]
    assert by[web.mount.link_id]["target"] == f"../{web.mount.dir_id}/diff"
    assert by[web.mount.link_id]["target_layer_id"] == web.mount.dir_id


def test_odd_links(tmp_path: Path) -> None:
    sr = SyntheticRoot(tmp_path / "root")
    real = sr.add_layer()
    ldir = sr.overlay / "l"
    os.symlink("/etc/shadow", ldir / "ABSOLUTE")
    os.symlink(f"../{real.dir_id}", ldir / "NODIFF")
    (ldir / "AFILE").write_text("not a link")
    # A link to a dir that is itself a symlink out of the tree counts as dangling.
    os.symlink("/tmp", sr.overlay / "escape")
    os.symlink("../escape/diff", ldir / "ESCAPE")
    rows, errors = read_links(os.fsencode(str(sr.overlay)))
    by = {r["short_id"]: r for r in rows}
    assert errors == []
    assert (by["ABSOLUTE"]["well_formed"], by["ABSOLUTE"]["dangling"]) == (False, True)
    assert by["ABSOLUTE"]["target"] == "/etc/shadow"
    assert by["NODIFF"]["well_formed"] is False
    assert (by["AFILE"]["is_symlink"], by["AFILE"]["target"]) == (False, None)
    assert (by["ESCAPE"]["well_formed"], by["ESCAPE"]["dangling"]) == (True, True)
    assert by[real.link_id]["dangling"] is False


def test_lower_ids_resolved(snap: Path, std: Standard) -> None:
    layers = {r["layer_id"]: r for r in table(snap, "layers")}
    for c in std.containers.values():
        expect = [c.init.dir_id] + [layer.dir_id for layer in reversed(c.image.layers)]
        row = layers[c.mount.dir_id]
        assert row["lower_ids"] == expect and row["lower_unresolved"] == 0
        assert layers[c.init.dir_id]["lower_ids"] == expect[1:]
    base = std.images["app"].layers[0]
    assert layers[base.dir_id]["lower_ids"] is None and layers[base.dir_id]["has_committed"] is True
    unresolved = layers[std.layers["unresolved"].dir_id]
    assert unresolved["lower_ids"] == [base.dir_id, None] and unresolved["lower_unresolved"] == 1
    assert unresolved["lower"] == f"l/{base.link_id}:l/{std.missing_short}"


def test_resolve_lower_unit() -> None:
    links = {"AAA": "layer-a", "BBB": "layer-b"}
    assert resolve_lower(None, links) == (None, 0)
    assert resolve_lower("l/AAA:l/BBB", links) == (["layer-a", "layer-b"], 0)
    assert resolve_lower("l/AAA:l/ZZZ:BBB", links) == (["layer-a", None, "layer-b"], 1)


def test_list_entries_is_lossless(tmp_path: Path) -> None:
    (tmp_path / "overlay2").mkdir()
    for n in (b"b" * 64, b"a\xff", b"l"):
        os.mkdir(os.path.join(os.fsencode(str(tmp_path / "overlay2")), n))
    names, errors = list_entries(os.fsencode(str(tmp_path / "overlay2")))
    assert names == [b"a\xff", b"b" * 64, b"l"] and errors == []
    assert list_entries(os.fsencode(str(tmp_path / "missing"))) == ([], [])


def test_layers_table_classifies_every_entry(snap: Path, std: Standard) -> None:
    layers = {r["layer_id"]: r for r in table(snap, "layers")}
    assert set(layers) == {p.name for p in (std.root / "overlay2").iterdir()}
    assert layers["l"]["name_class"] == "links"
    assert layers["stray.txt"]["name_class"] == "other" and layers["stray.txt"]["entry_type"] == "f"
    assert layers[std.layers["buildcache"].dir_id]["name_class"] == "buildkit25"
    web = std.containers["web"]
    assert layers[web.init.dir_id]["name_class"] == "hex64-init"
    r = layers[web.mount.dir_id]
    assert (r["has_diff"], r["has_link"], r["has_lower"], r["has_work"], r["has_merged"], r["has_committed"]) == \
        (True, True, True, True, True, False)
    assert r["link_id"] == web.mount.link_id and r["mounted"] is False
    rm = layers[std.removing_cache_id]
    assert (rm["has_diff"], rm["has_link"]) == (True, False)
    assert all(r["walk_status"] == "ok" for r in layers.values())


# --- mountinfo -----------------------------------------------------------------------------------------------

def test_mountinfo_line_with_escapes() -> None:
    line = (rb"301 29 0:55 / /var/lib/docker/overlay2/abc/merged rw,relatime shared:150 - overlay overlay "
            rb"rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,"
            rb"upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/var/lib/docker/overlay2/abc/work")
    r = parse_line(line)
    assert r is not None
    assert (r["mount_id"], r["parent_id"], r["fstype"], r["source"]) == (301, 29, "overlay", "overlay")
    assert r["mount_point_raw"] == b"/var/lib/docker/overlay2/abc/merged"
    assert r["upperdir"] == "/var/lib/docker/overlay2/abc/diff"
    spaced = parse_line(rb"40 1 8:1 / /mnt/with\040space\011tab\134 rw - ext4 /dev/sda1 rw")
    assert spaced is not None and spaced["mount_point_raw"] == b"/mnt/with space\ttab\\"
    assert parse_line(b"garbage") is None


def test_read_mountinfo_filters_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "docker"
    info = tmp_path / "mountinfo"
    info.write_bytes(
        b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        + f"2 1 0:50 / {root}/overlay2/abc/merged rw - overlay overlay rw,upperdir={root}/overlay2/abc/diff\n"
          .encode()
        + f"3 1 0:51 / {root}/containers/c1/mounts/shm rw - tmpfs shm rw\n".encode()
        + f"4 1 0:52 / {root}-other/x rw - tmpfs t rw\n".encode()
        + b"not a mountinfo line\n")
    rows, errors, points = read_mountinfo(root, str(info))
    assert [r["rel_path"] for r in rows] == ["containers/c1/mounts/shm", "overlay2/abc/merged"]
    assert [r["layer_id"] for r in rows] == [None, "abc"]
    assert points == {os.fsencode(f"{root}/overlay2/abc/merged"), os.fsencode(f"{root}/containers/c1/mounts/shm")}
    assert len(errors) == 1 and errors[0]["op"] == "parse"
