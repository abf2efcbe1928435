"""The containerd store: meta.db and content readers, and the verdicts on a real engine's databases."""

from __future__ import annotations

import shutil
from pathlib import Path

from snapper import verdict
from snapper.collect import CollectOptions, collect
from snapper.metadata.containerd import META, go_time_ns, read_content, read_meta, rfc3339_ns, store_roots

CTR_ROOT = Path(__file__).parent / "data" / "ctr_root"


def test_go_time_and_rfc3339() -> None:
    # time.Date(2026, 12, 8, 0, 21, 33, 5, UTC).MarshalBinary()
    raw = bytes([1]) + (1796689293 + 62135596800).to_bytes(8, "big") + (5).to_bytes(4, "big") + b"\xff\xff"
    assert go_time_ns(raw) == 1796689293_000000005
    assert go_time_ns(b"\x01\x00") is None and go_time_ns(None) is None
    assert rfc3339_ns("2026-12-08T00:26:33Z") == 1796689593_000000000
    assert rfc3339_ns("2026-12-08T01:26:33.5+01:00") == 1796689593_500000000
    assert rfc3339_ns("tomorrow") is None


def test_read_meta_of_a_real_engine_store() -> None:
    objects, labels, held, errors, status = read_meta(CTR_ROOT, "c")
    assert status == "ok" and errors == []
    kinds = {(o["namespace"], o["type"]) for o in objects}
    assert {("moby", "image"), ("moby", "lease"), ("moby", "snapshot"), ("moby", "content"),
            ("moby_history", "content"), ("moby_history", "lease")} <= kinds
    images = {o["key"]: o for o in objects if o["type"] == "image"}
    assert images["docker.io/library/bb:base"]["target"].startswith("sha256:")
    snaps = [o for o in objects if o["type"] == "snapshot"]
    assert all(o["snapshotter"] == "overlayfs" and o["target"].startswith("moby/") for o in snaps)
    assert all(o["created_ns"] and o["created_ns"] > 1.7e18 for o in objects)
    assert any(lb["label"].startswith("containerd.io/gc.ref.snapshot.overlayfs") for lb in labels)
    assert {h["type"] for h in held} == {"content", "snapshot"}
    blobs, errs, cstatus = read_content(CTR_ROOT, "c")
    assert cstatus == "ok" and not errs and all(b["name"].startswith("sha256:") for b in blobs)


def test_store_roots_takes_a_containerd_root_as_the_root(tmp_path: Path) -> None:
    assert store_roots(CTR_ROOT, False) == [(CTR_ROOT, str(CTR_ROOT))]
    assert store_roots(tmp_path, False) == []
    assert [label for _, label in store_roots(tmp_path, False, (str(CTR_ROOT),))] == [str(CTR_ROOT)]


def _verdicts(root: Path, out: Path) -> dict[str, dict[str, object]]:
    collect(CollectOptions(root=str(root), out=str(out), api=False, jobs=1, use_base=False))
    con = verdict.bound(str(out))
    from snapper import catalog

    return {r["name"]: r for r in catalog.run(con, "ctr_verdicts", {"grace_seconds": 0}).to_pylist()}


def test_verdicts_on_a_real_store(tmp_path: Path) -> None:
    v = _verdicts(CTR_ROOT, tmp_path / "s")
    assert v["1"]["verdict"] == "live" and v["1"]["reached_by"].startswith("image docker.io/library/")
    assert v["99"]["verdict"] == "leaked" and v["99"]["mechanism"] == "ctr-dir-without-record"
    orphan = [r for r in v.values() if r["mechanism"] == "ctr-blob-without-meta"]
    assert len(orphan) == 1 and orphan[0]["self_heals"]
    # the container's lease names a container this root does not have: its writable snapshot is orphaned
    assert [r["name"] for r in v.values() if r["mechanism"] == "ctr-orphan-writable-snapshot"] == ["3"]
    # the image com:1 reaches the container's -init snapshot through its committed layer: live, not leaked
    assert v["2"]["verdict"] == "live"
    assert all(r["verdict"] == "live" for r in v.values() if r["kind"] == "blob" and r["name"] != orphan[0]["name"])


def test_a_corrupt_meta_db_gives_unknown_never_leaked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(CTR_ROOT, root)
    db = root / META
    data = bytearray(db.read_bytes())
    data[4096:4096 * 3] = b"\xa5" * (4096 * 2)  # meta pages intact, the tree behind them garbage
    db.write_bytes(bytes(data))
    v = _verdicts(root, tmp_path / "s")
    assert v and {r["verdict"] for r in v.values()} == {"unknown"}
    assert all("meta.db unreadable" in str(r["evidence"]) for r in v.values())
    assert verdict.leaks(str(tmp_path / "s")).num_rows == 0


def test_explain_takes_a_snapshot_id_or_a_digest_prefix() -> None:
    sample = Path(__file__).parent / "data" / "ctr_sample"
    rows = {r["section"]: r["detail"] for r in verdict.explain(sample, "3").to_pylist()}
    assert rows["verdict"] == "leaked (ctr-orphan-writable-snapshot)"
    assert rows["held by lease"].startswith("moby/97beb0af04f0") and "dead" in rows["held by lease"]
    assert rows["snapshotter record"].startswith("moby/5/")
    blob = {r["section"]: r["detail"] for r in verdict.explain(sample, "88f6811ab5").to_pylist()}
    assert blob["verdict"] == "leaked (ctr-blob-without-meta)"
    live = {r["section"]: r["detail"] for r in verdict.explain(sample, "1").to_pylist()}
    assert live["verdict"] == "live" and live["evidence"].startswith("reached from image ")
