"""Cause inference: which daemon loss and operation left a leaked dir."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from snapper import cause, mechanisms
from snapper.cause import Loss, infer, iso, parse_iso
from snapper.schema import WATCH_EVENTS
from snapper.watch import read_events

T0 = 1_796_000_000_000_000_000  # an instant in 2026
S = 1_000_000_000


def _loss(t: int, kind: str = "daemon-death", flight: tuple[str, ...] = ()) -> Loss:
    return Loss(T0 + t * S, kind, 100 + t, T0 + t * S - S // 2, flight, "snapper watch")


def test_every_mechanism_has_its_operations() -> None:
    assert set(cause.MECHANISM_OPERATIONS) == set(mechanisms.NAMES)
    for ops in cause.MECHANISM_OPERATIONS.values():
        assert set(ops) <= set(cause.OPERATIONS)


def test_iso_round_trip_to_the_millisecond() -> None:
    assert parse_iso(iso(T0)) == T0
    assert parse_iso("2026-11-28T00:16:50.659557Z") == 1795825010659557000
    assert parse_iso(None) is None and parse_iso("yesterday") is None


def test_the_first_loss_after_birth_with_a_matching_command_wins() -> None:
    losses = [_loss(-60, flight=("load /old.tar",)), _loss(10, flight=("rmi big1:1",)),
              _loss(20, flight=("load /tmp/big2.tar",)), _loss(30, "daemon-stop")]
    c = infer("interrupted-layer-create", iso(T0), losses, [], recorder=True)
    assert (c["interrupted_at"], c["interrupted_by"], c["operation"], c["subject"], c["confidence"]) == (
        iso(T0 + 20 * S), "death", "load", "/tmp/big2.tar", "high")
    d = infer("interrupted-image-delete", iso(T0 - 100 * S), losses, [], recorder=True)
    assert (d["interrupted_at"], d["operation"], d["subject"]) == (iso(T0 + 10 * S), "rmi", "big1:1")


def test_a_clean_stop_is_named_as_such_never_as_a_crash() -> None:
    c = infer("orphan-container-mount", iso(T0), [_loss(5, "daemon-stop")], [], recorder=True)
    assert c["interrupted_by"] == "stop" and c["operation"] == "unknown" and c["confidence"] == "low"
    assert any("not a crash" in e for e in c["evidence"])


def test_without_recorder_the_next_daemon_start_bounds_the_loss() -> None:
    c = infer("interrupted-image-create", iso(T0), [], [T0 - 50 * S, T0 + 70 * S], recorder=False)
    assert c["interrupted_at"] is None and c["lost_before"] == iso(T0 + 70 * S)
    assert c["operation"] == "unknown" and c["confidence"] == "low"
    assert any(e.startswith("best effort, no recorder") for e in c["evidence"])
    one_op = infer("ctr-orphan-writable-snapshot", iso(T0), [], [], recorder=False)
    assert one_op["operation"] == "create" and one_op["confidence"] == "none"


def test_add_causes_and_group_by_cause(tmp_path: Path) -> None:
    rows = [{"time_ns": T0 + 20 * S, "kind": "daemon-death", "pid": 7, "last_alive_ns": T0 + 19 * S,
             "in_flight": ["load /x.tar"]},
            {"time_ns": T0 + 40 * S, "kind": "daemon-start", "pid": 8, "daemon_started_ns": T0 + 39 * S}]
    events = pa.Table.from_pylist(rows, schema=WATCH_EVENTS.schema)
    leaks = pa.table({"layer_id": ["a", "b", "c"], "bytes": [10, 20, 5],
                      "mechanism": ["interrupted-layer-create", "interrupted-image-create", "stray-dir"],
                      "created": [iso(T0), iso(T0 + S), iso(T0 + 100 * S)]})
    got = cause.add_causes(leaks, events, [{"daemon": {"started_ns": T0 + 39 * S}}])
    causes = [json.loads(c) for c in got.column("cause").to_pylist()]
    assert [c["operation"] for c in causes] == ["load", "load", "unknown"]
    groups = cause.by_cause(got).to_pylist()
    assert groups[0] == {"interrupted_at": iso(T0 + 20 * S), "by": "death", "operation": "load",
                         "subject": "/x.tar", "bytes": 30, "dirs": 2}


def test_events_dir_defaults_to_the_snapshots_parent(tmp_path: Path) -> None:
    snap = tmp_path / "series" / "s0"
    snap.mkdir(parents=True)
    assert cause.events_dir_for(snap, None) is None
    (tmp_path / "series" / "events").mkdir()
    assert cause.events_dir_for(snap, None) == (tmp_path / "series").resolve()
    assert read_events(tmp_path / "series").num_rows == 0
    with pytest.raises(Exception, match="no such directory"):
        cause.events_dir_for(snap, tmp_path / "missing")


def test_a_layer_pinned_by_an_orphan_mount_names_both_steps() -> None:
    losses = [_loss(10, flight=("create bb:base",))]
    deletes = [(T0 - 5 * S, "sha256:old"), (T0 + 60 * S, "sha256:bb")]
    c = infer("pinned-by-orphan-mount", iso(T0 - 100 * S), losses, [], True, deletes)
    assert (c["operation"], c["subject"], c["interrupted_at"]) == ("create", "bb:base", iso(T0 + 10 * S))
    assert c["cascade"] == {"operation": "rmi", "at": iso(T0 + 60 * S), "subject": "sha256:bb"}
    assert "cascade" not in infer("orphan-container-mount", iso(T0), losses, [], True, deletes)


def test_leaks_and_explain_cli_with_recorder_rows(tmp_path: Path) -> None:
    """`leaks --format json` gets a cause column from events/ beside the snapshot; `explain` cause rows."""
    import shutil

    from typer.testing import CliRunner

    from snapper import verdict
    from snapper.cli import app
    from snapper.demo import sample_path
    from snapper.watch import Recorder

    snap = tmp_path / "series" / "s0"
    shutil.copytree(sample_path(), snap)
    leaks = verdict.leaks(snap, 0, 0).to_pylist()
    newest = max(parse_iso(r["created"]) or 0 for r in leaks)
    rec = Recorder("/x.sock", tmp_path / "series", tmp_path / "pid", clock=lambda: newest + 2 * S)
    rec.add(kind="daemon-death", pid=9, last_alive_ns=newest + S, in_flight=["load /srv/big.tar", "rmi old:1"])
    rec.flush()
    runner = CliRunner()
    res = runner.invoke(app, ["leaks", str(snap), "--grace", "0", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    causes = {r["layer_id"]: json.loads(r["cause"]) for r in rows}
    by_mech = {r["mechanism"]: causes[r["layer_id"]] for r in rows}
    assert by_mech["interrupted-layer-create"]["operation"] == "load"
    assert by_mech["interrupted-layer-create"]["subject"] == "/srv/big.tar"
    assert by_mech["interrupted-image-delete"]["operation"] == "rmi"
    assert {c["interrupted_at"] for c in causes.values()} == {iso(newest + 2 * S)}
    table = runner.invoke(app, ["leaks", str(snap), "--grace", "0"])
    assert table.exit_code == 0 and "cause (which daemon loss" in table.output and "death at" in table.output
    layer = next(r["layer_id"] for r in rows if r["mechanism"] == "interrupted-layer-create")
    ex = runner.invoke(app, ["explain", str(snap), layer[:12], "--grace", "0", "--format", "json"])
    assert ex.exit_code == 0, ex.output
    sections = {r["section"]: r["detail"] for r in json.loads(ex.stdout)}
    assert json.loads(sections["cause"])["operation"] == "load" and "docker load" in sections["cause evidence"]
