"""Snapshots over time: diff of two snapshots, history of a series, attribution of leaked content.

All answers come from ``queries/*.sql`` (diff, diff_files, history, history_timeline, history_rate,
attribution, duplicates, leak_prefixes, leak_neighbours) over a series binding, where every table has a
``snap`` column (0 = oldest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from snapper import catalog
from snapper.errors import UsageError
from snapper.snapshot import Snapshot, connect, find_snapshots, open_snapshot
from snapper.verdict import DEFAULT_GRACE_S, resolve_layer

if TYPE_CHECKING:
    import duckdb


def bind(snaps: Sequence[Snapshot]) -> duckdb.DuckDBPyConnection:
    for s in snaps:
        s.require_classified()
    con = connect(snaps)
    catalog.bind_views(con)
    return con


@dataclass(frozen=True)
class Diff:
    old: Snapshot
    new: Snapshot
    dirs: pa.Table  # one row per dir (query `diff`)
    containerd: pa.Table  # one row per containerd snapshot dir, blob and ingest dir (query `ctr_diff`)

    def where(self, mask: pa.ChunkedArray | pa.Array) -> pa.Table:
        return self.dirs.filter(mask)

    @property
    def appeared(self) -> pa.Table:
        return self.where(pc.equal(self.dirs["change"], "appeared"))

    @property
    def vanished(self) -> pa.Table:
        return self.where(pc.equal(self.dirs["change"], "vanished"))

    @property
    def changed(self) -> pa.Table:
        return self.where(pc.equal(self.dirs["change"], "changed"))

    @property
    def newly_leaked(self) -> pa.Table:
        return self.where(pc.fill_null(self.dirs["newly_leaked"], False))

    @property
    def leaks_gone(self) -> pa.Table:
        return self.where(pc.fill_null(self.dirs["leak_gone"], False))

    @property
    def live_growth(self) -> pa.Table:
        live = pc.and_(pc.equal(self.dirs["old_verdict"], "live"), pc.equal(self.dirs["new_verdict"], "live"))
        grown = self.where(pc.and_(pc.fill_null(live, False), pc.greater(self.dirs["bytes_delta"], 0)))
        return grown.sort_by([("bytes_delta", "descending"), ("layer_id", "ascending")])

    def totals(self) -> dict[str, int]:
        def total(t: pa.Table, col: str = "bytes") -> int:
            return int(pc.sum(t[col]).as_py() or 0) if t.num_rows else 0

        return {
            "appeared_dirs": self.appeared.num_rows, "appeared_bytes": total(self.appeared),
            "vanished_dirs": self.vanished.num_rows, "vanished_bytes": total(self.vanished),
            "changed_dirs": self.changed.num_rows, "changed_bytes_delta": total(self.changed, "bytes_delta"),
            "newly_leaked_dirs": self.newly_leaked.num_rows, "newly_leaked_bytes": total(self.newly_leaked),
            "leaks_gone_dirs": self.leaks_gone.num_rows, "leaks_gone_bytes": total(self.leaks_gone, "old_bytes"),
            "bytes_delta": total(self.dirs, "bytes_delta"),
            "containerd_newly_leaked": int(pc.sum(self.containerd["newly_leaked"]).as_py() or 0)
            if self.containerd.num_rows else 0,
            "containerd_newly_leaked_bytes": total(self.containerd.filter(self.containerd["newly_leaked"]))
            if self.containerd.num_rows else 0,
        }


def _started_ns(s: Snapshot) -> int | None:
    v = s.manifest.get("started_ns")
    return v if isinstance(v, int) else None


def _open(x: str | Path | Snapshot) -> Snapshot:
    return x if isinstance(x, Snapshot) else open_snapshot(x)


def check_comparable(o: Snapshot, n: Snapshot, force: bool = False) -> None:
    """Snapshots of different hosts or data roots share no dirs: every dir would show as appeared or vanished.
    A usage error unless ``force``."""
    if force:
        return
    for key in ("host", "data_root"):
        a, b = o.manifest.get(key), n.manifest.get(key)
        if a != b:
            raise UsageError(f"diff {o.path} {n.path}",
                             f"the snapshots come from different {key.replace('_', ' ')}s ({a} and {b}): "
                             "every dir would show as appeared or vanished",
                             "compare snapshots of one data root, or add --force")


def pair(old: str | Path | Snapshot, new: str | Path | Snapshot,
         force: bool = False) -> tuple[Snapshot, Snapshot, bool]:
    """What ``snapper diff`` compares: two different, comparable snapshots in time order, and whether they were
    given the other way round. The same snapshot twice (or a copy of it) is a usage error: its empty diff
    would read as "nothing changed"."""
    o, n = _open(old), _open(new)
    ident = ("host", "data_root", "started_ns")  # a copy of one snapshot is the same snapshot
    if o.path.resolve() == n.path.resolve() or (_started_ns(o) is not None
                                                 and all(o.manifest.get(k) == n.manifest.get(k) for k in ident)):
        raise UsageError(f"diff {o.path} {n.path}", "OLD and NEW are the same snapshot",
                         "give two snapshots of one data root, older first")
    check_comparable(o, n, force)
    so, sn = _started_ns(o), _started_ns(n)
    if so is not None and sn is not None and so > sn:
        return n, o, True
    return o, n, False


def diff(old: str | Path | Snapshot, new: str | Path | Snapshot, grace_s: int = DEFAULT_GRACE_S,
         force: bool = False) -> Diff:
    """OLD -> NEW as given (``diff(a, a)`` is empty, ``diff(b, a)`` the reverse of ``diff(a, b)``);
    ``pair`` puts them in order first."""
    o, n = _open(old), _open(new)
    check_comparable(o, n, force)
    con = bind([o, n])
    p = {"old_snap": 0, "new_snap": 1, "grace_seconds": grace_s}
    return Diff(o, n, catalog.run(con, "diff", p), catalog.run(con, "ctr_diff", p))


def diff_files(old: str | Path | Snapshot, new: str | Path | Snapshot, layer_id: str,
               force: bool = False) -> pa.Table:
    o, n = _open(old), _open(new)
    check_comparable(o, n, force)
    con = bind([o, n])
    full = resolve_layer(con, layer_id)  # looks in both snapshots: the dir may exist in only one
    return catalog.run(con, "diff_files", {"old_snap": 0, "new_snap": 1, "layer_id": full})


FORECAST_NEEDS = "at least 3 snapshots spanning at least 1 h"  # history_rate.sql's `reliable`


def fill_forecast(rate: dict[str, Any]) -> tuple[float | None, str]:
    """Hours until the filesystem is full, only when the series is long enough to extrapolate (the query's
    ``reliable``), and a sentence saying why there is none otherwise."""
    have = f"have {rate.get('snapshots') or 0} over {rate.get('span_hours') or 0} h"
    if not rate.get("reliable"):
        return None, f"no fill forecast: needs {FORECAST_NEEDS} ({have})"
    hours = rate.get("hours_until_full")
    if hours is None:
        return None, "filesystem use not growing: no fill date"
    return float(hours), f"filesystem full in {hours} h (at {rate.get('full_at')})"


@dataclass(frozen=True)
class History:
    snapshots: list[Snapshot]
    dirs: pa.Table  # query `history`
    timeline: pa.Table  # query `history_timeline`
    rate: dict[str, Any]  # query `history_rate` (one row)
    attribution: pa.Table  # query `attribution` for the last snapshot
    duplicates: pa.Table
    prefixes: pa.Table
    neighbours: pa.Table
    containerd: pa.Table  # query `ctr_history`: containerd snapshot dirs, blobs and ingests across the series
    restarts: pa.Table  # query `daemon_restarts`: the daemon of each snapshot, restarts between them
    causes: pa.Table | None  # leaked bytes of the last snapshot by cause (cause.by_cause), with `snapper watch` rows

    @property
    def never_reachable(self) -> pa.Table:
        return self.dirs.filter(pc.fill_null(self.dirs["never_reachable"], False))


def history(args: Sequence[str | Path], grace_s: int = DEFAULT_GRACE_S, window_s: int = 300) -> History:
    snaps = find_snapshots(args)
    roots = {s.manifest.get("data_root") for s in snaps}
    hosts = {s.manifest.get("host") for s in snaps}
    if len(roots) > 1 or len(hosts) > 1:
        raise UsageError("snapshots", f"come from {len(hosts)} hosts / {len(roots)} data roots",
                         "give snapshots of one data root on one host")
    con = bind(snaps)
    p = {"grace_seconds": grace_s}
    rate = catalog.run(con, "history_rate", p).to_pylist()
    last = {**p, "snap": -1}  # the newest (catalog.run passes it as a number: see there)
    return History(
        snaps,
        catalog.run(con, "history", p),
        catalog.run(con, "history_timeline", p),
        rate[0] if rate else {},
        catalog.run(con, "attribution", last),
        catalog.run(con, "duplicates", last),
        catalog.run(con, "leak_prefixes", last),
        catalog.run(con, "leak_neighbours", {**last, "window_seconds": window_s}),
        catalog.run(con, "ctr_history", p),
        catalog.run(con, "daemon_restarts"),
        _causes(snaps[-1], grace_s),
    )


def _causes(last: Snapshot, grace_s: int) -> pa.Table | None:
    """Leaked bytes of the last snapshot by cause, when `snapper watch` wrote events/ beside the series."""
    from snapper import cause, verdict

    if cause.events_dir_for(last.path, None) is None:
        return None
    leaks = verdict.leaks(last, 0, grace_s).select(["layer_id", "bytes", "mechanism", "created"])
    return cause.by_cause(cause.with_causes(leaks, last.path, None))
