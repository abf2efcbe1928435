"""snapper report: the HTML page from the real series and the real demo sample, hostile names escaped, atomic
write, and the page opened in headless Chromium (screenshot, no page errors, no console messages)."""

from __future__ import annotations

import html
import os
import re
import shutil
import stat
import struct
import subprocess
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from snapper import demo, verdict
from snapper.cli import app
from snapper.errors import OutputError, SnapshotError
from snapper.metrics import MECHANISMS
from snapper.report import (
    MECHANISM_COLOURS,
    Investigation,
    byte_ticks,
    human_duration,
    investigate,
    mechanism_colour,
    write_report,
)

SERIES = Path(__file__).resolve().parent / "data" / "series"
SAMPLE = demo.sample_path()
HOSTILE_DIR = '<img src=x onerror="document.title=1">'
HOSTILE_PATH = "<script>document.title=2</script>"
HOSTILE_HOST = "<b>host</b>&amp;"


@pytest.fixture(scope="module")
def series_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(SERIES, tmp_path_factory.mktemp("rep") / "series.html", 0)


@pytest.fixture(scope="module")
def series_inv() -> Investigation:
    return investigate(SERIES, 0)


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report([SAMPLE], tmp_path_factory.mktemp("rep") / "sample.html", 0)


def _rewrite(snap: Path, old: str, new: str) -> None:
    """Replace a substring in every string value of every table (keeps the snapshot self-consistent)."""
    def fix(col: pa.ChunkedArray) -> pa.ChunkedArray:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return pc.replace_substring(col, old, new)
        if pa.types.is_dictionary(t) and pa.types.is_string(t.value_type):
            return pc.replace_substring(col.cast(t.value_type), old, new).dictionary_encode().cast(t)
        if pa.types.is_list(t) and pa.types.is_string(t.value_type):
            arr = col.combine_chunks()
            values = pc.replace_substring(arr.values, old, new)
            return pa.chunked_array([pa.ListArray.from_arrays(arr.offsets, values, mask=arr.is_null())])
        return col

    for f in snap.glob("*.parquet"):
        t = pq.read_table(f)
        t = pa.table([fix(c) for c in t.columns], schema=t.schema)
        pq.write_table(t, f)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo sample with its biggest leaked dir, a file path and the host renamed to HTML."""
    snap = tmp_path_factory.mktemp("hostile") / "snap"
    shutil.copytree(SAMPLE, snap)
    for f in snap.iterdir():
        f.chmod(0o644)
    biggest = str(verdict.leaks(SAMPLE, 0, 0)["layer_id"][0])
    _rewrite(snap, biggest, HOSTILE_DIR)
    _rewrite(snap, "ml-layer0", HOSTILE_PATH)
    manifest = (snap / "manifest.json").read_text().replace('"host": "vm"', f'"host": "{HOSTILE_HOST}"')
    (snap / "manifest.json").write_text(manifest)
    return write_report(snap, snap.parent / "hostile.html", 0), biggest


def test_series_report_tells_the_story(series_report: Path, series_inv: Investigation) -> None:
    page = series_report.read_text()
    leaks = verdict.leaks(SERIES / "s4", 0, 0).to_pylist()
    for text in ("overlay2 leak report: vm", "/tmp/snp-650jawt8/root", "5: 2026-11-28 00:27:42 UTC",
                 "dockerd 20.10.24", "Reconciliation of the last snapshot (s4)", "not in docker system df",
                 "Disk use over time", "Leaked bytes by mechanism over time", "Leak rate and fill forecast",
                 "Appeared and never became reachable", "Top leaked dirs (3 in the last snapshot)",
                 "Leaked metadata", "write-set-2379937137", "Known engine bugs that leak like this",
                 "moby#46136", "Duplicate content", "ml-layer0/d0000",
                 "100 % of paths", f"snapper explain {SERIES / 's4'} {leaks[0]['layer_id']}",
                 "no fill forecast: needs at least 3 snapshots spanning at least 1 h (have 5 over 0.001 h)"):
        assert html.escape(text, quote=True) in page, text
    for r in leaks:  # every leak with its mechanism chip and its size, right-aligned
        assert r["layer_id"] in page and html.escape(r["evidence"], quote=True) in page
        assert f'<td class="num" title="{r["bytes"]:,} bytes">' in page
    sources = [a["source"] for a in series_inv.attribution().values() if a["source"]]
    assert sources and all(html.escape(src, quote=True) in page for src in sources)  # e.g. "dup:1 layer 2/2"
    assert page.count('<svg class="chart"') == 6  # verdicts, mechanisms over time, mechanisms now, rate x2, split
    assert "2 dirs, <b>1.2 MiB</b>, appeared and were never reachable" in page


def test_investigation_adds_up(series_inv: Investigation) -> None:
    inv = series_inv
    by_mech = inv.mechanism_series()
    for r in inv.history.timeline.to_pylist():  # leaked bytes by mechanism sum to the timeline's leaked bytes
        assert sum(v[r["snap"]] for v in by_mech.values()) == r["leaked_bytes"]
    assert inv.biggest == str(inv.last.leaks["layer_id"][0]) and inv.explain is not None
    assert inv.engine().startswith("dockerd 20.10.24")  # s3 was collected with the daemon down: no engine info
    assert investigate(SERIES, 3600).history.timeline.column("leaked_bytes").to_pylist()[-1] == 0  # all young


def test_axis_and_duration_formatting() -> None:
    assert byte_ticks(3_452_928) == [(0.0, "0 MiB"), (1048576.0, "1 MiB"), (2097152.0, "2 MiB"),
                                     (3145728.0, "3 MiB"), (4194304.0, "4 MiB")]
    assert byte_ticks(0)[-1][0] >= 1 and byte_ticks(270553174016)[-1][1] == "300 GiB"
    assert [human_duration(s) for s in (4, 600, 23_400, 864_000)] == ["4 s", "10 min", "6.5 h", "10.0 days"]


def test_mechanism_colours_agree_across_charts_and_tables(series_report: Path) -> None:
    page = series_report.read_text()
    mechanisms = {r["mechanism"] for r in verdict.leaks(SERIES / "s4", 0, 0).to_pylist()}
    assert len(mechanisms) == 3 and len({mechanism_colour(m) for m in mechanisms}) == 3
    for m in mechanisms:
        used = set(re.findall(rf'fill="(#[0-9a-f]{{6}})"[^>]*><title>{re.escape(m)}(?::[^<]*)?</title>', page))
        used |= set(re.findall(rf'--c:(#[0-9a-f]{{6}})">{re.escape(m)}<', page))
        assert used == {mechanism_colour(m)}, (m, used)
    assert mechanism_colour("some-future-name") == mechanism_colour("some-future-name")
    assert set(MECHANISM_COLOURS) == set(MECHANISMS)  # every mechanism the verdicts can give has its colour


def test_single_snapshot_report_says_there_are_no_time_charts(sample_report: Path) -> None:
    page = sample_report.read_text()
    assert "One snapshot: no time charts" in page
    assert "Needs two snapshots at different times" in page
    assert "by verdict over time" not in page
    biggest = str(verdict.leaks(SAMPLE, 0, 0)["layer_id"][0])
    assert f"snapper explain {SAMPLE} {biggest}" in page
    assert "Top leaked dirs (7 in the last snapshot)" in page
    assert "<b>77.7 MiB</b>" in page and ">80.0 KiB</td>" in page  # never-reachable total; wasted by duplicates
    # computed from the verdicts, with or without the engine API (the sample was collected with --no-api)
    assert "not in docker system df" in page and "docker system df: not collected" not in page


def test_page_is_self_contained(series_report: Path, sample_report: Path) -> None:
    for p in (series_report, sample_report):
        page = p.read_text()
        assert not re.search(r"https?://|<link|<img|<iframe|@import|url\(|src=", page, re.I)
        assert page.count("<script>") == 1  # the error recorder only
        assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_hostile_names_are_escaped(hostile_report: tuple[Path, str]) -> None:
    path, _ = hostile_report
    page = path.read_text()
    for raw in (HOSTILE_DIR, HOSTILE_PATH, HOSTILE_HOST, "<img src=x", "<script>document"):
        assert raw not in page, raw
    assert html.escape(HOSTILE_DIR, quote=True) in page  # the biggest leak, now with a hostile name
    assert f"snapper explain {html.escape(str(path.parent / 'snap'))} {html.escape(HOSTILE_DIR)}" in page
    assert html.escape(HOSTILE_PATH) + "/d0000" in page  # a top path prefix
    assert "overlay2 leak report: " + html.escape(HOSTILE_HOST) in page


def test_write_report_replaces_atomically_private_by_default(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert write_report(str(SAMPLE), out, 0) == out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # lists what the 0600 snapshot lists (was 0644)
    out.write_text("old")
    out.chmod(0o640)  # an admin shared it once: a rewrite keeps that
    assert write_report(str(SAMPLE), out, 0) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp file left
    with pytest.raises(OutputError, match="directory does not exist"):
        write_report(SAMPLE, tmp_path / "missing" / "r.html", 0)
    with pytest.raises(OutputError, match="is a directory"):
        write_report(SAMPLE, tmp_path, 0)
    with pytest.raises(SnapshotError):
        write_report(tmp_path / "nothing-here", tmp_path / "x.html", 0)


def test_cli_report(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.html"
    res = runner.invoke(app, ["report", str(SAMPLE), "-o", str(out), "--grace", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == str(out) and "Top leaked dirs (7 in the last snapshot)" in out.read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "none"), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 1 and res.stderr.startswith("snapper: error: ") and len(res.stderr.splitlines()) == 1
    res = runner.invoke(app, ["report", str(SERIES), "-o", str(out), "--grace", "soon"], catch_exceptions=False)
    assert res.exit_code == 2


# --- in a real browser --------------------------------------------------------------------------------------

def _chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)")


def _png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the filtered scanlines of a PNG (zlib only: enough to tell a blank image)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 4
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            bpp = {2: 3, 6: 4, 0: 1, 4: 2}.get(colour, 4) * depth // 8
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * bpp
    return width, height, [raw[i:i + stride] for i in range(0, len(raw), stride)]


def _open_in_chromium(page: Path, tmp: Path) -> tuple[str, str, Path]:
    shot = tmp / f"{page.stem}.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / ('profile-' + page.stem)}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", "--window-size=1400,3000", "--dump-dom", page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, res.stderr, shot


@pytest.mark.parametrize("which", ["series_report", "sample_report", "hostile_report"])
def test_report_renders_in_headless_chromium(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    got = request.getfixturevalue(which)
    page = got[0] if isinstance(got, tuple) else got
    dom, log, shot = _open_in_chromium(page, tmp_path)
    errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert errors is not None, dom[-2000:]
    assert errors.group(1) == "", errors.group(1)  # no script error, blocked load or CSP violation
    console = [line for line in log.splitlines() if re.search(r":CONSOLE[:(]", line)]
    assert console == [], console
    assert "Explain the biggest leak" in dom
    assert "<img" not in dom and "document.title=2</script>" not in dom  # nothing injected
    assert shot.stat().st_size > 20_000
    width, height, rows = _png_rows(shot.read_bytes())
    assert (width, height) == (1400, 3000)
    assert len(set(rows)) > 200, "the screenshot is (nearly) a single colour"


def test_no_fill_forecast_from_seconds_of_history(series_report: Path) -> None:
    """The series spans 5 s: a fill date from it was noise in red ("4.4 days until the filesystem is full")."""
    page = series_report.read_text()
    assert "until the filesystem is full" not in page and "full in " not in page
    assert '<div class="card"><b>n/a</b><span>no fill forecast: needs at least 3 snapshots' in page
    assert "and the projection to full" not in page  # no line to the filesystem size in the chart


def test_fill_forecast_with_enough_history() -> None:
    from snapper.series import fill_forecast

    rate = {"snapshots": 4, "span_hours": 6.0, "reliable": True, "hours_until_full": 30.5, "full_at": "x"}
    assert fill_forecast(rate) == (30.5, "filesystem full in 30.5 h (at x)")
    assert fill_forecast({**rate, "reliable": False})[0] is None
    assert fill_forecast({**rate, "hours_until_full": None})[1] == "filesystem use not growing: no fill date"


_OVERFLOW_CHECK = """<script>window.addEventListener('load',function(){var bad=[];
document.querySelectorAll('section').forEach(function(s){var r=s.getBoundingClientRect();
s.querySelectorAll('table').forEach(function(t){var b=t.getBoundingClientRect();
if(b.right>r.right+1){bad.push('overflow: '+s.querySelector('h2').textContent+' by '+Math.round(b.right-r.right));}
});});var p=document.getElementById('errors');if(bad.length){p.textContent+=bad.join('\\n');p.hidden=false;}});
</script></body>"""


@pytest.mark.parametrize("which", ["series_report", "sample_report"])
def test_no_table_overflows_its_card(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    page = request.getfixturevalue(which)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _OVERFLOW_CHECK, 1))
    dom, _, _ = _open_in_chromium(probe, tmp_path)
    errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert errors is not None and errors.group(1) == "", errors.group(1) if errors else dom[-2000:]
