"""Prometheus textfile metrics: parsed by prometheus_client's exposition parser, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from snapper import metrics
from snapper.cli import app
from snapper.demo import sample_path
from snapper.snapshot import open_snapshot


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        assert fam.type == "gauge" and fam.documentation
        out[fam.name] = [(s.labels, s.value) for s in fam.samples]
    return out


def test_metrics_parse_and_match_the_verdicts() -> None:
    fams = families(metrics.render(open_snapshot(sample_path()), 0))
    by_verdict = {lab["verdict"]: v for lab, v in fams["snapper_bytes"]}
    assert by_verdict["leaked"] == 81453056 and by_verdict["in-flight"] == 0
    mech = {lab["mechanism"]: v for lab, v in fams["snapper_leaked_dirs"]}
    assert mech["interrupted-image-delete"] == 3 and mech["buildkit-snapshot-without-record"] == 1
    assert mech["stray-dir"] == 0
    assert sum(v for _, v in fams["snapper_leaked_bytes"]) == by_verdict["leaked"]
    assert fams["snapper_daemon_running"][0][1] == 0


def test_label_values_are_escaped() -> None:
    line = metrics._line("x", 1, {"data_root": 'a"b\\c\nd'})
    fams = families("# HELP x h\n# TYPE x gauge\n" + line + "\n")
    assert fams["x"][0][0]["data_root"] == 'a"b\\c\nd'


def test_cli_writes_atomically(tmp_path: Path) -> None:
    out = tmp_path / "snapper.prom"
    res = CliRunner().invoke(app, ["metrics", str(sample_path()), "-o", str(out), "--grace", "0"])
    assert res.exit_code == 0, res.output
    assert families(out.read_text())["snapper_overlay2_bytes"][0][1] > 0
    assert os.listdir(tmp_path) == ["snapper.prom"]  # no temp file left
    assert out.stat().st_mode & 0o777 == 0o600  # private like the snapshot (was 0644)
    os.chown(out, -1, 65534)
    out.chmod(0o640)  # made readable for node_exporter once: kept by every rewrite
    assert CliRunner().invoke(app, ["metrics", str(sample_path()), "-o", str(out)]).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o640 and out.stat().st_gid == 65534


def test_unwritable_target_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["metrics", str(sample_path()), "-o", str(tmp_path / "no" / "such" / "x.prom")])
    assert res.exit_code == 1
    assert res.stderr.startswith("snapper: error:") and res.stderr.count("\n") == 1


@pytest.mark.parametrize("bad", ["", "-", "1x"])
def test_bad_grace(bad: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["metrics", str(sample_path()), "-o", str(tmp_path / "m"), "--grace", bad])
    assert res.exit_code == 2


def test_collect_writes_metrics(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "overlay2" / "l").mkdir(parents=True)
    (root / "overlay2" / ("a" * 64) / "diff").mkdir(parents=True)
    prom = tmp_path / "snapper.prom"
    res = CliRunner().invoke(app, ["collect", "--root", str(root), "--out", str(tmp_path / "s"), "--no-api", "-q",
                                   "--metrics", str(prom), "--grace", "0"])
    assert res.exit_code == 0, res.output
    fams = families(prom.read_text())
    assert {lab["mechanism"]: v for lab, v in fams["snapper_leaked_dirs"]}["stray-dir"] == 0
    assert {lab["verdict"]: v for lab, v in fams["snapper_dirs"]}["leaked"] == 1
