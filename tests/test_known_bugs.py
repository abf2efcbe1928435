"""The known-bugs table and queries/known_bugs.sql: version ranges, stores and mechanism names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from snapper import known_bugs, mechanisms, verdict
from snapper.cli import app
from snapper.demo import sample_path

SERIES_S4 = Path(__file__).parent / "data" / "series" / "s4"  # a real dockerd 20.10.24+dfsg1, engine API read
CTR_SAMPLE = Path(__file__).parent / "data" / "ctr_sample"


def test_every_row_names_known_mechanisms_of_its_store_and_a_real_range() -> None:
    by_name = {m.name: m for m in mechanisms.MECHANISMS}
    rows = known_bugs.rows()
    assert {"buildkit-ensurelayer-race", "docker-export-rw-layer", "half-created-rw-layer",
            "c8d-pull-lease-no-expiry", "c8d-orphaned-snapshots"} <= {r.bug for r in rows}
    for r in rows:
        assert r.store in ("overlay2", "containerd")
        for m in r.mechanisms:
            assert m in by_name and by_name[m].store == r.store, (r.bug, m)
        assert r.issue_url.startswith("https://github.com/")
        assert r.fixed_in or r.bug == "c8d-orphaned-snapshots"  # only the open one has no fix


def _with_version(tmp_path: Path, src: Path, version: str | None) -> Path:
    dst = tmp_path / (version or "none")
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["engine"] = {} if version is None else {**m.get("engine", {}), "engine_version": version}
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _applying(snap: Path) -> dict[str, tuple[str, str]]:
    t = verdict.known_bugs(snap, 0)
    return {r["bug"]: (r["applies"], r["fixed_in"]) for r in t.to_pylist()}


@pytest.mark.parametrize("version,expected", [
    # distribution suffixes and the BuildKit race's two fixed branches (23.0.11, 25.0.5; 24.0 never fixed)
    ("20.10.24+dfsg1", {"buildkit-ensurelayer-race": "23.0.11", "orphaned-overlay2-layers": "29.1.3",
                        "half-created-rw-layer": "29.1.4"}),
    ("23.0.11", {"orphaned-overlay2-layers": "29.1.3", "half-created-rw-layer": "29.1.4"}),
    ("24.0.9", {"buildkit-ensurelayer-race": "25.0.5", "docker-export-rw-layer": "28.0.0",
                "orphaned-overlay2-layers": "29.1.3", "half-created-rw-layer": "29.1.4"}),
    ("25.0.4", {"buildkit-ensurelayer-race": "25.0.5", "docker-export-rw-layer": "28.0.0",
                "orphaned-overlay2-layers": "29.1.3", "half-created-rw-layer": "29.1.4"}),
    ("26.1.5", {"docker-export-rw-layer": "28.0.0", "orphaned-overlay2-layers": "29.1.3",
                "half-created-rw-layer": "29.1.4"}),
    ("27.5.1", {"docker-export-rw-layer": "28.0.0", "orphaned-overlay2-layers": "29.1.3",
                "half-created-rw-layer": "29.1.4"}),
    ("v28.0.0", {"orphaned-overlay2-layers": "29.1.3", "half-created-rw-layer": "29.1.4"}),
    ("29.1.3", {"half-created-rw-layer": "29.1.4"}),
    ("29.1.4", {}),
    ("29.10.0", {}),  # numeric, not text, comparison
])
def test_version_ranges_on_the_overlay2_sample(tmp_path: Path, version: str, expected: dict[str, str]) -> None:
    got = _applying(_with_version(tmp_path, sample_path(), version))
    assert got == {b: ("yes", f) for b, f in expected.items()}


def test_unknown_version_lists_every_bug_of_the_store_as_possible(tmp_path: Path) -> None:
    for version in (None, "master-dockerproject-2026"):
        got = _applying(_with_version(tmp_path, sample_path(), version))
        assert set(got) == {r.bug for r in known_bugs.rows() if r.store == "overlay2"}
        assert {a for a, _ in got.values()} == {"if the version is in range"}
        assert got["buildkit-ensurelayer-race"][1] == "23.0.11, 25.0.5"


def test_containerd_store_bugs_by_version(tmp_path: Path) -> None:
    assert _applying(_with_version(tmp_path, CTR_SAMPLE, "26.1.5")) == {
        "c8d-pull-lease-no-expiry": ("yes", "27.4.0"), "c8d-orphaned-snapshots": ("yes", "not fixed")}
    assert _applying(_with_version(tmp_path, CTR_SAMPLE, "29.1.3")) == {
        "c8d-orphaned-snapshots": ("yes", "not fixed")}


def test_matching_leaks_are_counted_by_mechanism(tmp_path: Path) -> None:
    t = verdict.known_bugs(_with_version(tmp_path, sample_path(), "26.1.5"), 0)
    leaks = verdict.leaks(sample_path(), 0, 0).to_pylist()
    for r in t.to_pylist():
        mine = [x for x in leaks if x["mechanism"] in r["mechanisms"].split(";")]
        assert (r["leaked_dirs"], r["leaked_bytes"]) == (len(mine), sum(x["bytes"] for x in mine))
    assert any(r["leaked_dirs"] for r in t.to_pylist())


def test_leaks_command_names_the_bugs_of_the_engine() -> None:
    res = CliRunner().invoke(app, ["leaks", str(SERIES_S4), "--grace", "0", "--verbose"])
    assert res.exit_code == 0, res.output
    assert "known engine bugs" in res.output
    assert "engine 20.10.24+dfsg1 is affected" in res.output and "moby/moby/issues/46136" in res.output
    assert "docker-export-rw-layer" not in res.output  # 24.0-27.5 only


def test_short_ref_uses_the_docs_shorthand() -> None:
    assert known_bugs.short_ref("https://github.com/moby/moby/issues/46136") == "moby#46136"
    assert known_bugs.short_ref("https://github.com/docker/compose/issues/10481") == "docker/compose#10481"
    assert known_bugs.short_ref("") == ""
