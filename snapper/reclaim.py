"""``snapper reclaim``: give leaked space back, safely.

- :func:`make_plan` reads a snapshot's ``leaks`` (verdict ``leaked`` only: never live, in-flight, unknown or
  vanished) and records, per dir, bytes, mechanism, evidence and a *signature*: inode, mtime and ctime of the
  dir and of its key files (``link``, ``lower``, ``diff/``, ``committed``, ``work/``) as the snapshot saw them.
  It changes nothing.
- :func:`apply` collects again (into a temporary snapshot outside the data root, reusing the plan's snapshot
  for unchanged committed dirs), recomputes every verdict with the same SQL, and right before each move
  compares the signature with an ``lstat`` of the disk and checks holders (/proc fds, cwd, root) and
  /proc/self/mountinfo. A dir that changed, is no longer leaked, is held or mounted is skipped and reported.
  With dockerd running only dirs last changed before the daemon started are moved, and never a dir a
  layer-store chain names (the daemon keeps every chain in memory and would hand it to the next pull or load
  of the same layer). Moves go to the quarantine (``snapper.quarantine``), with the dir's ``l/`` short links
  and, daemon stopped, the ``layerdb`` chain dirs whose cache-id it is (children before parents).
- :func:`restore` moves quarantined dirs back exactly; :func:`purge` deletes them for good.

Entries carry ``store`` and ``kind`` so that other stores (containerd snapshots, leases) can join later;
only ``store = overlay2``, ``kind = dir`` is acted on.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from snapper import quarantine as qmod
from snapper.errors import QuarantineError, ReclaimError, UsageError
from snapper.quarantine import Group, Move, PlanQuarantine

PLAN_FORMAT = "snapper-reclaim-plan"
PLAN_VERSION = 1
KEY_FILES = (".", "link", "lower", "diff", "committed", "work")
_HOLDERS_MAX_AGE_S = 1.0
MECHANISMS = ("interrupted-layer-create", "interrupted-image-create", "partial-delete-remnant",
              "interrupted-image-delete", "pinned-by-orphan-mount", "orphan-container-mount",
              "buildkit-snapshot-without-record", "stray-dir")


# --- plan ---------------------------------------------------------------------------------------------------

def make_plan(snapshot: str | Path, mechanisms: Sequence[str] = (), min_bytes: int = 0,
              grace_s: int = 3600) -> dict[str, Any]:
    """The plan for a snapshot: leaked overlay2 dirs (optionally only these mechanisms, at least min_bytes)."""
    from snapper import catalog, verdict
    from snapper.snapshot import open_snapshot

    snap = open_snapshot(snapshot)
    con = verdict.bound(snap)
    leaks = catalog.run(con, "leaks", {"min_bytes": min_bytes, "grace_seconds": grace_s}).to_pylist()
    extra = {r["layer_id"]: r for r in catalog.run(con, "verdicts", {"grace_seconds": grace_s}).to_pylist()}
    for m in mechanisms:
        if m not in MECHANISMS:
            raise UsageError(f"--mechanism {m}", "not a leak mechanism", f"use one of {', '.join(MECHANISMS)}")
    # containerd leaks are not moved behind containerd's back: they go when their dead leases are deleted
    # through containerd (see `snapper explain SNAP ID`); only overlay2 dirs are planned
    chosen = [r for r in leaks if r.get("store", "overlay2") == "overlay2"
              and (not mechanisms or r["mechanism"] in mechanisms)]
    sigs = _signatures(snap.table_path("files"), [r["layer_id"] for r in chosen])
    chain_dirs: dict[str, list[str]] = {}
    for c in pq.read_table(snap.table_path("layerdb"), columns=["cache_id", "dir_name"]).to_pylist():
        chain_dirs.setdefault(c["cache_id"], []).append(c["dir_name"])
    layerdb = Path(str(snap.manifest.get("data_root"))) / "image" / "overlay2" / "layerdb" / "sha256"
    entries = []
    for r in chosen:
        v = extra[r["layer_id"]]
        entries.append({
            "store": "overlay2", "kind": "dir", "id": r["layer_id"], "path": f"overlay2/{r['layer_id']}",
            "bytes": r["bytes"], "apparent_bytes": r["apparent_bytes"], "files": r["files"],
            "mechanism": r["mechanism"], "self_heals": r["self_heals"], "evidence": r["evidence"],
            "created": r["created"], "last_change_ns": v["last_change_ns"], "owner_chain": v["owner_chain"],
            "signature": sigs.get(r["layer_id"], {}),
            "metadata_bytes": sum(_allocated(layerdb / d) for d in chain_dirs.get(r["layer_id"], [])),
        })
    man = snap.manifest
    return {
        "format": PLAN_FORMAT, "version": PLAN_VERSION,
        "plan_id": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": man.get("host"), "data_root": man.get("data_root"), "snapshot": str(Path(snap.path).resolve()),
        "snapshot_started_utc": man.get("started_utc"), "daemon_running": man.get("daemon", {}).get("running"),
        "grace_seconds": grace_s, "filters": {"mechanisms": list(mechanisms), "min_bytes": min_bytes},
        "total_bytes": sum((e["bytes"] or 0) + e["metadata_bytes"] for e in entries), "entries": entries,
    }


def _allocated(path: Path) -> int:
    """st_blocks * 512 of a layer-store chain dir and the files in it (moved along with its cache dir)."""
    total = 0
    try:
        total += os.lstat(path).st_blocks * 512
        with os.scandir(path) as it:
            for e in it:
                total += e.stat(follow_symlinks=False).st_blocks * 512
    except OSError:
        pass
    return total


def _signatures(files: Path, layer_ids: list[str]) -> dict[str, dict[str, list[int] | None]]:
    """(inode, mtime, ctime) of each key file of each dir, from the snapshot's files rows; None when absent."""
    out: dict[str, dict[str, list[int] | None]] = {lid: dict.fromkeys(KEY_FILES) for lid in layer_ids}
    if not layer_ids:
        return out
    t = pq.read_table(files, columns=["layer_id", "path", "inode", "mtime_ns", "ctime_ns"],
                      filters=[("layer_id", "in", layer_ids), ("path", "in", list(KEY_FILES))])
    for r in t.to_pylist():
        out[r["layer_id"]][r["path"]] = [r["inode"], r["mtime_ns"], r["ctime_ns"]]
    return out


def disk_signature(entry_path: Path) -> dict[str, list[int] | None]:
    out: dict[str, list[int] | None] = {}
    for name in KEY_FILES:
        try:
            st = os.lstat(entry_path if name == "." else entry_path / name)
        except (FileNotFoundError, NotADirectoryError):
            out[name] = None
            continue
        out[name] = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
    return out


def write_plan(plan: dict[str, Any], out: Path) -> Path:
    try:
        qmod.write_private(out, json.dumps(plan, indent=1, sort_keys=True).encode())
    except OSError as e:
        raise ReclaimError(str(out), f"cannot write the plan ({e.strerror})", "choose another --out") from e
    return out


def read_plan(path: str | Path) -> dict[str, Any]:
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ReclaimError(str(path), "no such plan file", "make one with `snapper reclaim plan SNAP`") from e
    except (OSError, ValueError) as e:
        raise ReclaimError(str(path), f"not a readable plan ({e})", "make one with `snapper reclaim plan`") from e
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT or plan.get("version") != PLAN_VERSION:
        raise ReclaimError(str(path), f"not a {PLAN_FORMAT} v{PLAN_VERSION} file", "make one with `snapper "
                           "reclaim plan`")
    for entry in plan.get("entries") or []:
        lid = entry.get("id") if isinstance(entry, dict) else None
        bad = not isinstance(lid, str) or "/" in lid or lid in ("", ".", "..", "l")
        if isinstance(entry, dict) and entry.get("store") == "overlay2" and bad:
            raise ReclaimError(str(path), f"entry {lid!r} is not an overlay2 dir name", "make a new plan")
    return plan


# --- apply --------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    layer_id: str
    bytes: int
    mechanism: str | None
    result: str  # quarantined | skipped | already quarantined
    reason: str = ""


@dataclass
class ApplyResult:
    plan_id: str
    quarantine: Path
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # journal recovery

    @property
    def moved_bytes(self) -> int:
        return sum(o.bytes for o in self.outcomes if o.result == "quarantined")  # the dirs (metadata aside)


def _root_of(plan: dict[str, Any]) -> Path:
    root = Path(str(plan.get("data_root")))
    if plan.get("host") != socket.gethostname():
        raise ReclaimError(f"plan {plan.get('plan_id')}", f"made on host {plan.get('host')}, this is "
                           f"{socket.gethostname()}", "make the plan on this host")
    if not (root / "overlay2").is_dir() or os.path.realpath(root) != str(root):
        raise ReclaimError(str(root), "the plan's data root has no overlay2/ here", "check the plan")
    return root


@dataclass
class _Fresh:
    """The re-collect: verdicts, layer-store chains and daemon facts, as they are now."""

    verdicts: dict[str, dict[str, Any]]
    chains: list[dict[str, Any]]
    daemon_running: bool
    daemon_pids: list[int]
    daemon_started_ns: int | None


def _recollect(root: Path, plan: dict[str, Any]) -> _Fresh:
    from snapper import catalog, verdict
    from snapper.collect import CollectOptions, collect
    from snapper.snapshot import open_snapshot

    # one fixed place per plan, so that a run killed mid-collect leaves nothing the next one does not remove
    tmp = Path(tempfile.gettempdir()).resolve() / f"snapper-reclaim-{plan['plan_id']}"
    if tmp.is_relative_to(root):
        raise ReclaimError(str(tmp), "the temporary snapshot would be inside the data root", "set TMPDIR")
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp, 0o700)
    try:
        base = plan.get("snapshot")
        usable_base = isinstance(base, str) and os.path.isdir(base)
        res = collect(CollectOptions(root=str(root), out=str(tmp / "snap"), api=False, nice=False,
                                     base=base if usable_base else None, use_base=False))
        snap = open_snapshot(res.path)
        v = catalog.run(verdict.bound(snap), "verdicts", {"grace_seconds": int(plan.get("grace_seconds", 3600))})
        chains = pq.read_table(snap.table_path("layerdb")).to_pylist()
        d = res.manifest["daemon"]
        return _Fresh({r["layer_id"]: r for r in v.to_pylist()}, chains, bool(d["running"]), list(d["pids"]),
                      d.get("started_ns"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mounted(root: Path, layer_id: str, shorts: list[str]) -> str | None:
    from snapper.metadata.mountinfo import read_mountinfo

    rows, _, _ = read_mountinfo(root)
    needles = [f"{root}/overlay2/{layer_id}/", *(f"l/{s}" for s in shorts)]
    for r in rows:
        opts = (r["super_options"] or "") + ","
        if r["layer_id"] == layer_id or any(n in opts or n in r["mount_point"] + "/" for n in needles):
            return f"mounted ({r['fstype']} at {r['mount_point']})"
    return None


class _Holders:
    """Processes holding a path in overlay2/, re-read when older than a second."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.at = 0.0
        self.by_layer: dict[str, str] = {}

    def of(self, layer_id: str) -> str | None:
        from snapper.metadata.holders import read_holders

        if time.monotonic() - self.at > _HOLDERS_MAX_AGE_S:
            self.by_layer = {}
            for r in read_holders(self.root):
                if r["layer_id"]:
                    self.by_layer.setdefault(r["layer_id"], f"held open by pid {r['pid']} ({r['comm']}, {r['how']})")
            self.at = time.monotonic()
        return self.by_layer.get(layer_id)


def _short_links(root: Path) -> dict[str, list[str]]:
    """layer id -> the l/ short ids whose symlink points at ../<id>/diff, read from the disk."""
    out: dict[str, list[str]] = {}
    ldir = root / "overlay2" / "l"
    with os.scandir(ldir) as it:
        for e in it:
            try:
                target = os.readlink(e.path)
            except OSError:
                continue
            parts = target.split("/")
            if len(parts) == 3 and parts[0] == ".." and parts[2] == "diff":
                out.setdefault(parts[1], []).append(e.name)
    return out


def _depth(chain: str, parents: dict[str, str | None]) -> int:
    n, seen = 0, set()
    while chain in parents and chain not in seen:
        seen.add(chain)
        nxt = parents[chain]
        if nxt is None:
            break
        chain, n = nxt, n + 1
    return n


def _precheck(e: dict[str, Any], fresh: _Fresh) -> str | None:
    v = fresh.verdicts.get(e["id"])
    if v is None:
        return "gone from overlay2/"
    if v["verdict"] != "leaked":
        return f"now {v['verdict']}: {v['evidence'] or v['reached_by'] or ''}".rstrip(": ")
    if (v["last_change_ns"], v["files"], v["bytes"]) != (e["last_change_ns"], e["files"], e["bytes"]):
        return "changed since the plan (files, bytes or newest timestamp)"
    if (v["mechanism"], v["owner_chain"]) != (e["mechanism"], e["owner_chain"]):
        return f"the metadata naming it changed since the plan (now {v['mechanism']}: {v['evidence']})"
    if fresh.daemon_running:
        if fresh.daemon_started_ns is None or v["last_change_ns"] >= fresh.daemon_started_ns:
            return "dockerd is running and the dir did not change before it started"
        if v["owner_chain"]:
            return (f"layer chain {v['owner_chain']} names it and the running dockerd has that chain loaded "
                    "(stop the daemon to reclaim it)")
    return None


def apply(plan_path: str | Path, stopped_only: bool = False, quarantine_dir: Path | None = None) -> ApplyResult:
    """Quarantine every entry of the plan that is still safe to move; report the rest."""
    from snapper.docker_root import find_daemons

    plan = read_plan(plan_path)
    root = _root_of(plan)
    qdir = quarantine_dir or qmod.choose_dir(root)
    pq_ = PlanQuarantine(qdir, str(plan["plan_id"]))
    result = ApplyResult(pq_.plan_id, pq_.dir)
    if stopped_only and find_daemons(root):
        raise ReclaimError(str(root), "a dockerd is running on this data root (--stopped-only)",
                           "stop the daemon first, or drop --stopped-only")
    with qmod.locked(qdir):
        pq_.create(root, plan)
        by_id = {e["id"]: e for e in plan["entries"]}
        result.notes = pq_.recover(lambda g: _can_finish(g, by_id, root))
        items = pq_.items()
        todo = []
        for e in plan["entries"]:
            if e.get("store") != "overlay2" or e.get("kind") != "dir":
                result.outcomes.append(Outcome(e["id"], e["bytes"] or 0, e.get("mechanism"), "skipped",
                                               f"store {e.get('store')} / kind {e.get('kind')} not supported yet"))
            elif e["id"] in items and items[e["id"]].state != "restored":
                result.outcomes.append(Outcome(e["id"], e["bytes"] or 0, e["mechanism"],
                                               f"already {items[e['id']].state}"))
            else:
                todo.append(e)
        if not todo:
            return result
        fresh = _recollect(root, plan)
        parents = {c["chain_id"]: c["parent"] for c in fresh.chains if c["chain_id"]}
        owned: dict[str, list[dict[str, Any]]] = {}
        for c in fresh.chains:
            if c["cache_id"]:
                owned.setdefault(c["cache_id"], []).append(c)
        todo.sort(key=lambda e: (-max([_depth(c["chain_id"], parents) for c in owned.get(e["id"], [])] or [0]),
                                 -(e["bytes"] or 0), e["id"]))
        links = _short_links(root)
        holders = _Holders(root)
        for e in todo:
            out = Outcome(e["id"], e["bytes"] or 0, e["mechanism"], "skipped")
            result.outcomes.append(out)
            reason = _precheck(e, fresh)
            chains = owned.get(e["id"], [])
            if reason is None:
                reason = _children_stay(root, chains, fresh.chains)
            if reason is None and sorted(d.pid for d in find_daemons(root)) != sorted(fresh.daemon_pids):
                reason = "the daemons on the data root changed since the re-collect (run apply again)"
            if reason is not None:
                out.reason = reason
                continue
            moves = _moves(pq_, root, e["id"], chains, links.get(e["id"], []))
            info = {k: e[k] for k in ("bytes", "mechanism", "signature", "owner_chain")}
            info["bytes"] = (e["bytes"] or 0) + e.get("metadata_bytes", 0)
            shorts = links.get(e["id"], [])

            def check(m: Move, e: dict[str, Any] = e, shorts: list[str] = shorts) -> str | None:
                if sorted(d.pid for d in find_daemons(root)) != sorted(fresh.daemon_pids):
                    return "a dockerd started or stopped on the data root during apply"
                return _check_move(m, e, root, shorts, holders)

            reason = pq_.run("quarantine", e["id"], moves, info, check)
            if reason is None:
                out.result = "quarantined"
            else:
                out.reason = reason
    return result


def _children_stay(root: Path, chains: list[dict[str, Any]], all_chains: list[dict[str, Any]]) -> str | None:
    """A chain may leave only when no chain still on disk has it as parent (children are moved first)."""
    ids = {c["chain_id"] for c in chains}
    for c in all_chains:
        if c["parent"] in ids and c not in chains and os.path.lexists(_layerdb(root) / c["dir_name"]):
            return f"layer chain {c['parent']} is the parent of {c['chain_id']}, which stays (plan both)"
    return None


def _layerdb(root: Path) -> Path:
    return root / "image" / "overlay2" / "layerdb" / "sha256"


def _moves(pq_: PlanQuarantine, root: Path, layer_id: str, chains: list[dict[str, Any]],
           shorts: list[str]) -> list[Move]:
    """Chains first (a chain whose dir is gone must never be left behind), then links, then the dir."""
    item = pq_.item_dir(layer_id)
    qmod.mkdir_private(item)
    moves = []
    if chains:
        qmod.mkdir_private(item / "layerdb")
        moves += [Move("layerdb-chain", str(_layerdb(root) / c["dir_name"]), str(item / "layerdb" / c["dir_name"]))
                  for c in chains]
    if shorts:
        qmod.mkdir_private(item / "l")
        moves += [Move("overlay2-link", str(root / "overlay2" / "l" / s), str(item / "l" / s)) for s in sorted(shorts)]
    moves.append(Move("overlay2-dir", str(root / "overlay2" / layer_id), str(item / "dir")))
    return moves


def _check_move(m: Move, e: dict[str, Any], root: Path, shorts: list[str], holders: _Holders) -> str | None:
    """Right before each rename of a group: the dir exactly as planned, not held, not mounted."""
    d = root / "overlay2" / e["id"]
    if m.kind == "overlay2-link":
        try:
            if os.readlink(m.src) != f"../{e['id']}/diff":
                return f"{m.src} points elsewhere now"
        except OSError as ex:
            return f"{m.src}: {ex.strerror}"
    if disk_signature(d) != e["signature"]:
        return "changed since the plan (signature of the dir or its key files)"
    return holders.of(e["id"]) or _mounted(root, e["id"], shorts)


def _can_finish(g: Group, by_id: dict[str, dict[str, Any]], root: Path) -> str | None:
    """An interrupted quarantine is finished only if its dir is already moved or still as planned."""
    from snapper.docker_root import find_daemons

    pending = [m for i, m in enumerate(g.moves) if i not in g.done]
    if any(m.kind == "layerdb-chain" for m in pending) and find_daemons(root):
        return "a dockerd runs on the data root and a layer-store chain was still to move"
    dir_move = next(m for m in g.moves if m.kind == "overlay2-dir")
    if not os.path.lexists(dir_move.src):
        return None
    e = by_id.get(g.layer_id)
    sig = e["signature"] if e else g.info.get("signature")
    if disk_signature(Path(dir_move.src)) != sig:
        return "the dir changed since the plan"
    return None


# --- restore and purge --------------------------------------------------------------------------------------

@dataclass
class QuarantineOutcome:
    plan_id: str
    layer_id: str
    bytes: int
    result: str  # restored | purged | refused | kept
    reason: str = ""


@dataclass
class PurgeResult:
    outcomes: list[QuarantineOutcome]
    freed_bytes: int  # statvfs before/after
    purged_bytes: int  # as planned


def _selected(qdir: Path, plan: str | None, all_plans: bool) -> list[PlanQuarantine]:
    found = qmod.plans(qdir)
    if all_plans:
        return found
    if plan is None:
        raise UsageError("reclaim restore", "no plan given", "pass a plan file or id, or --all")
    pid = read_plan(plan)["plan_id"] if os.path.isfile(plan) else Path(plan).name
    chosen = [p for p in found if p.plan_id == pid]
    if not chosen:
        raise ReclaimError(f"plan {pid}", f"nothing quarantined under {qdir}", "see --all, or --quarantine")
    return chosen


def quarantine_dirs(plan: str | None, root: str | None, quarantine_dir: Path | None) -> list[Path]:
    """Where a restore or purge looks: --quarantine, else the quarantines of the plan's data root (or of --root,
    or of the default data root) that exist, holding that plan when one is given."""
    if quarantine_dir is not None:
        return [quarantine_dir]
    if plan is not None and os.path.isfile(plan):
        data_root, pid = Path(str(read_plan(plan)["data_root"])), str(read_plan(plan)["plan_id"])
    else:
        from snapper.docker_root import find_data_root

        data_root, pid = find_data_root(root)[0], Path(plan).name if plan else ""
    found = [q for q in qmod.existing_dirs(data_root) if not pid or (q / pid).is_dir()]
    if not found:
        raise ReclaimError(str(data_root), f"no quarantine{' of plan ' + pid if pid else ''} beside or in it",
                           "pass --quarantine DIR")
    return found


def restore(qdir: Path, plan: str | None = None, all_plans: bool = False) -> tuple[list[QuarantineOutcome], list[str]]:
    """Move quarantined dirs back exactly where they were; a destination that exists is refused."""
    outcomes: list[QuarantineOutcome] = []
    notes: list[str] = []
    with qmod.locked(qdir):
        for pq_ in _selected(qdir, plan, all_plans):
            notes += pq_.recover(lambda g: None)
            for item in pq_.items().values():
                if item.state != "quarantined":
                    continue
                moves = [Move(m.kind, m.dst, m.src) for m in reversed(item.group.moves)]
                out = QuarantineOutcome(pq_.plan_id, item.layer_id, item.bytes, "refused")
                outcomes.append(out)
                busy = [m.dst for m in moves if os.path.lexists(m.dst)]
                if busy:
                    out.reason = f"{busy[0]} exists (never overwritten)"
                    continue
                reason = pq_.run("restore", item.layer_id, moves, {"bytes": item.bytes},
                                 lambda m: f"{m.dst} exists" if os.path.lexists(m.dst) else None)
                out.result, out.reason = ("restored", "") if reason is None else ("refused", reason)
    return outcomes, notes


def purge(qdir: Path, older_than_s: int) -> PurgeResult:
    """Delete quarantined dirs moved more than ``older_than_s`` ago (and finish purges a kill interrupted)."""
    now = time.time_ns()
    outcomes: list[QuarantineOutcome] = []
    with qmod.locked(qdir):
        before = os.statvfs(qdir)
        for pq_ in qmod.plans(qdir):
            for item in pq_.items().values():
                if item.state == "quarantined" and now - item.quarantined_ns < older_than_s * 1_000_000_000:
                    outcomes.append(QuarantineOutcome(pq_.plan_id, item.layer_id, item.bytes, "kept", "too young"))
                    continue
                if item.state not in ("quarantined", "purging"):
                    continue
                try:
                    pq_.purge(item)
                except OSError as e:
                    raise QuarantineError(str(pq_.item_dir(item.layer_id)), f"cannot delete ({e.strerror})",
                                       "check permissions and run purge again") from e
                outcomes.append(QuarantineOutcome(pq_.plan_id, item.layer_id, item.bytes, "purged"))
        os.sync()
        after = os.statvfs(qdir)
    freed = (after.f_bfree - before.f_bfree) * after.f_frsize
    return PurgeResult(outcomes, freed, sum(o.bytes for o in outcomes if o.result == "purged"))
