"""The cause of each leaked dir: which daemon loss left it, during which operation, on what subject.

Inputs, strongest first, each labelled in the ``evidence`` list:

* the rows of ``snapper watch`` (``DIR/events/``): each daemon loss with its time, whether it was a clean stop
  (pid file removed) or a death, and the docker client commands in flight at that moment;
* without a recorder: the daemon start times the snapshots' manifests hold (the start of the daemon that ran
  during each collect). A dir born before a daemon start was written by a daemon that was lost in between:
  ``interrupted_at`` stays null and ``lost_before`` gives that start;
* the mechanism: which operations can leave it (a dir no metadata names is left by a load, pull, import,
  commit or legacy build; a -removing chain by rmi or prune; ...).

A dir's birth is its ``created`` time (the link/diff/dir mtime the collect recorded). The loss that left it is
the first one after its birth whose in-flight commands include an operation that can make its mechanism, else
the first loss after its birth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from snapper.errors import UsageError

OPERATIONS = ("load", "pull", "import", "build", "commit", "create", "rmi", "prune", "builder-prune", "export",
              "unknown")

# which operations leave each mechanism (docker-storage.md §9); the first is the most common
MECHANISM_OPERATIONS: dict[str, tuple[str, ...]] = {
    "interrupted-layer-create": ("load", "pull", "import", "commit", "build"),
    "interrupted-image-create": ("load", "pull", "import", "commit"),
    "partial-delete-remnant": ("rmi", "prune"),
    "interrupted-image-delete": ("rmi", "prune"),
    "pinned-by-orphan-mount": ("create", "export", "build"),
    "orphan-container-mount": ("create", "export", "build"),
    "buildkit-snapshot-without-record": ("build", "builder-prune"),
    "stray-dir": (),
    "ctr-dead-lease": ("load", "pull", "commit", "build"),
    "ctr-orphan-writable-snapshot": ("create",),
    "ctr-unreferenced": ("rmi", "prune", "builder-prune"),
    "ctr-expired-lease": ("pull", "load", "build"),
    "ctr-dir-without-record": ("prune", "rmi"),
    "ctr-record-without-meta": ("prune", "rmi"),
    "ctr-blob-without-meta": ("pull", "load"),
    "ctr-ingest-without-meta": ("pull", "load"),
}
SLACK_NS = 1_000_000_000  # created times are file mtimes: allow a second either way


@dataclass(frozen=True)
class Loss:
    time_ns: int
    kind: str  # daemon-stop | daemon-death | start (no recorder: a daemon start after the birth)
    pid: int | None
    last_alive_ns: int | None
    in_flight: tuple[str, ...]
    source: str


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str | None) -> int | None:
    if not text:
        return None
    try:
        dt = datetime.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(dt.timestamp() * 1_000_000) * 1000


def losses_from_events(events: pa.Table) -> list[Loss]:
    out = []
    for r in events.to_pylist():
        if r["kind"] in ("daemon-stop", "daemon-death"):
            out.append(Loss(int(r["time_ns"]), r["kind"], r["pid"], r["last_alive_ns"],
                            tuple(r["in_flight"] or ()), "snapper watch"))
    return sorted(out, key=lambda x: x.time_ns)


def starts_from_manifests(manifests: Sequence[dict[str, Any]]) -> list[int]:
    """The distinct daemon start times the snapshots recorded (a restart between two snapshots shows as a
    new start), oldest first."""
    starts = set()
    for m in manifests:
        d = m.get("daemon") if isinstance(m.get("daemon"), dict) else {}
        v = d.get("started_ns") if isinstance(d, dict) else None
        if isinstance(v, int):
            starts.add(v)
    return sorted(starts)


def _op_of(flight: str) -> tuple[str, str]:
    op, _, subject = flight.partition(" ")
    return op, subject


def image_deletes(events: pa.Table) -> list[tuple[int, str]]:
    """(time, image) of every image delete/untag/prune the recorder saw, by time."""
    out = [(int(r["time_ns"]), str(r["subject"] or "")) for r in events.to_pylist()
           if r["kind"] == "engine-event" and r["type"] == "image" and r["action"] in ("delete", "untag", "prune")]
    return sorted(out)


def infer(mechanism: str | None, created: str | None, losses: Sequence[Loss], starts: Sequence[int],
          recorder: bool, deletes: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
    """The cause of one leaked dir as a dict (see the module doc). A layer pinned by an orphan mount leaked in
    two steps: the loss that orphaned the mount (the cause) and, later, the delete of its image (named in
    ``cascade`` when the recorder saw one)."""
    c = _infer(mechanism, created, losses, starts, recorder)
    if mechanism == "pinned-by-orphan-mount":
        since = parse_iso(c.get("interrupted_at")) or parse_iso(created) or 0
        later = [d for d in deletes if d[0] >= since]
        if later:
            c["cascade"] = {"operation": "rmi", "at": iso(later[-1][0]), "subject": later[-1][1]}
            c["evidence"].append(f"snapper watch: then leaked when image {later[-1][1]} was deleted at "
                                 f"{iso(later[-1][0])} (its layers stay pinned by the orphan mount)")
    return c


def _infer(mechanism: str | None, created: str | None, losses: Sequence[Loss], starts: Sequence[int],
           recorder: bool) -> dict[str, Any]:
    ops = MECHANISM_OPERATIONS.get(mechanism or "", ())
    birth = parse_iso(created)
    evidence: list[str] = []
    if birth is None:
        return {"interrupted_at": None, "interrupted_by": None, "operation": "unknown", "subject": None,
                "confidence": "none", "evidence": ["no creation time recorded for the dir"]}
    after = [x for x in losses if x.time_ns >= birth - SLACK_NS]
    chosen: Loss | None = None
    op, subject = "unknown", None
    for x in after:
        hits = [_op_of(f) for f in x.in_flight if _op_of(f)[0] in ops]
        if hits:
            chosen, (op, subject) = x, hits[0]
            evidence.append(f"snapper watch: `docker {hits[0][0]} {hits[0][1]}`".rstrip() + " was running when "
                            f"the daemon (pid {x.pid}) was lost at {iso(x.time_ns)}")
            break
    if chosen is None and after:
        chosen = after[0]
        evidence.append(f"snapper watch: first daemon loss after the dir was created ({iso(birth)}): "
                        f"{chosen.kind} of pid {chosen.pid} at {iso(chosen.time_ns)}, no matching command in flight"
                        + (f" (in flight: {', '.join(chosen.in_flight)})" if chosen.in_flight else ""))
    if chosen is not None:
        if op == "unknown" and len(ops) == 1:
            op = ops[0]
        confidence = "high" if subject is not None else ("medium" if op != "unknown" else "low")
        if chosen.kind == "daemon-stop":
            evidence.append("the daemon was stopped cleanly (pid file removed): not a crash")
        window = (f"; alive at {iso(chosen.last_alive_ns)}" if chosen.last_alive_ns else "")
        evidence[-1] += window
        return {"interrupted_at": iso(chosen.time_ns),
                "interrupted_by": "death" if chosen.kind == "daemon-death" else "stop",
                "operation": op, "subject": subject or None, "confidence": confidence, "evidence": evidence}
    later = [s for s in starts if s > birth + SLACK_NS]
    if recorder:
        evidence.append("snapper watch recorded no daemon loss after the dir was created")
    if later:
        evidence.append(f"best effort, no recorder: a daemon started at {iso(later[0])} (snapshot manifest), after "
                        f"the dir was created ({iso(birth)}): the daemon that wrote it was lost in between")
    else:
        evidence.append("no daemon loss or restart known after the dir was created")
    if len(ops) == 1:
        op = ops[0]
    evidence.append(f"mechanism {mechanism}: left by " + (", ".join(ops) if ops else "no engine operation"))
    return {"interrupted_at": None, "interrupted_by": None, "lost_before": iso(later[0]) if later else None,
            "operation": op, "subject": None, "confidence": "low" if later else "none", "evidence": evidence}


def add_causes(leaks: pa.Table, events: pa.Table | None, manifests: Sequence[dict[str, Any]]) -> pa.Table:
    """The leaks table with a ``cause`` column (JSON text)."""
    losses = losses_from_events(events) if events is not None else []
    starts = starts_from_manifests(manifests)
    if events is not None:
        starts = sorted(set(starts) | {int(r["daemon_started_ns"]) for r in events.to_pylist()
                                       if r["kind"] == "daemon-start" and r["daemon_started_ns"]})
    deletes = image_deletes(events) if events is not None else []
    causes = [json.dumps(infer(m, c, losses, starts, events is not None and events.num_rows > 0, deletes),
                         sort_keys=True)
              for m, c in zip(leaks.column("mechanism").to_pylist(), leaks.column("created").to_pylist(),
                              strict=True)]
    return leaks.append_column("cause", pa.array(causes, pa.string()))


def by_cause(leaks_with_cause: pa.Table) -> pa.Table:
    """Leaked bytes and dirs per (interrupted_at, interrupted_by, operation, subject), biggest first."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for b, c in zip(leaks_with_cause.column("bytes").to_pylist(), leaks_with_cause.column("cause").to_pylist(),
                    strict=True):
        d = json.loads(c)
        key = (d.get("interrupted_at") or (d.get("lost_before") and f"before {d['lost_before']}") or "?",
               d.get("interrupted_by") or "?", d.get("operation") or "unknown", d.get("subject") or "")
        g = groups.setdefault(key, [0, 0])
        g[0] += b or 0
        g[1] += 1
    rows = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return pa.table({"interrupted_at": [k[0] for k, _ in rows], "by": [k[1] for k, _ in rows],
                     "operation": [k[2] for k, _ in rows], "subject": [k[3] for k, _ in rows],
                     "bytes": pa.array([v[0] for _, v in rows], pa.int64()),
                     "dirs": pa.array([v[1] for _, v in rows], pa.int64())})


def events_dir_for(snapshot: str | Path, given: str | Path | None) -> Path | None:
    """--events DIR, else the snapshot's series dir (its parent) when ``snapper watch --out`` wrote there."""
    if given is not None:
        p = Path(given)
        if not p.is_dir():
            raise UsageError(f"--events {given}", "no such directory", "pass the --out dir of `snapper watch`")
        return p
    parent = Path(snapshot).resolve().parent
    return parent if (parent / "events").is_dir() else None


def with_causes(leaks: pa.Table, snapshot: str | Path, events: str | Path | None) -> pa.Table:
    """``add_causes`` for one snapshot: its manifest's daemon start and the recorder's rows, if any."""
    from snapper.snapshot import open_snapshot
    from snapper.watch import read_events

    d = events_dir_for(snapshot, events)
    return add_causes(leaks, read_events(d) if d is not None else None, [open_snapshot(snapshot).manifest])


def cause_notes(leaks_with_cause: pa.Table, ids: list[str]) -> list[tuple[str, str]]:
    """(short id, one line) per leak: when, how, what, how sure."""
    out = []
    for i, c in zip(ids, leaks_with_cause.column("cause").to_pylist(), strict=True):
        d = json.loads(c)
        when = (f"{d['interrupted_by']} at {d['interrupted_at']}" if d.get("interrupted_at")
                else f"daemon lost before {d['lost_before']}" if d.get("lost_before") else "no daemon loss known")
        what = d["operation"] + (f" {d['subject']}" if d.get("subject") else "")
        out.append((i, f"{when}: {what} ({d['confidence']} confidence)"))
    return out


def explain_rows(snapshot: str | Path, explained: pa.Table, events: str | Path | None, grace_s: int) -> pa.Table:
    """``explain``'s table plus ``cause`` rows when the dir is leaked (the explain table names it first:
    section ``dir``, detail ``overlay2/<id>`` or the containerd entry)."""
    from snapper import verdict

    rows = explained.to_pylist()
    name = next((r["detail"] for r in rows if r["section"] == "dir"), None)
    if name is None:
        return explained
    leaks = verdict.leaks(snapshot, 0, grace_s)
    mine = leaks.filter(pc.equal(leaks.column("layer_id"), name.rsplit("/", 1)[-1]))
    if not mine.num_rows:
        return explained
    d = json.loads(with_causes(mine.select(["layer_id", "bytes", "mechanism", "created"]), snapshot,
                               events).column("cause")[0].as_py())
    extra = [{"section": "cause", "detail": json.dumps({k: v for k, v in d.items() if k != "evidence"},
                                                       sort_keys=True)}]
    extra += [{"section": "cause evidence", "detail": e} for e in d["evidence"]]
    return pa.Table.from_pylist(rows + extra, schema=explained.schema)
