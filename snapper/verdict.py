"""Reachability verdicts over one snapshot: leaks, leaked metadata, reconciliation, explain.

All logic is SQL in ``queries/`` (edges -> reach -> verdicts -> leaks/...); this module binds a snapshot,
sets parameters and returns Arrow tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from snapper import catalog
from snapper.errors import UsageError
from snapper.snapshot import Snapshot, connect, open_snapshot

if TYPE_CHECKING:
    import duckdb

DEFAULT_GRACE_S = 3600
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> int:
    """'90', '90s', '15m', '1h', '2d' -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"--grace {text}", "not a duration", "use e.g. 0, 90s, 15m, 1h or 2d")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def bound(snapshot: str | Path | Snapshot) -> duckdb.DuckDBPyConnection:
    snap = snapshot if isinstance(snapshot, Snapshot) else open_snapshot(snapshot)
    snap.require_classified()
    con = connect(snap)
    catalog.bind_views(con)
    return con


def _single(table: pa.Table) -> pa.Table:
    """Results of a single-snapshot binding: the ``snap`` column is always 0, drop it."""
    return table.drop_columns(["snap"]) if "snap" in table.column_names else table


def verdicts(snapshot: str | Path | Snapshot, grace_s: int = DEFAULT_GRACE_S) -> pa.Table:
    return _single(catalog.run(bound(snapshot), "verdicts", {"grace_seconds": grace_s}))


LEAK_COLUMNS = ["layer_id", "bytes", "files", "created", "mechanism", "self_heals", "evidence"]  # leaks and demo


def short_id(layer_id: str) -> str:
    """A dir name as docker shortens ids: 12 characters (and -init), BuildKit's 25-character ones too; shorter
    names as they are."""
    return layer_id[:12] + ("-init" if layer_id.endswith("-init") else "") if len(layer_id) >= 25 else layer_id


def leaks_for_terminal(table: pa.Table) -> tuple[pa.Table, list[tuple[str, str]]]:
    """The leaks table narrowed for a terminal (short ids, created to the minute, no evidence column), and
    (short id, evidence) pairs to print under it."""
    ids = [short_id(i) for i in table.column("layer_id").to_pylist()]
    created = [c[:16].replace("T", " ") if isinstance(c, str) else c for c in table.column("created").to_pylist()]
    cols = {"layer_id": pa.array(ids, pa.string()), "bytes": table.column("bytes"),
            "files": table.column("files"), "created": pa.array(created, pa.string()),
            "mechanism": table.column("mechanism"), "heals": table.column("self_heals")}
    if "store" in table.column_names and len(set(table.column("store").to_pylist())) > 1:
        cols = {"store": table.column("store"), **cols}  # containerd leaks next to overlay2 ones
    shown = pa.table(cols)
    return shown, [(i, e or "") for i, e in zip(ids, table.column("evidence").to_pylist(), strict=True)]


def metadata_for_terminal(table: pa.Table) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Leaked metadata numbered, without its detail column; (number, detail) pairs to print under it."""
    n = [f"#{i + 1}" for i in range(table.num_rows)]
    ids = [short_id(i) if i else None for i in table.column("layer_id").to_pylist()]
    shown = pa.table({"#": pa.array(n, pa.string()), "kind": table.column("kind"),
                      "object": table.column("object"), "heals": table.column("self_heals"),
                      "layer_id": pa.array(ids, pa.string())})
    return shown, [(k, d or "") for k, d in zip(n, table.column("detail").to_pylist(), strict=True)]


def leaks(snapshot: str | Path | Snapshot, min_bytes: int = 0, grace_s: int = DEFAULT_GRACE_S) -> pa.Table:
    return _single(catalog.run(bound(snapshot), "leaks", {"min_bytes": min_bytes, "grace_seconds": grace_s}))


def leaked_metadata(snapshot: str | Path | Snapshot, grace_s: int = DEFAULT_GRACE_S) -> pa.Table:
    return _single(catalog.run(bound(snapshot), "leaked_metadata", {"grace_seconds": grace_s}))


def reconciliation(snapshot: str | Path | Snapshot, grace_s: int = DEFAULT_GRACE_S) -> pa.Table:
    return _single(catalog.run(bound(snapshot), "reconciliation", {"grace_seconds": grace_s}))


def known_bugs(snapshot: str | Path | Snapshot, grace_s: int = DEFAULT_GRACE_S) -> pa.Table:
    """The known engine bugs (snapper/data/known_bugs.csv) that apply to the engine that produced the snapshot,
    with the leaked dirs and bytes whose mechanism matches each bug's signature."""
    return _single(catalog.run(bound(snapshot), "known_bugs", {"grace_seconds": grace_s}))


def known_bugs_notes(table: pa.Table) -> list[tuple[str, str]]:
    """(bug, one line) pairs for a terminal or report: whether it applies, fix, matching leaks, issue."""
    out = []
    for r in table.to_pylist():
        applies = (f"engine {r['engine_version']} is affected" if r["applies"] == "yes"
                   else f"engine version unknown: applies to {r['affected']}")
        out.append((r["bug"], f"{applies}; fixed in {r['fixed_in']}; {r['leaked_dirs']} leaked dir(s) of "
                    f"its mechanism ({r['mechanisms'].replace(';', ', ')}); {r['issue_url']}; {r['workaround']}"))
    return out


@dataclass(frozen=True)
class Report:
    leaks: pa.Table
    metadata: pa.Table
    reconciliation: pa.Table
    known_bugs: pa.Table


def report(snapshot: str | Path | Snapshot, min_bytes: int = 0, grace_s: int = DEFAULT_GRACE_S) -> Report:
    con = bound(snapshot)
    return Report(
        _single(catalog.run(con, "leaks", {"min_bytes": min_bytes, "grace_seconds": grace_s})),
        _single(catalog.run(con, "leaked_metadata", {"grace_seconds": grace_s})),
        _single(catalog.run(con, "reconciliation", {"grace_seconds": grace_s})),
        _single(catalog.run(con, "known_bugs", {"grace_seconds": grace_s})),
    )


def resolve_layer(con: duckdb.DuckDBPyConnection, layer_id: str) -> str:
    """A full overlay2 entry name from a name or a unique prefix (as docker accepts short ids)."""
    # DISTINCT: over a series binding (diff --layer) one dir is a row in each snapshot.
    rows = con.execute("SELECT DISTINCT layer_id FROM layers WHERE layer_id = ? OR starts_with(layer_id, ?) "
                       "ORDER BY 1", [layer_id, layer_id]).fetchall()
    exact = [r[0] for r in rows if r[0] == layer_id]
    if exact:
        return str(exact[0])
    if not rows or not layer_id:
        raise UsageError(layer_id, "no such entry under overlay2/ in this snapshot",
                         "pass a dir name or unique prefix as listed by `snapper leaks`")
    if len(rows) > 1:
        shown = ", ".join(str(r[0]) for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
        raise UsageError(layer_id, f"prefix matches {len(rows)} entries ({shown})", "give more characters")
    return str(rows[0][0])


def resolve_ctr(con: duckdb.DuckDBPyConnection, name: str) -> tuple[str, str] | None:
    """(store, name) of a containerd snapshot dir (its id), blob (digest, with or without ``sha256:``, or a
    unique prefix) or ingest dir; None when nothing of the containerd stores matches."""
    if not name:
        return None
    rows = con.execute(
        "SELECT DISTINCT store, name FROM ctr_dirs WHERE name = ? OR name = 'sha256:' || ? "
        "OR (kind <> 'snapshot' AND (starts_with(name, ?) OR starts_with(name, 'sha256:' || ?))) ORDER BY 1, 2",
        [name, name, name, name]).fetchall()
    exact = [r for r in rows if r[1] in (name, f"sha256:{name}")]
    found = exact or rows
    if not found:
        return None
    if len(found) > 1:
        raise UsageError(name, f"matches {len(found)} containerd entries "
                         f"({', '.join(f'{s}: {n[:19]}' for s, n in found[:4])})", "give more characters")
    return str(found[0][0]), str(found[0][1])


def explain(snapshot: str | Path | Snapshot, layer_id: str, grace_s: int = DEFAULT_GRACE_S) -> pa.Table:
    """The evidence for one overlay2 dir, or for one containerd snapshot dir, blob or ingest dir. An exact
    name wins (a snapshot id like 12 is never taken for the prefix of an overlay2 dir); a prefix must be
    unique across both stores."""
    con = bound(snapshot)
    exact = con.execute("SELECT count(*) FROM layers WHERE layer_id = ?", [layer_id]).fetchone()
    ctr_exact = con.execute("SELECT count(*) FROM ctr_dirs WHERE name = ? OR name = 'sha256:' || ?",
                            [layer_id, layer_id]).fetchone()
    use_ctr = bool(ctr_exact and ctr_exact[0]) and not (exact and exact[0])
    full: str | None = None
    if not use_ctr:
        try:
            full = resolve_layer(con, layer_id)
        except UsageError:
            full = None
    ctr = resolve_ctr(con, layer_id) if use_ctr or not (exact and exact[0]) else None
    if full is not None and ctr is not None and not use_ctr:
        raise UsageError(layer_id, "matches an overlay2 dir and a containerd entry", "give more characters")
    if full is not None and not use_ctr:
        return catalog.run(con, "explain", {"layer_id": full, "snap": 0, "grace_seconds": grace_s})
    if ctr is None:
        raise UsageError(layer_id, "no such overlay2 dir, containerd snapshot dir or blob in this snapshot",
                         "pass a dir name, snapshot id, digest or unique prefix as listed by `snapper leaks`")
    return catalog.run(con, "ctr_explain", {"store": ctr[0], "name": ctr[1], "snap": 0, "grace_seconds": grace_s})
