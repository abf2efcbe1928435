"""snapper.reclaim on synthetic roots: plan changes nothing, apply moves exactly the leaked dirs (with their l/
links and layer-store chains) and skips whatever changed or is held, restore puts everything back, purge
frees the space, and a run killed at any move is finished or undone by the next one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from snapper import quarantine, reclaim, verdict
from snapper.cli import app
from snapper.collect import CollectOptions, collect
from snapper.docker_root import find_daemons
from snapper.errors import ReclaimError, UsageError
from tests.synthetic import Standard, SyntheticRoot, build_standard, can_mount, mounted

_MOVED_PARENTS = ("overlay2", "overlay2/l", "image/overlay2/layerdb/sha256")


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under root with type, size, inode, mode and mtime (a rename keeps them; ctime it does not).
    The dirs entries were moved out of and back into have a new mtime: theirs is left out."""
    out: dict[str, tuple[Any, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = os.path.join(top, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            mtime = None if rel in _MOVED_PARENTS else st.st_mtime_ns
            out[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_ino, st.st_mode, mtime)
    return out


def snap_of(root: Path, out: Path) -> Path:
    collect(CollectOptions(root=str(root), out=str(out), api=False, jobs=1, use_base=False))
    return out


def leaked_ids(snap: Path) -> set[str]:
    return {r["layer_id"] for r in verdict.leaks(str(snap), 0, 0).to_pylist()}


@pytest.fixture
def std(tmp_path: Path) -> Standard:
    return build_standard(tmp_path / "root", seed=5, odd=False)


def planned(std: Standard, tmp_path: Path, **kw: Any) -> tuple[Path, dict[str, Any]]:
    snap = snap_of(std.root, tmp_path / "snap")
    plan = reclaim.make_plan(snap, grace_s=0, **kw)
    path = reclaim.write_plan(plan, tmp_path / "plan.json")
    return path, plan


# --- plan ---------------------------------------------------------------------------------------------------

def test_plan_lists_the_leaks_with_signatures_and_changes_nothing(std: Standard, tmp_path: Path) -> None:
    snap = snap_of(std.root, tmp_path / "snap")
    before = tree(std.root)
    plan = reclaim.make_plan(snap, grace_s=0)
    path = reclaim.write_plan(plan, tmp_path / "plan.json")
    assert tree(std.root) == before
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert reclaim.read_plan(path) == plan
    assert {e["id"] for e in plan["entries"]} == leaked_ids(snap)
    assert plan["total_bytes"] == sum(e["bytes"] + e["metadata_bytes"] for e in plan["entries"]) > 0
    chained = next(e for e in plan["entries"] if e["id"] == std.removing_cache_id)  # its layerdb dir moves too
    assert chained["metadata_bytes"] > 0 and chained["owner_chain"] == std.removing_chain
    assert plan["data_root"] == str(std.root) and plan["snapshot"] == str(snap.resolve())
    leak = next(e for e in plan["entries"] if e["id"] == std.layers["leaked"].dir_id)
    assert (leak["store"], leak["kind"], leak["mechanism"]) == ("overlay2", "dir", "interrupted-layer-create")
    d = std.layers["leaked"].path
    assert leak["signature"] == reclaim.disk_signature(d)
    assert leak["signature"]["."][0] == os.lstat(d).st_ino and leak["signature"]["committed"] is None


def test_plan_filters(std: Standard, tmp_path: Path) -> None:
    snap = snap_of(std.root, tmp_path / "snap")
    only = reclaim.make_plan(snap, ["stray-dir"], grace_s=0)
    assert [e["id"] for e in only["entries"]] == ["stray.txt"]
    big = reclaim.make_plan(snap, min_bytes=25_000, grace_s=0)
    assert big["entries"] and all(e["bytes"] >= 25_000 for e in big["entries"])
    with pytest.raises(UsageError, match="not a leak mechanism"):
        reclaim.make_plan(snap, ["leaky"], grace_s=0)


# --- apply, restore, purge ----------------------------------------------------------------------------------

def test_apply_restore_purge(std: Standard, tmp_path: Path) -> None:
    path, plan = planned(std, tmp_path)
    before = tree(std.root)
    live = {k for k in os.listdir(std.root / "overlay2")} - {e["id"] for e in plan["entries"]}
    res = reclaim.apply(path)
    assert {o.layer_id for o in res.outcomes if o.result == "quarantined"} == {e["id"] for e in plan["entries"]}
    assert res.moved_bytes == sum(e["bytes"] for e in plan["entries"])
    assert set(os.listdir(std.root / "overlay2")) == live
    q = res.quarantine
    assert q == std.root.parent / ".snapper-quarantine" / plan["plan_id"]
    assert stat.S_IMODE(os.stat(q).st_mode) == 0o700 and stat.S_IMODE(os.stat(q.parent).st_mode) == 0o700
    leak = std.layers["leaked"]
    assert (q / "items" / leak.dir_id / "l" / str(leak.link_id)).is_symlink()
    assert not os.path.lexists(std.root / "overlay2" / "l" / str(leak.link_id))
    assert (q / "items" / std.removing_cache_id / "layerdb" / std.removing_dir / "cache-id").exists()
    # what is left holds no leaked dir, and every image and container keeps its dirs
    after = snap_of(std.root, tmp_path / "after")
    assert not leaked_ids(after)
    assert reclaim.apply(path).outcomes[0].result == "already quarantined"

    outcomes, _ = reclaim.restore(q.parent, str(path))
    assert {o.result for o in outcomes} == {"restored"}
    assert tree(std.root) == before
    again, _ = reclaim.restore(q.parent, str(path))
    assert again == []

    # quarantined again (a new plan: the restore changed each dir's ctime), then purged
    snap2 = snap_of(std.root, tmp_path / "snap2")
    plan2 = reclaim.write_plan(reclaim.make_plan(snap2, grace_s=0), tmp_path / "plan2.json")
    assert all(o.result == "quarantined" for o in reclaim.apply(plan2).outcomes)
    kept = reclaim.purge(q.parent, 7 * 86400)
    assert {o.result for o in kept.outcomes} == {"kept"} and kept.purged_bytes == 0
    res2 = reclaim.purge(q.parent, 0)
    assert {o.result for o in res2.outcomes} == {"purged"}
    assert res2.purged_bytes == plan["total_bytes"]
    assert isinstance(res2.freed_bytes, int)  # statvfs of a shared /tmp: other writers blur it (the real test measures)
    assert not any((q.parent / json.loads(plan2.read_text())["plan_id"] / "items").iterdir())
    assert set(os.listdir(std.root / "overlay2")) == live


def test_signature_changed_between_plan_and_apply_is_skipped(std: Standard, tmp_path: Path) -> None:
    path, plan = planned(std, tmp_path)
    leak = std.layers["leaked"].path
    (leak / "diff" / "new-file").write_bytes(b"written after the plan")  # diff/ mtime and ctime change
    deep = std.layers["buildcache"].path / "diff" / "root" / ".cache" / "pip" / "wheel"
    deep.write_bytes(b"changed deep inside")  # no key file changes: only the re-collect sees it
    res = {o.layer_id: o for o in reclaim.apply(path).outcomes}
    assert res[leak.name].result == "skipped" and "changed since the plan" in res[leak.name].reason
    bc = std.layers["buildcache"].dir_id
    assert res[bc].result == "skipped" and "changed since the plan" in res[bc].reason
    assert leak.exists() and (std.layers["buildcache"].path).exists()
    assert sum(o.result == "quarantined" for o in res.values()) == len(plan["entries"]) - 2


def test_no_longer_leaked_held_or_mounted_is_skipped(std: Standard, tmp_path: Path) -> None:
    path, _ = planned(std, tmp_path)
    leak = std.layers["leaked"]
    # the leaked dir becomes a container's RW layer: live now
    sr = SyntheticRoot(std.root, seed=99)
    cid = sr.hex64()
    m = std.root / "image" / "overlay2" / "layerdb" / "mounts" / cid
    m.mkdir()
    (m / "mount-id").write_text(leak.dir_id)
    (m / "parent").write_text(std.images["app"].chain_ids[-1])
    sr.write_config(cid, "late", std.images["app"].image_id, "exited")
    # a chain now names another leaked dir: still leaked, but not as planned
    bk = std.layers["buildcache"].dir_id
    c = std.root / "image" / "overlay2" / "layerdb" / "sha256" / ("f" * 64)
    c.mkdir()
    (c / "cache-id").write_text(bk)
    (c / "diff").write_text("sha256:" + "e" * 64)
    holder = subprocess.Popen(["sleep", "60"], cwd=std.layers["unresolved"].path / "diff")
    try:
        res = {o.layer_id: o for o in reclaim.apply(path).outcomes}
    finally:
        holder.kill()
        holder.wait()
    assert res[leak.dir_id].result == "skipped" and res[leak.dir_id].reason.startswith("now live"), res[leak.dir_id]
    assert res[bk].result == "skipped" and "metadata naming it changed" in res[bk].reason, res[bk]
    held = res[std.layers["unresolved"].dir_id]
    assert held.result == "skipped" and ("held open" in held.reason or "in-flight" in held.reason), held


@pytest.mark.skipif(not can_mount(), reason="needs root and mount(8)")
def test_mounted_dir_is_skipped(std: Standard, tmp_path: Path) -> None:
    path, plan = planned(std, tmp_path)
    merged = std.layers["leaked"].path / "merged"
    merged.mkdir()
    e = next(x for x in plan["entries"] if x["id"] == std.layers["leaked"].dir_id)
    e["signature"] = reclaim.disk_signature(std.layers["leaked"].path)  # the mkdir is ours, not a change
    e["last_change_ns"] = None
    reclaim.write_plan(plan, path)
    with mounted(merged, "-t", "tmpfs", "tmpfs"):
        out = {o.layer_id: o for o in reclaim.apply(path).outcomes}[e["id"]]
    assert out.result == "skipped"


def test_daemon_rules(std: Standard, tmp_path: Path) -> None:
    """A dockerd on the root (a stand-in process with dockerd's command line): --stopped-only refuses; else
    only dirs unchanged since it started move, and never one a layer-store chain names."""
    path, plan = planned(std, tmp_path)
    time.sleep(0.3)
    fake = subprocess.Popen(["dockerd", "-c", "sleep 60; true", "--data-root", str(std.root)],
                            executable="/bin/sh")
    try:
        deadline = time.monotonic() + 10  # the stand-in is visible once its exec is done
        while fake.pid not in {d.pid for d in find_daemons(std.root.resolve())}:
            assert fake.poll() is None and time.monotonic() < deadline, "the stand-in dockerd is not found"
            time.sleep(0.05)
        with pytest.raises(ReclaimError, match="dockerd is running"):
            reclaim.apply(path, stopped_only=True)
        res = {o.layer_id: o for o in reclaim.apply(path).outcomes}
    finally:
        fake.kill()
        fake.wait()
    chained = res[std.removing_cache_id]
    assert chained.result == "skipped" and "has that chain loaded" in chained.reason
    bk_rw = next(e["id"] for e in plan["entries"] if e["mechanism"] == "orphan-container-mount")
    assert res[bk_rw].reason == "now in-flight: held by a BuildKit transient mount while the daemon runs"
    assert {k for k, o in res.items() if o.result == "quarantined"} == {e["id"] for e in plan["entries"]} - {
        std.removing_cache_id, bk_rw}, {k: (o.result, o.reason) for k, o in res.items()}


# --- crashes ------------------------------------------------------------------------------------------------

class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs (not an Exception: no handler catches it)."""


def _crash_at(monkeypatch: pytest.MonkeyPatch, renamed: list[int], target: int, after: bool) -> None:
    """Kill the run when ``target`` renames have been done in all runs so far: before the next rename, or
    right after rename number ``target`` (before its journal line)."""
    real = quarantine.move_noreplace

    def move(src: str, dst: str) -> None:
        if not after and renamed[0] == target:
            raise Killed
        real(src, dst)
        renamed[0] += 1
        if after and renamed[0] == target:
            raise Killed

    monkeypatch.setattr(quarantine, "move_noreplace", move)


def _moves_of(plan: dict[str, Any], std: Standard) -> int:
    links = sum(1 for e in plan["entries"] if (std.root / "overlay2" / e["id"] / "link").exists())
    return len(plan["entries"]) + links + 1  # + the -removing chain


@pytest.mark.parametrize("after", [False, True], ids=["before-rename", "after-rename"])
def test_apply_and_restore_killed_at_every_move_are_finished_by_a_rerun(
        std: Standard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: bool) -> None:
    """Each run is killed at its first rename (before it, or after it and before the journal says done), so
    that run k is killed at move k: every move of every group is a crash point. Then a clean rerun."""
    path, plan = planned(std, tmp_path)
    before = tree(std.root)
    total = _moves_of(plan, std)
    renamed = [0]
    for k in range(total - 1):
        with monkeypatch.context() as m:
            _crash_at(m, renamed, k + after, after)
            with pytest.raises(Killed):
                reclaim.apply(path)
        assert renamed[0] == k + after
    res = reclaim.apply(path)
    assert all(o.result in ("quarantined", "already quarantined") for o in res.outcomes), res.outcomes
    assert not leaked_ids(snap_of(std.root, tmp_path / "after"))
    groups = list(quarantine.PlanQuarantine(res.quarantine.parent, plan["plan_id"]).groups().values())
    assert all(g.ended == "done" for g in groups) and len({g.layer_id for g in groups}) == len(plan["entries"])

    renamed = [0]
    for k in range(total - 1):
        with monkeypatch.context() as m:
            _crash_at(m, renamed, k + after, after)
            with pytest.raises(Killed):
                reclaim.restore(res.quarantine.parent, str(path))
    outcomes, _ = reclaim.restore(res.quarantine.parent, str(path))
    assert outcomes and all(o.result == "restored" for o in outcomes)
    assert tree(std.root) == before


def test_interrupted_group_is_undone_when_the_dir_changed(std: Standard, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, plan = planned(std, tmp_path, mechanisms=["interrupted-layer-create"])
    leak = std.layers["leaked"]
    first = sorted(plan["entries"], key=lambda e: (-e["bytes"], e["id"]))[0]["id"]
    with monkeypatch.context() as m:
        _crash_at(m, [0], 1, after=True)  # its l/ link moved, the dir not yet
        with pytest.raises(Killed):
            reclaim.apply(path)
    d = std.root / "overlay2" / first
    (d / "diff" / "late").write_bytes(b"x")
    res = reclaim.apply(path)
    assert any("undid the interrupted quarantine" in n for n in res.notes), res.notes
    assert d.is_dir() and all(os.path.lexists(std.root / "overlay2" / "l" / s)
                              for s in [(d / "link").read_text()])
    assert {o.layer_id: o.result for o in res.outcomes}[first] == "skipped"
    assert leak.path.exists() or first != leak.dir_id


# --- CLI ----------------------------------------------------------------------------------------------------

def test_cli_plan_and_refusal_without_a_tty(std: Standard, tmp_path: Path) -> None:
    runner = CliRunner()
    snap = snap_of(std.root, tmp_path / "snap")
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["reclaim", "plan", str(snap), "--out", str(out), "--grace", "0"])
    assert res.exit_code == 0, res.stderr
    assert "total" in res.stdout and out.exists()
    before = tree(std.root)

    def refused(*args: str) -> None:
        res = runner.invoke(app, ["reclaim", *args], input="y\n")  # CliRunner's stdin is no terminal
        assert res.exit_code == 2, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("snapper: error: reclaim ") and "--yes" in res.stderr
        assert len(res.stderr.splitlines()) == 1

    refused("apply", str(out))
    assert tree(std.root) == before
    res = runner.invoke(app, ["reclaim", "apply", str(out), "--yes"])
    assert res.exit_code == 0, res.stderr
    assert "quarantined" in res.stdout
    moved = tree(std.root)
    refused("restore", str(out))
    refused("purge", "--older-than", "0", "--root", str(std.root))
    assert tree(std.root) == moved
    res = runner.invoke(app, ["reclaim", "restore", str(out), "--yes"])
    assert res.exit_code == 0 and tree(std.root) == before, res.stderr


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    res = subprocess.run([sys.executable, "-m", "snapper.cli", "reclaim", "apply", str(bad), "--yes"],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "not a snapper-reclaim-plan" in res.stderr


def test_cli_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, text in ((["purge", "--older-than", "3x", "--yes"], "--older-than 3x: not a duration"),
                       (["restore", "--yes"], "give a plan or --all"),
                       (["plan", str(tmp_path / "nope")], "not a snapshot directory")):
        res = runner.invoke(app, ["reclaim", *args])
        assert res.exit_code in (1, 2) and len(res.stderr.splitlines()) == 1 and text in res.stderr, res.stderr


def test_restore_refuses_an_existing_destination(std: Standard, tmp_path: Path) -> None:
    path, plan = planned(std, tmp_path)
    q = reclaim.apply(path).quarantine
    leak = std.layers["leaked"]
    leak.path.mkdir()  # an empty dir: rename(2) alone would replace it
    res = CliRunner().invoke(app, ["reclaim", "restore", str(path), "--yes"])
    assert res.exit_code == 1 and "not restored" in res.stderr and leak.dir_id in res.stderr, res.stderr
    assert (q / "items" / leak.dir_id / "dir" / "diff").is_dir() and not any(leak.path.iterdir())
    assert all((std.root / "overlay2" / e["id"]).exists() for e in plan["entries"])
    leak.path.rmdir()
    outcomes, _ = reclaim.restore(q.parent, str(path))
    assert [(o.layer_id, o.result) for o in outcomes] == [(leak.dir_id, "restored")]


def test_veto_mid_group_is_undone_even_when_killed_while_undoing(std: Standard, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The dir changes after its l/ link moved: the group is undone; killed during that undo, the next run
    finishes the undo. The link is back, the dir never left."""
    path, _ = planned(std, tmp_path, mechanisms=["interrupted-layer-create"])
    leak = std.layers["leaked"]
    before = tree(std.root)
    real_check = reclaim._check_move

    def veto(m: quarantine.Move, e: dict[str, Any], *a: Any) -> str | None:
        return "vetoed for the test" if m.kind == "overlay2-dir" and e["id"] == leak.dir_id else real_check(m, e, *a)

    real_move = quarantine.move_noreplace

    def move(src: str, dst: str) -> None:
        if src.endswith(f"/items/{leak.dir_id}/l/{leak.link_id}"):  # the undo of the link move
            raise Killed
        real_move(src, dst)

    with monkeypatch.context() as m:
        m.setattr(reclaim, "_check_move", veto)
        m.setattr(quarantine, "move_noreplace", move)
        with pytest.raises(Killed):
            reclaim.apply(path)
    assert not os.path.lexists(std.root / "overlay2" / "l" / str(leak.link_id))
    with monkeypatch.context() as m:
        m.setattr(reclaim, "_check_move", veto)
        res = reclaim.apply(path)
    assert any("finished undoing" in n for n in res.notes), res.notes
    assert {o.layer_id: o.reason for o in res.outcomes}[leak.dir_id] == "vetoed for the test"
    q = quarantine.PlanQuarantine(res.quarantine.parent, res.plan_id)
    ok = {g.layer_id for g in q.groups().values() if g.ended == "done"}
    for lid in ok:  # what else was quarantined goes back; then the tree is as before
        assert lid != leak.dir_id
    reclaim.restore(res.quarantine.parent, str(path))
    assert tree(std.root) == before


def test_entries_of_other_stores_are_reported_not_acted_on(std: Standard, tmp_path: Path) -> None:
    path, plan = planned(std, tmp_path, mechanisms=["stray-dir"])
    plan["entries"].append({**plan["entries"][0], "store": "containerd", "kind": "snapshot", "id": "moby/7"})
    reclaim.write_plan(plan, path)
    res = {o.layer_id: o for o in reclaim.apply(path).outcomes}
    assert res["stray.txt"].result == "quarantined"
    assert res["moby/7"].result == "skipped" and "not supported yet" in res["moby/7"].reason


def test_a_plan_naming_a_path_outside_overlay2_is_refused(std: Standard, tmp_path: Path) -> None:
    path, plan = planned(std, tmp_path, mechanisms=["stray-dir"])
    plan["entries"][0]["id"] = "../image"
    reclaim.write_plan(plan, path)
    with pytest.raises(ReclaimError, match="not an overlay2 dir name"):
        reclaim.apply(path)
    assert (std.root / "image").is_dir()


def test_containerd_leaks_are_never_planned() -> None:
    """They leave through containerd (its GC, after their dead leases are deleted), never by a rename."""
    sample = Path(__file__).parent / "data" / "ctr_sample"
    from snapper import verdict

    assert verdict.leaks(str(sample)).num_rows > 0
    plan = reclaim.make_plan(sample, grace_s=0)
    assert plan["entries"] == [] and plan["total_bytes"] == 0
