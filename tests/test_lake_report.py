"""snapper.lake_report: the fleet page, from the same lake fixture as tests/test_lake.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from snapper import lake, lake_report
from snapper.cli import app
from snapper.render import human_bytes
from snapper.snapshot import find_snapshots
from tests.test_lake import REPO, fleet, pushed  # noqa: F401 (fixtures)

runner = CliRunner()


def test_page_shows_the_fleet(pushed: lake.Lake, tmp_path: Path) -> None:  # noqa: F811
    f = lake_report.fleet(pushed)
    page = lake_report.render_html(f)
    for host in ("ci-01", "ci-02", "ci-03", "ci 04/x"):
        assert f"<td>{host}</td>" in page
    leaked = sum(f.leaks.column("bytes").to_pylist())
    assert f"<b>{human_bytes(leaked)}</b><span>leaked now in {f.leaks.num_rows} dirs</span>" in page
    assert "<b>4</b><span>hosts in the lake</span>" in page and "<b>1</b><span>engine version changes</span>" in page
    # the upgrade row, the mechanisms by engine version, a top prefix, the chart of leaked bytes over time
    assert re.search(r"<td>ci-02</td><td>20\.10\.24\+dfsg1</td><td>24\.0\.7</td>", page)
    assert 'aria-label="leaked bytes per host over time"' in page and page.count("<polyline") == 4
    assert 'aria-label="leaked bytes by engine and mechanism"' in page and "interrupted-image-delete" in page
    assert "<code>ml-layer0/d0000</code>" in page
    # self-contained: no URL is fetched
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page) and "default-src 'none'" in page


def test_strings_from_the_lake_are_escaped(fleet: Path, tmp_path: Path) -> None:  # noqa: F811
    evil = '<img src=x onerror="alert(1)">'
    snap = tmp_path / "evil" / "sample"
    shutil.copytree(fleet / "h0" / "sample", snap)
    m = json.loads((snap / "manifest.json").read_text())
    m["host"] = evil
    (snap / "manifest.json").write_text(json.dumps(m))
    lk = lake.open_lake(str(tmp_path / "lake"))
    lake.push(lk, find_snapshots([snap]))
    page = lake_report.render_html(lake_report.fleet(lk))
    assert evil not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_cli_writes_the_page(pushed: lake.Lake, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "fleet.html"
    res = runner.invoke(app, ["lake", "report", "--lake", pushed.root, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout == f"{out}\n" and out.read_text().startswith("<!DOCTYPE html>")
    assert out.stat().st_mode & 0o777 == 0o600 and [p.name for p in tmp_path.iterdir()] == ["fleet.html"]
    res = runner.invoke(app, ["lake", "report", "--lake", pushed.root, "-o", str(tmp_path)])
    assert res.exit_code == 1 and "is a directory" in res.stderr and len(res.stderr.splitlines()) == 1
    res = runner.invoke(app, ["lake", "report", "--lake", str(tmp_path / "nolake"), "-o", str(out)])
    assert res.exit_code == 1 and "not a snapper lake" in res.stderr


def test_readme_lake_report_command(pushed: lake.Lake, tmp_path: Path) -> None:  # noqa: F811
    readme = (REPO / "README.md").read_text()
    section = readme.split("### `snapper lake push|query", 1)[1].split("\n### ", 1)[0]
    cmd = next(ln.split() for ln in section.splitlines() if ln.startswith("snapper lake report"))
    args = [pushed.root if a == "/srv/lake" else str(tmp_path / a) if a.endswith(".html") else a for a in cmd[1:]]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "fleet.html").read_text().count("<section") >= 5
