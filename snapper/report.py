"""The leak investigation of a snapshot series as data (:func:`investigate`) and as one self-contained HTML page
(:func:`write_report`): disk use over time by verdict, leaked bytes by mechanism, rate and fill forecast, the
never-reachable headline, top leaked dirs with evidence and attribution, leaked metadata, duplicates, top
path prefixes and ``explain`` of the biggest leak. ``notebooks/leak-investigation.ipynb`` tells the same story.

The page needs nothing outside itself: charts are inline SVG drawn here, styles are inline, a Content-Security-
Policy forbids every fetch, and the only script records page errors into ``<pre id="errors">`` (the browser
test reads it). Every string that comes from a snapshot is HTML-escaped: dir and file names are attacker-chosen.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import re
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from snapper import __version__, catalog, known_bugs, series, verdict
from snapper.errors import OutputError
from snapper.render import human_bytes, rows_of
from snapper.snapshot import Snapshot, output_mode

VERDICT_COLOURS = {"live": "#4e79a7", "in-flight": "#e8a33d", "unknown": "#a5a5a5", "leaked": "#d1495b"}
MECHANISM_COLOURS = {  # one colour per mechanism in every chart, table chip and the notebook
    "interrupted-image-delete": "#8e2c48", "interrupted-layer-create": "#9467bd",
    "interrupted-image-create": "#c5b0d5", "partial-delete-remnant": "#6b6b6b",
    "pinned-by-orphan-mount": "#e377c2", "orphan-container-mount": "#59a14f",
    "buildkit-snapshot-without-record": "#3a9e9a", "stray-dir": "#f28e2b",
    "ctr-dead-lease": "#b07aa1", "ctr-orphan-writable-snapshot": "#76b7b2", "ctr-unreferenced": "#edc948",
    "ctr-expired-lease": "#ff9da7", "ctr-dir-without-record": "#9c755f", "ctr-record-without-meta": "#bab0ac",
    "ctr-blob-without-meta": "#d37295", "ctr-ingest-without-meta": "#499894",
}
_SPARE_COLOURS = ("#17becf", "#c9a227", "#9c755f", "#bcbd22", "#1f77b4", "#ff7f0e", "#7f7f7f", "#8c564b")
TOP_DIRS = 25


def mechanism_colour(mechanism: str | None) -> str:
    """The mechanism's colour; a name this table does not know gets a spare one chosen by a stable hash, so it
    is still the same in every chart."""
    m = mechanism or ""
    return MECHANISM_COLOURS.get(m) or _SPARE_COLOURS[zlib.crc32(m.encode()) % len(_SPARE_COLOURS)]


@dataclass(frozen=True)
class Investigation:
    history: series.History
    last: verdict.Report  # leaks, leaked metadata and reconciliation of the last snapshot
    mechanisms: pa.Table  # snap, mechanism, bytes, dirs: leaked dirs of every snapshot by mechanism
    biggest: str | None  # the biggest leaked dir of the last snapshot
    explain: pa.Table | None  # verdict.explain of it
    grace_s: int

    @property
    def snapshots(self) -> list[Snapshot]:
        return self.history.snapshots

    def attribution(self) -> dict[str, dict[str, Any]]:
        return {r["layer_id"]: r for r in rows_of(self.history.attribution)}

    def mechanism_series(self) -> dict[str, list[int]]:
        """mechanism -> leaked bytes in each snapshot (0 where absent), biggest total first."""
        out: dict[str, list[int]] = {}
        for r in self.mechanisms.to_pylist():
            out.setdefault(r["mechanism"], [0] * len(self.snapshots))[r["snap"]] = int(r["bytes"])
        return dict(sorted(out.items(), key=lambda kv: (-sum(kv[1]), kv[0])))

    def engine(self) -> str:
        for s in reversed(self.snapshots):
            e = s.manifest.get("engine") or {}
            if e.get("engine_version"):
                return f"dockerd {e['engine_version']} ({e.get('driver') or 'overlay2'})"
        return "unknown (the engine API was not asked or did not answer)"


def investigate(paths: str | Path | Sequence[str | Path], grace_s: int = verdict.DEFAULT_GRACE_S,
                window_s: int = 300) -> Investigation:
    """Everything the report and the notebook show, from snapshot dirs or series dirs."""
    args = [paths] if isinstance(paths, str | Path) else list(paths)
    h = series.history(args, grace_s, window_s)
    last = verdict.report(h.snapshots[-1], 0, grace_s)
    every = catalog.run(series.bind(h.snapshots), "leaks", {"min_bytes": 0, "grace_seconds": grace_s})
    by_mech = every.group_by(["snap", "mechanism"]).aggregate([("bytes", "sum"), ("layer_id", "count")])
    by_mech = by_mech.rename_columns(["snap", "mechanism", "bytes", "dirs"]).sort_by(
        [("snap", "ascending"), ("bytes", "descending"), ("mechanism", "ascending")])
    biggest = str(last.leaks["layer_id"][0]) if last.leaks.num_rows else None
    explained = verdict.explain(h.snapshots[-1], biggest, grace_s) if biggest else None
    return Investigation(h, last, by_mech, biggest, explained, grace_s)


# --- formatting --------------------------------------------------------------------------------------------

def _e(v: object) -> str:
    return "" if v is None else html.escape(str(v), quote=True)


def _time(ns: int | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime(fmt) if ns else "?"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = abs(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _bytes_td(n: int | float | None) -> str:
    return f'<td class="num" title="{n or 0:,} bytes">{_e(human_bytes(n))}</td>' if n is not None else "<td></td>"


def _num_td(n: object) -> str:
    return f'<td class="num">{n:,}</td>' if isinstance(n, int) else f'<td class="num">{_e(n)}</td>'


def _chip(mechanism: str | None) -> str:
    if not mechanism:
        return ""
    return f'<span class="chip" style="--c:{mechanism_colour(mechanism)}">{_e(mechanism)}</span>'


def _stamp(text: str | None) -> str:
    """A timestamp on two lines: date, time ("2026-11-28 00:27:46" or ISO "2026-11-28T00:27:46.226573Z")."""
    t = _e(text)
    return t.replace(" ", "<br>", 1) if " " in t else re.sub(r"^(\d{4}-\d\d-\d\d)T", r"\1<br>", t)


def _id(layer_id: str | None) -> str:
    return f'<code class="id">{_e(layer_id)}</code>' if layer_id else ""


def _table(head: list[str], rows: list[str], cls: str = "") -> str:
    ths = "".join(f'<th class="num">{_e(h[1:])}</th>' if h.startswith(">") else f"<th>{_e(h)}</th>" for h in head)
    return (f'<div class="scroll"><table class="{cls}">' + (f"<thead><tr>{ths}</tr></thead>" if head else "")
            + "<tbody>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</tbody></table></div>")


# --- SVG charts --------------------------------------------------------------------------------------------

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def byte_ticks(vmax: float) -> list[tuple[float, str]]:
    """Round tick values (1, 2, 2.5, 5 x 10^k of one binary unit) from 0 up to at least vmax."""
    vmax = max(float(vmax), 1.0)
    k = min(len(_UNITS) - 1, int(math.log(vmax, 1024)))
    unit = 1024.0 ** k
    raw = vmax / unit / 4
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    n = math.ceil(vmax / unit / step - 1e-9)
    return [(i * step * unit, f"{i * step:g} {_UNITS[k]}") for i in range(n + 1)]


class _Frame:
    """A plot area with a byte y axis and a numeric x axis (unix ns for time charts)."""

    def __init__(self, x0: float, x1: float, ymax: float, w: int = 1040, h: int = 300) -> None:
        self.w, self.h, self.left, self.right, self.top, self.bottom = w, h, 84, 20, 14, 40
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1)
        self.yticks = byte_ticks(ymax)
        self.ymax = self.yticks[-1][0]

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right)

    def y(self, v: float) -> float:
        return self.h - self.bottom - v / self.ymax * (self.h - self.top - self.bottom)

    def svg(self, body: str, xticks: list[tuple[float, str]], label: str) -> str:
        out = [f'<svg class="chart" viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{_e(label)}">']
        for v, t in self.yticks:
            y = self.y(v)
            out.append(f'<line class="grid" x1="{self.left}" x2="{self.w - self.right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                       f'<text class="tick" x="{self.left - 8}" y="{y + 4:.1f}" text-anchor="end">{_e(t)}</text>')
        shown = -1e9
        for v, t in xticks:
            x = self.x(v)
            out.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{self.h - self.bottom}" '
                       f'y2="{self.h - self.bottom + 5}"/>')
            if x - shown < 7 * len(t) + 12:  # labels would overlap: keep the tick mark only
                continue
            shown = x
            anchor = "end" if x > self.w - self.right - 3.5 * len(t) else "middle"
            out.append(f'<text class="tick" x="{x:.1f}" y="{self.h - self.bottom + 20}" '
                       f'text-anchor="{anchor}">{_e(t)}</text>')
        out.append(f'<line class="axis" x1="{self.left}" x2="{self.w - self.right}" y1="{self.h - self.bottom}" '
                   f'y2="{self.h - self.bottom}"/>{body}</svg>')
        return "".join(out)


def time_ticks(times_ns: list[int], x1: float | None = None) -> list[tuple[float, str]]:
    lo, hi = times_ns[0], max(times_ns[-1], int(x1 or 0))
    span = (hi - lo) / 1e9
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 86400 else "%m-%d %H:%M"

    def label(t: float) -> str:  # tenths of a second when snapshots are seconds apart
        return _time(int(t), fmt) + (f".{int(t) // 100_000_000 % 10}" if span < 60 else "")

    if len(times_ns) <= 8 and x1 is None:
        return [(t, label(t)) for t in times_ns]
    return [(lo + (hi - lo) * i / 5, label(lo + (hi - lo) * i / 5)) for i in range(6)]


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{_e(n)}</span>' for n, c in items) + "</div>"


def stacked_area(times_ns: list[int], layers: list[tuple[str, str, list[int]]], label: str) -> str:
    """Stacked areas (first layer at the bottom) over time, a marker line at every snapshot."""
    totals = [sum(v[i] for _, _, v in layers) for i in range(len(times_ns))]
    f = _Frame(times_ns[0], times_ns[-1], max(totals, default=0))
    base = [0] * len(times_ns)
    body = []
    for name, colour, values in layers:
        if not any(values):
            continue
        top = [b + v for b, v in zip(base, values, strict=True)]
        pts = [f"{f.x(t):.1f},{f.y(v):.1f}" for t, v in zip(times_ns, top, strict=True)]
        pts += [f"{f.x(t):.1f},{f.y(v):.1f}" for t, v in reversed(list(zip(times_ns, base, strict=True)))]
        body.append(f'<polygon points="{" ".join(pts)}" fill="{colour}" fill-opacity="0.88">'
                    f"<title>{_e(name)}</title></polygon>")
        base = top
    for t, total in zip(times_ns, totals, strict=True):
        body.append(f'<circle cx="{f.x(t):.1f}" cy="{f.y(total):.1f}" r="3" class="dot">'
                    f"<title>{_e(_time(t))}: {_e(human_bytes(total))}</title></circle>")
    return f.svg("".join(body), time_ticks(times_ns), label)


def line_chart(lines: list[tuple[str, str, list[float], list[float], bool]], label: str,
               hline: tuple[str, float] | None = None, w: int = 510) -> str:
    """Lines of (name, colour, x ns, y bytes, dashed); an optional labelled horizontal limit line."""
    xs = [x for _, _, lx, _, _ in lines for x in lx]
    ys = [y for _, _, _, ly, _ in lines for y in ly] + ([hline[1]] if hline else [])
    f = _Frame(min(xs), max(xs), max(ys, default=0), w=w, h=260)
    body = []
    if hline:
        y = f.y(hline[1])
        body.append(f'<line class="limit" x1="{f.left}" x2="{f.w - f.right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                    f'<text class="tick" x="{f.left + 6}" y="{y - 6:.1f}">{_e(hline[0])}</text>')
    for name, colour, lx, ly, dashed in lines:
        pts = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in zip(lx, ly, strict=True))
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2.2"{dash}>'
                    f"<title>{_e(name)}</title></polyline>")
        if not dashed:
            body += [f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill="{colour}"/>'
                     for x, y in zip(lx, ly, strict=True)]
    times = sorted({int(x) for x in xs})
    return f.svg("".join(body), time_ticks(times[:1] + times[-1:], times[-1]), label)


def hbars(items: list[tuple[str, int, str]], label: str, w: int = 1040) -> str:
    """Horizontal bars (label, bytes, colour), biggest first."""
    if not items:
        return ""
    row, left = 30, 230
    vmax = max(v for _, v, _ in items) or 1
    h = row * len(items) + 8
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(label)}">']
    for i, (name, v, colour) in enumerate(items):
        y, bw = 4 + i * row, max(2.0, v / vmax * (w - left - 120))
        out.append(f'<text class="tick" x="{left - 10}" y="{y + 17}" text-anchor="end">{_e(name)}</text>'
                   f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 10}" rx="3" fill="{colour}">'
                   f"<title>{_e(name)}: {v:,} bytes</title></rect>"
                   f'<text class="val" x="{left + bw + 8:.1f}" y="{y + 17}">{_e(human_bytes(v))}</text>')
    return "".join(out) + "</svg>"


def split_bar(parts: list[tuple[str, int, str]], label: str) -> str:
    """One 100 % bar split into parts (the verdict split of the last snapshot)."""
    total = sum(v for _, v, _ in parts) or 1
    x, out = 0.0, [f'<svg class="chart" viewBox="0 0 1040 34" role="img" aria-label="{_e(label)}">']
    for name, v, colour in parts:
        if v <= 0:
            continue
        bw = v / total * 1040
        out.append(f'<rect x="{x:.1f}" y="2" width="{bw:.1f}" height="30" fill="{colour}">'
                   f"<title>{_e(name)}: {_e(human_bytes(v))} ({v / total:.0%})</title></rect>")
        if bw > 90:
            out.append(f'<text class="inbar" x="{x + 8:.1f}" y="22">{_e(name)} {v / total:.0%}</text>')
        x += bw
    return "".join(out) + "</svg>"


# --- the page ----------------------------------------------------------------------------------------------

_CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#dde2e8;--bg:#f4f6f8;--card:#fff}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}
.sub{color:var(--muted);margin:0 0 18px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:18px 20px;margin:0 0 18px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}
.meta dt{color:var(--muted)}.meta dd{margin:0;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:0 0 18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card b{display:block;font-size:21px;font-variant-numeric:tabular-nums}.card span{color:var(--muted);font-size:12px}
.card.bad b{color:#b3263a}
.note{color:var(--muted);margin:8px 0 0}.warn{background:#fff4e0;border-color:#f0c987}
table{border-collapse:collapse;width:100%;font-size:13px}.scroll{overflow-x:auto;max-width:100%}
th{text-align:left;background:#eef1f5;color:#3b4754;font-weight:600;padding:6px 8px;border-bottom:1px solid var(--line)}
td{padding:5px 8px;border-bottom:1px solid #edf0f3;vertical-align:top}
tbody tr:nth-child(even){background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{text-align:right}.nowrap{white-space:nowrap;overflow-wrap:normal}
table.explain th{background:none;width:9em;border-bottom:1px solid #edf0f3;vertical-align:top}
code,.mono{font:12px/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace}
code.id{word-break:break-all;display:inline-block;min-width:6em;max-width:17em}
.evidence{min-width:12em;color:#334155;overflow-wrap:anywhere}
td{overflow-wrap:anywhere}
.chip{display:inline-block;white-space:nowrap;border-radius:10px;padding:1px 8px;font-size:12px;color:#fff;
background:var(--c)}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:0 0 6px;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
svg.chart{width:100%;height:auto;display:block}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:18px;margin-top:12px}
.grid{stroke:#e6e9ee}.axis{stroke:#9aa5b1}.limit{stroke:#b3263a;stroke-dasharray:3 3}
.tick{font-size:11px;fill:#5f6b7a}.val{font-size:12px;fill:#1f2933}.inbar{font-size:12px;fill:#fff;font-weight:600}
.dot{fill:#1f2933}
.bar{display:inline-block;height:9px;background:#d1495b;border-radius:2px;vertical-align:middle;margin-left:6px}
footer{color:var(--muted);font-size:12px;text-align:center}
#errors{color:#b3263a}
"""

# Records page errors (script errors, blocked loads, CSP violations) where a headless browser's --dump-dom sees
# them; nothing else on the page runs script.
_ERROR_RECORDER = """(function(){var e=[];function f(){var p=document.getElementById('errors');
if(p&&e.length){p.textContent=e.join('\\n');p.hidden=false;}}
window.addEventListener('error',function(x){e.push(String(x.message||(x.target&&x.target.outerHTML)||x));f();},true);
document.addEventListener('securitypolicyviolation',function(x){e.push('CSP: '+x.blockedURI);f();});
document.addEventListener('DOMContentLoaded',f);})();"""


def _section(title: str, body: str, cls: str = "") -> str:
    return f'<section class="{cls}"><h2>{_e(title)}</h2>{body}</section>'


def _header(inv: Investigation) -> str:
    snaps, m = inv.snapshots, inv.snapshots[-1].manifest
    t = [int(s.manifest.get("started_ns") or 0) for s in snaps]
    span = (f"{_time(t[0])} → {_time(t[-1])} ({human_duration((t[-1] - t[0]) / 1e9)})" if len(snaps) > 1
            else f"{_time(t[0])} (one snapshot)")
    daemon = m.get("daemon") or {}
    items = [("host", m.get("host")), ("data root", m.get("data_root")), ("snapshots", f"{len(snaps)}: {span}"),
             ("engine", inv.engine()), ("daemon at last snapshot", "running" if daemon.get("running") else "stopped"),
             ("last snapshot", inv.snapshots[-1].path), ("collect errors", m.get("errors", 0)),
             ("grace window", f"{human_duration(inv.grace_s)} (younger dirs of a running daemon are in-flight)")]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    changed = [s.path.name for s in snaps if (s.manifest.get("daemon") or {}).get("state_changed")]
    warn = (f'<p class="note"><b>Advisory:</b> the daemon changed the store while collecting '
            f"{_e(', '.join(changed))}.</p>" if changed else "")
    return (f"<h1>overlay2 leak report: {_e(m.get('host'))}</h1><p class=\"sub\">snapper {_e(__version__)} · "
            f"what leaked under {_e(m.get('data_root'))}/overlay2, when, by which mechanism, and why</p>"
            f'<section><dl class="meta">{dl}</dl>{warn}</section>')


def _cards(inv: Investigation) -> str:
    rec = {r["item"]: r for r in inv.last.reconciliation.to_pylist()}
    leaked = rec.get("leaked", {})
    rate = inv.history.rate
    per_day = rate.get("leaked_bytes_per_day")
    hours, why = series.fill_forecast(rate)
    not_df = (rec.get("not in docker system df") or {}).get("bytes")
    cards = [(human_bytes(leaked.get("bytes") or 0), f"leaked now in {leaked.get('dirs') or 0} dirs", True),
             (human_bytes((rec.get("overlay2 on disk") or {}).get("bytes")), "overlay2 on disk", False),
             (human_bytes(not_df) if not_df is not None else "n/a", "not in docker system df"
              if not_df is not None else "docker system df: not collected", False),
             (f"{human_bytes(per_day)}/day" if per_day is not None else "n/a", "leak rate (least squares)", False),
             (human_duration(hours * 3600) if hours is not None else "n/a",
              "until the filesystem is full" if hours is not None else why, hours is not None)]
    return '<div class="cards">' + "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{_e(v)}</b><span>{_e(k)}</span></div>'
        for v, k, bad in cards) + "</div>"


def _reconciliation(inv: Investigation) -> str:
    rec = inv.last.reconciliation.to_pylist()
    by = {r["item"]: r["bytes"] or 0 for r in rec}
    bar = split_bar([(v, by.get(v, 0), c) for v, c in VERDICT_COLOURS.items()], "verdict split")
    rows = [f"<td>{_e(r['item'])}</td>{_bytes_td(r['bytes'])}{_num_td(r['dirs'])}<td>{_e(r['note'])}</td>"
            for r in rec]
    return _section(f"Reconciliation of the last snapshot ({inv.snapshots[-1].path.name})",
                    _legend(list(VERDICT_COLOURS.items())) + bar
                    + _table(["item", ">bytes", ">dirs", "note"], rows, "rec"))


def _over_time(inv: Investigation) -> str:
    tl = inv.history.timeline.to_pylist()
    if len(tl) < 2:
        return _section("Disk use over time", '<p class="note">One snapshot: no time charts. Collect again later '
                        "(e.g. hourly from cron) and pass the series dir to see growth, the leak rate and a fill "
                        "forecast.</p>")
    times = [r["started_ns"] for r in tl]
    cols = {"live": "live_bytes", "in-flight": "in_flight_bytes", "unknown": "unknown_bytes", "leaked": "leaked_bytes"}
    area = stacked_area(times, [(v, VERDICT_COLOURS[v], [r[c] or 0 for r in tl]) for v, c in cols.items()],
                        "overlay2 bytes by verdict over time")
    mech = inv.mechanism_series()
    mech_area = (stacked_area(times, [(k, mechanism_colour(k), v) for k, v in mech.items()],
                              "leaked bytes by mechanism over time") if mech else '<p class="note">nothing leaked.</p>')
    return (_section("Disk use over time (overlay2, by verdict)", _legend(list(VERDICT_COLOURS.items())) + area)
            + _section("Leaked bytes by mechanism over time",
                       _legend([(k, mechanism_colour(k)) for k in mech]) + mech_area))


def _rate(inv: Investigation) -> str:
    rate, tl = inv.history.rate, inv.history.timeline.to_pylist()
    if rate.get("leaked_bytes_per_hour") is None:
        return _section("Leak rate and fill forecast",
                        '<p class="note">Needs two snapshots at different times.</p>')
    span_h = rate.get("span_hours") or 0
    hours, why = series.fill_forecast(rate)
    text = (f"<p>Leaked bytes grow by <b>{_e(human_bytes(rate['leaked_bytes_per_hour']))}/h</b> "
            f"(<b>{_e(human_bytes(rate['leaked_bytes_per_day']))}/day</b>), least squares over {len(tl)} snapshots "
            f"spanning {_e(human_duration(span_h * 3600))}. The filesystem grows by "
            f"{_e(human_bytes(rate.get('fs_used_bytes_per_hour')))}/h: "
            + (f"<b>full in {_e(human_duration(hours * 3600))}</b> (at {_e(rate.get('full_at'))})"
               if hours is not None else _e(why)) + ".</p>")
    if span_h < 24:
        text += ('<p class="note">The series spans less than a day: the rate and the forecast extrapolate a short '
                 "window and are rough.</p>")
    t = [float(r["started_ns"]) for r in tl]
    leaked = [float(r["leaked_bytes"] or 0) for r in tl]
    tm, lm, slope = sum(t) / len(t), sum(leaked) / len(leaked), rate["leaked_bytes_per_hour"] / 3.6e12
    fit_x = [t[0], t[-1]]
    if slope:  # start or end the line where it crosses zero: bytes are never negative
        zero = tm - lm / slope
        fit_x = [max(t[0], zero), t[-1]] if slope > 0 else [t[0], min(t[-1], zero)]
    fit = [max(0.0, lm + slope * (x - tm)) for x in fit_x]
    left = line_chart([("leaked", VERDICT_COLOURS["leaked"], t, leaked, False),
                       ("least-squares fit", "#1f2933", fit_x, fit, True)], "leaked bytes and fit")
    used = [float(r["fs_used_bytes"] or 0) for r in tl]
    total = float(tl[-1]["fs_total_bytes"] or 0)
    lines = [("filesystem used", VERDICT_COLOURS["live"], t, used, False)]
    if hours is not None:
        lines.append(("projection", "#b3263a", [t[-1], t[-1] + hours * 3.6e12], [used[-1], total], True))
    right = line_chart(lines, "filesystem use and forecast", hline=(f"size {human_bytes(total)}", total))
    return _section("Leak rate and fill forecast", text + '<div class="pair"><div><b>Leaked bytes</b> and the '
                    f'least-squares fit{left}</div><div><b>Filesystem used</b>'
                    f'{" and the projection to full" if hours is not None else ""}{right}'
                    "</div></div>")


def _mechanisms_now(inv: Investigation) -> str:
    last = len(inv.snapshots) - 1
    items = [(k, v[last], mechanism_colour(k)) for k, v in inv.mechanism_series().items() if v[last]]
    items.sort(key=lambda i: (-i[1], i[0]))
    body = hbars(items, "leaked bytes by mechanism") or '<p class="note">Nothing leaked in the last snapshot.</p>'
    return _section("Leaked bytes by mechanism (last snapshot)", body)


def _attr(a: dict[str, Any] | None, inv: Investigation) -> str:
    if not a or not a.get("source"):
        return '<span class="note">no reachable layer overlaps</span>' if a else ""
    pct = a.get("path_overlap_pct")
    content = a.get("content_overlap_pct")
    where = a.get("source_snap")
    snap = inv.snapshots[where].path.name if isinstance(where, int) and 0 <= where < len(inv.snapshots) else "?"
    return (f"{_e(a['source'])}<br><span class=\"note\">{_e(f'{pct:.0f} % of paths' if pct is not None else '')}"
            f"{_e(f', {content:.0f} % of content' if content is not None else '')} · like "
            f"{_id(a.get('source_layer'))} in {_e(snap)}</span>")


def _never(inv: Investigation) -> str:
    nr = inv.history.never_reachable.to_pylist()
    attr = inv.attribution()
    rows = [f"<td>{_id(r['layer_id'])}</td><td>{_chip(r['last_mechanism'])}</td>{_bytes_td(r['bytes'])}"
            f"{_num_td(r['files'])}<td class=\"mono nowrap\">{_stamp(r['first_seen'])}</td>"
            f"<td class=\"mono nowrap\">{_stamp(r['last_seen'])}</td>"
            f"{_num_td(r['snapshots_present'])}<td>{'yes' if r['present_at_end'] else 'gone'}</td>"
            f"<td>{_attr(attr.get(r['layer_id']), inv)}</td>" for r in nr]
    total = sum(r["bytes"] or 0 for r in nr)
    head = (f"<p>{len(nr)} dirs, <b>{_e(human_bytes(total))}</b>, appeared and were never reachable by any image, "
            "container or build record in consecutive snapshots spanning the grace window.</p>")
    return _section("Appeared and never became reachable", head + (_table(
        ["dir", "mechanism", ">bytes", ">files", "first seen", "last seen", ">snapshots", "at end", "attribution"],
        rows) if rows else '<p class="note">none.</p>'))


def _top_leaks(inv: Investigation) -> str:
    leaks = inv.last.leaks.to_pylist()
    attr = inv.attribution()
    rows = [f"<td>{_id(r['layer_id'])}</td>{_bytes_td(r['bytes'])}{_num_td(r['files'])}<td>{_chip(r['mechanism'])}"
            f"</td><td>{'yes' if r['self_heals'] else 'no'}</td><td class=\"mono nowrap\">"
            f"{_stamp(r['created'])}</td>"
            f"<td class=\"evidence\">{_e(r['evidence'])}</td><td>{_attr(attr.get(r['layer_id']), inv)}</td>"
            for r in leaks[:TOP_DIRS]]
    more = (f'<p class="note">and {len(leaks) - TOP_DIRS} smaller ones (snapper leaks lists all).</p>'
            if len(leaks) > TOP_DIRS else "")
    return _section(f"Top leaked dirs ({len(leaks)} in the last snapshot)", (_table(
        ["dir", ">bytes", ">files", "mechanism", "self-heals", "created", "evidence", "attribution"], rows)
        if rows else '<p class="note">No leaked dirs.</p>') + more)


def _rows_section(title: str, t: pa.Table, head: list[str], cell: Any, empty: str, limit: int = 50) -> str:
    rows = [cell(r) for r in t.to_pylist()[:limit]]
    return _section(title, _table(head, rows) if rows else f'<p class="note">{_e(empty)}</p>')


def _known_bugs(inv: Investigation) -> str:
    """Known engine bugs (snapper/data/known_bugs.csv) that apply to the engine of the last snapshot."""
    return _rows_section(
        "Known engine bugs that leak like this (last snapshot)", inv.last.known_bugs,
        ["bug", "engine", "applies", "fixed in", "mechanisms", ">leaked dirs", ">leaked bytes", "issue", "workaround"],
        lambda r: f"<td class=\"nowrap\">{_e(r['bug'])}</td><td>{_e(r['engine_version'])}</td>"
        f"<td>{_e(r['applies'] if r['applies'] == 'yes' else 'if in ' + r['affected'])}</td>"
        f"<td>{_e(r['fixed_in'])}</td>"
        f"<td>{''.join(_chip(m) for m in r['mechanisms'].split(';'))}</td>{_num_td(r['leaked_dirs'])}"
        f"{_bytes_td(r['leaked_bytes'])}<td class=\"mono\">{_e(known_bugs.short_ref(r['issue_url']))}</td>"
        f"<td class=\"evidence\">{_e(r['workaround'])}</td>",
        "no known bug of this list applies to this engine version and store.")


def _causes(inv: Investigation) -> str:
    """Leaked bytes by cause (daemon loss, operation, subject) when `snapper watch` rows sit beside the series."""
    if inv.history.causes is None:
        return ""
    return _rows_section(
        "Leaked bytes by cause (last snapshot, from snapper watch)", inv.history.causes,
        ["daemon lost at", "how", "operation", "subject", ">bytes", ">dirs"],
        lambda r: f"<td class=\"nowrap\">{_e(r['interrupted_at'])}</td><td>{_e(r['by'])}</td>"
        f"<td>{_e(r['operation'])}</td><td class=\"mono\">{_e(r['subject'])}</td>{_bytes_td(r['bytes'])}"
        f"{_num_td(r['dirs'])}", "nothing leaked.")


def _lists(inv: Investigation) -> str:
    h = inv.history
    pmax = max((r["bytes"] or 0 for r in h.prefixes.to_pylist()), default=0) or 1
    return (
        _rows_section("Leaked metadata (holds no dir of its own)", inv.last.metadata,
                      ["kind", "object", "detail", "self-heals", "dir"],
                      lambda r: f"<td class=\"nowrap\">{_e(r['kind'])}</td><td class=\"mono\">{_e(r['object'])}</td>"
                      f"<td class=\"evidence\">{_e(r['detail'])}</td><td>{'yes' if r['self_heals'] else 'no'}</td>"
                      f"<td>{_id(r['layer_id'])}</td>", "none.")
        + _rows_section("Duplicate content", h.duplicates, [">copies", ">entries", ">bytes each", ">wasted", "dirs"],
                        lambda r: f"{_num_td(r['copies'])}{_num_td(r['entries'])}{_bytes_td(r['bytes_each'])}"
                        f"{_bytes_td(r['wasted_bytes'])}<td>" + "".join(
                            f'<div><span class="chip" style="--c:{VERDICT_COLOURS.get(v, "#404040")}">{_e(v)}</span> '
                            f"<code>{_e(i)}</code></div>"
                            for i, v in zip(r["layer_ids"], r["verdicts"], strict=False)) + "</td>",
                        "no duplicate extractions.")
        + _rows_section("Top path prefixes of leaked content", h.prefixes, ["prefix", ">bytes", ">files", ">dirs"],
                        lambda r: f"<td class=\"mono\">{_e(r['prefix'])}</td><td class=\"num\" title=\""
                        f"{r['bytes'] or 0:,} bytes\">{_e(human_bytes(r['bytes']))}<span class=\"bar\" style=\"width:"
                        f"{(r['bytes'] or 0) / pmax * 120:.0f}px\"></span></td>{_num_td(r['files'])}"
                        f"{_num_td(r['dirs'])}", "nothing leaked.", 15))


def _explain(inv: Investigation) -> str:
    if inv.biggest is None or inv.explain is None:
        return _section("Explain", '<p class="note">Nothing leaked: nothing to explain.</p>')
    rows = [f"<th>{_e(r['section'])}</th><td class=\"mono\">{_e(r['detail'])}</td>" for r in inv.explain.to_pylist()]
    near = [r for r in inv.history.neighbours.to_pylist() if r["layer_id"] == inv.biggest]
    near_rows = [f"<td>{_e(r['kind'])}</td><td class=\"mono\">{_e(r['object'])}</td>{_num_td(r['seconds_from_dir'])}"
                 for r in near[:12]]
    if len(near) > 12:
        near_rows.append(f'<td colspan="3" class="note">and {len(near) - 12} more (snapper history lists all)</td>')
    cmd = f"snapper explain {inv.snapshots[-1].path} {inv.biggest}"
    return _section("Explain the biggest leak", f'<p><code>{_e(cmd)}</code></p>' + _table([], rows, "explain")
                    + (("<h2 style=\"margin-top:16px\">Created near it</h2>"
                        + _table(["kind", "object", ">seconds from the dir"], near_rows)) if near_rows else ""))


def render_html(inv: Investigation) -> str:
    m = inv.snapshots[-1].manifest
    body = (_header(inv) + _cards(inv) + _reconciliation(inv) + _over_time(inv) + _mechanisms_now(inv)
            + _known_bugs(inv) + _causes(inv) + _rate(inv) + _never(inv) + _top_leaks(inv) + _lists(inv)
            + _explain(inv))
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>snapper report: {_e(m.get('host'))}</title><style>{_CSS}</style>"
            f"<script>{_ERROR_RECORDER}</script></head>\n<body><main>{body}"
            f'<pre id="errors" hidden></pre><footer>snapper {_e(__version__)} · {len(inv.snapshots)} snapshot(s) · '
            "self-contained: no network, no external fonts or scripts</footer></main></body></html>\n")


def write_report(paths: str | Path | Sequence[str | Path], out: str | Path,
                 grace_s: int = verdict.DEFAULT_GRACE_S) -> Path:
    """Write the HTML report of snapshot dirs or series dirs to ``out`` atomically (0600, or the mode of the
    file it replaces: ``snapshot.output_mode``); returns the path."""
    target = check_target(out)
    return write_page(render_html(investigate(paths, grace_s)), target)


def check_target(out: str | Path) -> Path:
    """The report file to write: refused before any work when it is a directory or its directory is missing."""
    target = Path(out)
    if target.is_dir():
        raise OutputError(str(target), "is a directory", "give a file name, e.g. -o report.html")
    if not target.parent.is_dir():
        raise OutputError(str(target), "its directory does not exist", "create it or choose another -o path")
    return target


def write_page(page: str, target: Path) -> Path:
    """Write a page atomically: a temp file in the same dir, fsync'd, then renamed over the target."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise OutputError(str(target), f"cannot write the report: {e.strerror}",
                          "check that the directory exists and is writable") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
            f.flush()
            os.fsync(f.fileno())
        mode, gid = output_mode(target)
        os.chmod(tmp, mode)
        if gid >= 0:
            os.chown(tmp, -1, gid)
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(str(target), f"writing the report failed: {e.strerror or e}",
                          "free space or choose another -o path") from e
    return target
