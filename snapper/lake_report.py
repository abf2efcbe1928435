"""The fleet lake as one self-contained HTML page (``snapper lake report``): the hosts, leaked bytes per host
over time, mechanisms by engine version, leak-rate changes after engine upgrades and the top leaked prefixes.

The data is the fleet queries (``queries/fleet/*.sql``) run on one DuckDB connection over the lake
(:func:`fleet`); the page reuses ``snapper.report``'s styles, SVG charts, escaping and atomic write, so it
looks like the per-host report and, like it, fetches nothing and escapes every string from the lake.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from snapper import __version__
from snapper import lake as lake_mod
from snapper import report as r
from snapper.render import human_bytes

TOP_HOSTS = 10  # hosts drawn in the leak-bytes chart (the most leaked now); the tables list every host
_HOST_COLOURS = ("#d1495b", "#4e79a7", "#59a14f", "#e8a33d", "#9467bd", "#3a9e9a", "#8e2c48", "#f28e2b",
                 "#76b7b2", "#9c755f")


@dataclass(frozen=True)
class Fleet:
    url: str
    rates: pa.Table  # leak_rate: per host, first and newest leaked bytes, bytes per day
    leak_bytes: pa.Table  # per host per snapshot
    leaks: pa.Table  # leaked dirs of each host's newest snapshot
    mechanisms: pa.Table  # by engine version and mechanism
    upgrades: pa.Table  # engine_upgrade: rate before and after
    prefixes: pa.Table  # top_prefixes


def fleet(lk: lake_mod.Lake) -> Fleet:
    """Run the fleet queries the page shows, on one connection."""
    con = lake_mod.bind(lk)
    q = {name: lake_mod.run(lk, name, con=con) for name in
         ("leak_rate", "leak_bytes", "leaks", "mechanisms", "engine_upgrade", "top_prefixes")}
    return Fleet(lk.url, q["leak_rate"], q["leak_bytes"], q["leaks"], q["mechanisms"], q["engine_upgrade"],
                 q["top_prefixes"])


def host_colour(host: str, rank: int) -> str:
    return _HOST_COLOURS[rank] if rank < len(_HOST_COLOURS) else _HOST_COLOURS[zlib.crc32(host.encode()) % 10]


def _ns(iso: str | None) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1e9) if iso else 0


def _per_day(v: int | None) -> str:
    return f'<td class="num">{r._e(human_bytes(v))}/day</td>' if v is not None else '<td class="num">n/a</td>'


def _now(f: Fleet) -> dict[str, tuple[int, int]]:
    """host -> (leaked bytes, leaked dirs) in its newest snapshot."""
    out: dict[str, tuple[int, int]] = {}
    for row in f.leaks.to_pylist():
        b, d = out.get(row["host"], (0, 0))
        out[row["host"]] = (b + int(row["bytes"] or 0), d + 1)
    return out


def _cards(f: Fleet) -> str:
    now = _now(f)
    rates = [x["leaked_bytes_per_day"] for x in f.rates.to_pylist() if x["leaked_bytes_per_day"] is not None]
    cards = [(f"{f.rates.num_rows}", "hosts in the lake", False),
             (f"{sum(1 for b, _ in now.values() if b)}", "hosts leaking now", bool(now)),
             (human_bytes(sum(b for b, _ in now.values())), f"leaked now in {sum(d for _, d in now.values())} dirs",
              True),
             (f"{human_bytes(sum(rates))}/day" if rates else "n/a", "fleet leak rate (sum of hosts)", False),
             (f"{f.upgrades.num_rows}", "engine version changes", False)]
    return '<div class="cards">' + "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{r._e(v)}</b><span>{r._e(k)}</span></div>'
        for v, k, bad in cards) + "</div>"


def _hosts(f: Fleet) -> str:
    now = _now(f)
    rows = [f"<td>{r._e(x['host'])}</td>{r._num_td(x['snapshots'])}<td>{r._stamp(x['first_time'])}</td>"
            f"<td>{r._stamp(x['newest_time'])}</td>{r._bytes_td(x['newest_leaked_bytes'])}"
            f"{r._num_td(now.get(x['host'], (0, 0))[1])}{_per_day(x['leaked_bytes_per_day'])}"
            for x in f.rates.to_pylist()]
    return r._section("Hosts (fastest leak first)", r._table(
        ["host", ">snapshots", "first snapshot", "newest snapshot", ">leaked now", ">leaked dirs", ">leak rate"], rows))


def _over_time(f: Fleet) -> str:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for x in f.leak_bytes.to_pylist():
        xs, ys = series.setdefault(x["host"], ([], []))
        xs.append(float(_ns(x["snapshot_time"])))
        ys.append(float(x["leaked_bytes"] or 0))
    top = sorted(series, key=lambda h: (-series[h][1][-1], h))[:TOP_HOSTS]
    if not top or len({t for h in top for t in series[h][0]}) < 2:
        return r._section("Leaked bytes over time", '<p class="note">Needs snapshots at two times or more.</p>')
    lines = [(h, host_colour(h, i), *series[h], False) for i, h in enumerate(top)]
    chart = r.line_chart(lines, "leaked bytes per host over time", w=1040)
    more = (f'<p class="note">The {TOP_HOSTS} hosts that leak most now, of {len(series)}.</p>'
            if len(series) > TOP_HOSTS else "")
    return r._section("Leaked bytes over time, per host",
                      r._legend([(h, host_colour(h, i)) for i, h in enumerate(top)]) + chart + more)


def _mechanisms(f: Fleet) -> str:
    rows = f.mechanisms.to_pylist()
    if not rows:
        return r._section("Mechanisms by engine version", '<p class="note">Nothing leaked in the fleet.</p>')
    bars = r.hbars([(f"{x['engine_version']} · {x['mechanism']}", int(x["leaked_bytes"] or 0),
                     r.mechanism_colour(x["mechanism"])) for x in rows[:20]], "leaked bytes by engine and mechanism")
    table = r._table(["engine version", "mechanism", ">hosts", ">dirs", ">leaked"], [
        f"<td>{r._e(x['engine_version'])}</td><td>{r._chip(x['mechanism'])}</td>{r._num_td(x['hosts'])}"
        f"{r._num_td(x['dirs'])}{r._bytes_td(x['leaked_bytes'])}" for x in rows])
    return r._section("Mechanisms by engine version (each host's newest snapshot per version)", bars + table)


def _upgrades(f: Fleet) -> str:
    rows = f.upgrades.to_pylist()
    if not rows:
        return r._section("Leak rate around engine upgrades",
                          '<p class="note">No host changed its engine version in the lake.</p>')
    return r._section("Leak rate around engine upgrades", r._table(
        ["host", "from", "to", "upgraded", ">snapshots before", ">snapshots after", ">rate before", ">rate after"], [
            f"<td>{r._e(x['host'])}</td><td>{r._e(x['old_version'])}</td><td>{r._e(x['new_version'])}</td>"
            f"<td>{r._stamp(x['upgrade_time'])}</td>{r._num_td(x['old_snapshots'])}{r._num_td(x['new_snapshots'])}"
            f"{_per_day(x['bytes_per_day_before'])}{_per_day(x['bytes_per_day_after'])}" for x in rows]))


def _prefixes(f: Fleet) -> str:
    rows = f.prefixes.to_pylist()
    if not rows:
        return r._section("Top leaked content prefixes", '<p class="note">No leaked content in the fleet.</p>')
    return r._section("Top leaked content prefixes (each host's newest snapshot)", r._table(
        ["prefix", ">hosts", ">bytes", ">files", ">dirs", "e.g. host"], [
            f"<td><code>{r._e(x['prefix'])}</code></td>{r._num_td(x['hosts'])}{r._bytes_td(x['bytes'])}"
            f"{r._num_td(x['files'])}{r._num_td(x['dirs'])}<td>{r._e(x['example_host'])}</td>" for x in rows]))


def render_html(f: Fleet) -> str:
    head = (f"<h1>Fleet leak report</h1><p class=\"sub\">snapper {r._e(__version__)} · the lake "
            f"{r._e(f.url)}: which hosts leak, since when, how fast, by which mechanism, on which engine</p>")
    body = head + _cards(f) + _hosts(f) + _over_time(f) + _mechanisms(f) + _upgrades(f) + _prefixes(f)
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>snapper fleet report</title><style>{r._CSS}</style>"
            f"<script>{r._ERROR_RECORDER}</script></head>\n<body><main>{body}"
            f'<pre id="errors" hidden></pre><footer>snapper {r._e(__version__)} · {f.rates.num_rows} host(s) · '
            "self-contained: no network, no external fonts or scripts</footer></main></body></html>\n")


def write_report(lk: lake_mod.Lake, out: str | Path) -> Path:
    """Write the fleet page of a lake to ``out`` atomically (as ``snapper report`` writes its page)."""
    target = r.check_target(out)
    return r.write_page(render_html(fleet(lk)), target)


__all__ = ["Fleet", "fleet", "render_html", "write_report"]
