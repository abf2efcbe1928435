"""diff / history / attribution on a series recorded from a real daemon while it leaked
(tests/data/series, made by tests/integration/test_series_real.py with SNAPPER_RECORD_SERIES)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from snapper import catalog, series
from snapper.cli import app
from snapper.render import to_csv_string
from snapper.snapshot import connect, find_snapshots

SERIES = Path(__file__).parent / "data" / "series"
SNAPS = sorted(p for p in SERIES.iterdir() if p.is_dir())
GOLDEN = Path(__file__).parent / "golden"
runner = CliRunner()


def test_series_is_found_in_time_order() -> None:
    found = find_snapshots([SERIES])
    assert [s.path.name for s in found] == [p.name for p in SNAPS] == ["s0", "s1", "s2", "s3", "s4"]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 4), st.integers(0, 4))
def test_diff_properties(a: int, b: int) -> None:
    ab = series.diff(SNAPS[a], SNAPS[b], 0)
    ba = series.diff(SNAPS[b], SNAPS[a], 0)
    ids = lambda t: sorted(t.column("layer_id").to_pylist())  # noqa: E731
    assert ids(ab.appeared) == ids(ba.vanished)
    assert ids(ab.vanished) == ids(ba.appeared)
    assert ids(ab.changed) == ids(ba.changed)
    assert ids(ab.newly_leaked) == ids(ba.leaks_gone)
    if a == b:
        assert ab.appeared.num_rows == ab.vanished.num_rows == ab.changed.num_rows == 0
        assert ab.newly_leaked.num_rows == 0 and ab.totals()["bytes_delta"] == 0


@pytest.mark.parametrize("name,params", [
    ("diff", {"old_snap": 1, "new_snap": 2, "grace_seconds": 0}),
    ("history", {"grace_seconds": 0}),
    ("known_bugs", {"grace_seconds": 0}),
    ("daemon_restarts", {}),
    ("history_timeline", {"grace_seconds": 0}),
    ("attribution", {"snap": -1, "grace_seconds": 0}),
    ("duplicates", {"snap": -1, "grace_seconds": 0}),
    ("leak_prefixes", {"snap": -1, "depth": 4, "grace_seconds": 0}),
])
def test_golden_series_queries(name: str, params: dict[str, object]) -> None:
    con = connect(find_snapshots([SERIES]))
    catalog.bind_views(con)
    got = to_csv_string(catalog.run(con, name, params))
    path = GOLDEN / f"series_{name}.csv"
    if os.environ.get("SNAPPER_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert got == path.read_text(), f"{name} differs from {path} (SNAPPER_UPDATE_GOLDEN=1 to accept)"


def test_diff_cli_json_contract_and_exit_code() -> None:
    res = runner.invoke(app, ["diff", str(SNAPS[1]), str(SNAPS[2]), "--grace", "0", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    for key in ("appeared", "vanished", "changed", "newly_leaked"):
        assert all({"layer_id", "bytes"} <= set(r) for r in doc[key])
    assert [r["new_mechanism"] for r in doc["newly_leaked"]] == ["buildkit-snapshot-without-record"]
    gate = runner.invoke(app, ["diff", str(SNAPS[1]), str(SNAPS[2]), "--grace", "0", "--exit-code", "-f", "json"])
    assert gate.exit_code == 3
    calm = runner.invoke(app, ["diff", str(SNAPS[3]), str(SNAPS[4]), "--grace", "0", "--exit-code", "-f", "json"])
    assert calm.exit_code == 0


def test_diff_layer_lists_files() -> None:
    d = series.diff(SNAPS[2], SNAPS[3], 0)
    changed = [r["layer_id"] for r in d.dirs.to_pylist() if r["change"] == "appeared"]
    res = runner.invoke(app, ["diff", str(SNAPS[2]), str(SNAPS[3]), "--layer", changed[0], "-f", "csv"])
    assert res.exit_code == 0 and "added" in res.stdout


def test_history_cli_json_contract() -> None:
    res = runner.invoke(app, ["history", str(SERIES), "--grace", "0", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["never_reachable"]
    assert all({"layer_id", "first_seen", "bytes"} <= set(r) for r in doc["never_reachable"])
    assert len(doc["snapshots"]) == 5


def test_history_refuses_mixed_hosts(tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(SNAPS[0], other)
    m = json.loads((other / "manifest.json").read_text())
    m["host"] = "another-host"
    (other / "manifest.json").write_text(json.dumps(m))
    res = runner.invoke(app, ["history", str(SNAPS[1]), str(other)])
    assert res.exit_code == 2 and "snapper: error:" in res.stderr


# --- issue 17: diff of the wrong pair --------------------------------------------------------------------

def _one_line(res: object, code: int) -> str:
    assert getattr(res, "exit_code") == code, getattr(res, "output")  # noqa: B009
    lines = getattr(res, "stderr").splitlines()  # noqa: B009
    assert len(lines) == 1 and lines[0].startswith("snapper: error: "), lines
    return str(lines[0])


def test_diff_of_the_same_snapshot_is_a_usage_error(tmp_path: Path) -> None:
    import shutil

    assert "same snapshot" in _one_line(runner.invoke(app, ["diff", str(SNAPS[1]), str(SNAPS[1])]), 2)
    shutil.copytree(SNAPS[1], tmp_path / "copy")  # a copy is the same collect
    assert "same snapshot" in _one_line(runner.invoke(app, ["diff", str(SNAPS[1]), str(tmp_path / "copy")]), 2)


def test_diff_in_reverse_order_is_put_in_time_order_and_says_so() -> None:
    forward = runner.invoke(app, ["diff", str(SNAPS[1]), str(SNAPS[2]), "--grace", "0", "-f", "json"])
    reverse = runner.invoke(app, ["diff", str(SNAPS[2]), str(SNAPS[1]), "--grace", "0", "-f", "json"])
    assert forward.exit_code == reverse.exit_code == 0 and forward.stderr == ""
    assert reverse.stderr == (f"note: {SNAPS[2]} was collected after {SNAPS[1]}: showing the changes from "
                              f"{SNAPS[1]} to {SNAPS[2]}\n")
    assert json.loads(reverse.stdout) == json.loads(forward.stdout)


def test_diff_of_other_hosts_or_data_roots_needs_force() -> None:
    from snapper.demo import sample_path

    res = runner.invoke(app, ["diff", str(sample_path()), str(SNAPS[4]), "-f", "json"])
    line = _one_line(res, 2)
    assert "the snapshots come from different " in line and "--force" in line and res.stdout == ""
    forced = runner.invoke(app, ["diff", str(sample_path()), str(SNAPS[4]), "-f", "json", "--force"])
    assert forced.exit_code == 0 and json.loads(forced.stdout)["appeared"]


def test_diff_layer_prefix_of_one_dir_in_both_snapshots() -> None:
    d = series.diff(SNAPS[2], SNAPS[3], 0)
    both = [r["layer_id"] for r in d.dirs.to_pylist() if r["change"] in ("changed", "unchanged")
            and len(r["layer_id"]) >= 64]
    prefix = next(p for p in (lid[:6] for lid in both)
                  if sum(x.startswith(p) for x in d.dirs.column("layer_id").to_pylist()) == 1)
    res = runner.invoke(app, ["diff", str(SNAPS[2]), str(SNAPS[3]), "--layer", prefix, "-f", "csv"])
    assert res.exit_code == 0, res.output


def test_daemon_restarts_from_recorded_start_times(tmp_path: Path) -> None:
    """A start time that changes between two snapshots is a restart even when the pid is reused."""
    import shutil

    dirs = []
    for i, started in enumerate([1_000, 1_000, 2_000]):
        d = tmp_path / f"s{i}"
        shutil.copytree(SNAPS[i], d)
        m = json.loads((d / "manifest.json").read_text())
        m["daemon"].update({"started_ns": started, "pids": [42]})
        (d / "manifest.json").write_text(json.dumps(m))
        dirs.append(d)
    h = series.history([tmp_path], 0)
    assert h.restarts.column("restarted_since_previous").to_pylist() == [None, False, True]
    assert h.causes is None  # no snapper watch rows beside the series
