"""Contract tests for every queries/*.sql and golden outputs on the real demo sample snapshot."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import duckdb
import pytest

from snapper import catalog
from snapper.collect import CollectOptions, collect
from snapper.demo import sample_path
from snapper.render import to_csv_string
from snapper.snapshot import connect, open_snapshot

GOLDEN = Path(__file__).parent / "golden"
QUERIES = sorted(catalog.catalog())
# one parameter set per query for the golden files (explain needs a dir of the sample)
GOLDEN_PARAMS: dict[str, dict[str, object]] = {
    "leaks": {"grace_seconds": 0}, "verdicts": {"grace_seconds": 0}, "leaked_metadata": {"grace_seconds": 0},
    "reconciliation": {"grace_seconds": 0}, "known_bugs": {"grace_seconds": 0},
}


@pytest.fixture(scope="module")
def empty_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emptyroot")
    (root / "overlay2" / "l").mkdir(parents=True)
    out = tmp_path_factory.mktemp("snaps") / "empty"
    collect(CollectOptions(root=str(root), out=str(out), api=False, jobs=1))
    return out


def test_every_query_has_a_complete_header() -> None:
    assert {"edges", "reach", "verdicts", "leaks", "leaked_metadata", "reconciliation", "explain"} <= set(QUERIES)
    for name in QUERIES:
        q = catalog.get(name)
        assert q.name == q.path.stem
        assert q.description and q.why
        assert "now()" not in q.sql.lower() and "current_timestamp" not in q.sql.lower()
        tail = q.body().lower().rsplit("from final", 1)
        assert len(tail) == 2 and "order by" in tail[1], f"{name}: must end with SELECT ... FROM final ORDER BY"
        for p in q.params:
            assert f"getvariable('{p.name}')" in q.sql or any(
                f"getvariable('{p.name}')" in catalog.get(r).sql for r in q.requires), f"{name}: {p.name} unused"


@pytest.mark.parametrize("name", QUERIES)
def test_query_runs_on_an_empty_snapshot(name: str, empty_snapshot: Path) -> None:
    con = connect(open_snapshot(empty_snapshot))
    catalog.bind_views(con)
    params = {"layer_id": "l"} if name == "explain" else None
    table = catalog.run(con, name, params)
    # per-snapshot summaries have rows even for an empty store; the l/ dir has a verdict
    if name not in ("reconciliation", "explain", "verdicts", "history", "history_timeline", "history_rate",
                    "diff", "known_bugs", "daemon_restarts"):
        assert table.num_rows == 0, name


def check_golden(snapshot: Path, name: str, params: dict[str, object], path: Path) -> None:
    """The query's CSV on the snapshot equals the golden file (SNAPPER_UPDATE_GOLDEN=1 writes it)."""
    con = connect(open_snapshot(snapshot))
    catalog.bind_views(con)
    got = to_csv_string(catalog.run(con, name, params))
    if os.environ.get("SNAPPER_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert path.exists(), f"no golden file {path}: run with SNAPPER_UPDATE_GOLDEN=1 and review the diff"
    assert got == path.read_text(), f"{name} differs from {path} (SNAPPER_UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize("name", sorted(GOLDEN_PARAMS))
def test_golden_output_on_the_demo_sample(name: str) -> None:
    check_golden(sample_path(), name, GOLDEN_PARAMS[name], GOLDEN / f"{name}.csv")


def test_demo_sample_holds_the_four_provoked_leaks() -> None:
    con = connect(open_snapshot(sample_path()))
    catalog.bind_views(con)
    rows = list(csv.DictReader(io.StringIO(to_csv_string(catalog.run(con, "leaks", {"grace_seconds": 0})))))
    mechanisms = sorted(r["mechanism"] for r in rows)
    assert mechanisms == sorted(["interrupted-image-delete", "interrupted-image-delete", "interrupted-image-delete",
                                 "interrupted-layer-create", "orphan-container-mount", "orphan-container-mount",
                                 "buildkit-snapshot-without-record"])
    assert sorted(r["self_heals"] for r in rows if r["mechanism"] == "interrupted-image-delete") == [
        "False", "False", "True"]


def test_every_query_runs_verbatim_in_duckdb_after_set_variable(empty_snapshot: Path) -> None:
    """What a user pastes into the duckdb shell: the views, SET VARIABLE, then the file as it is."""
    con = duckdb.connect()
    snap = open_snapshot(empty_snapshot)
    from snapper.snapshot import view_statements

    for stmt in [*view_statements(snap), *catalog.derived_view_statements()]:
        con.execute(stmt)
    for name in QUERIES:
        q = catalog.get(name)
        for qq in [*catalog.view_order([name]), q]:
            for p in qq.params:
                con.execute(f"SET VARIABLE {p.name} = {p.default}")
        con.execute(q.path.read_text()).fetchall()


def test_unknown_param_is_a_usage_error(empty_snapshot: Path) -> None:
    from snapper.errors import UsageError

    con = connect(open_snapshot(empty_snapshot))
    catalog.bind_views(con)
    with pytest.raises(UsageError):
        catalog.run(con, "leaks", {"nope": 1})


def test_every_query_runs_verbatim_in_the_duckdb_shell(tmp_path: Path) -> None:
    """The real `duckdb` CLI (PyPI duckdb-cli): `snapper views` output, SET VARIABLE, then the file as is."""
    import shutil
    import subprocess

    from typer.testing import CliRunner

    from snapper.cli import app

    exe = shutil.which("duckdb")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("duckdb CLI missing (pip install duckdb-cli)")
        pytest.skip("duckdb CLI missing (pip install duckdb-cli)")
    res = CliRunner().invoke(app, ["views", str(sample_path())])
    assert res.exit_code == 0, res.output
    (tmp_path / "bind.sql").write_text(res.stdout)
    for name in QUERIES:
        q = catalog.get(name)
        sets = []
        for qq in [*catalog.view_order([name]), q]:
            for p in qq.params:
                value = "'" + "ba01ba24476e" + "'" if p.name == "layer_id" else p.default
                sets.append(f"SET VARIABLE {p.name} = {value};")
        script = tmp_path / f"{name}.sql"
        script.write_text("\n".join(sets) + "\n" + q.path.read_text())
        out = subprocess.run([exe, "-init", str(tmp_path / "bind.sql"), "-csv", "-c", f".read {script}"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "Error" not in out.stderr, f"{name}: {out.stderr[-800:]}"
        assert out.stdout.strip(), f"{name}: no output"


def test_readme_query_catalogue_is_generated_from_headers() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("<!-- queries:begin -->\n", 1)[1].split("<!-- queries:end -->", 1)[0]
    assert section == catalog.markdown(), "regenerate from snapper.catalog.markdown()"


@pytest.mark.parametrize("name", ["attribution", "duplicates", "leak_prefixes", "leak_neighbours"])
def test_snap_minus_one_is_the_newest_snapshot(name: str) -> None:
    """run() hands DuckDB the newest snapshot's number for snap = -1 (so it can skip the other snapshots'
    files); the answer is the one the SQL gives for -1 in the duckdb shell, and the one for that number."""
    from snapper.snapshot import find_snapshots

    series = Path(__file__).parent / "data" / "series"
    snaps = find_snapshots([series])
    con = connect(snaps)
    catalog.bind_views(con)
    newest = catalog.run(con, name, {"snap": len(snaps) - 1})
    assert catalog.run(con, name, {"snap": -1}) == newest == catalog.run(con, name)
    catalog.set_params(con, catalog.get(name), {"snap": -1})  # the SQL alone, as the duckdb shell runs it
    assert con.sql(catalog.get(name).body()).to_arrow_table() == newest


CTR_SAMPLE = Path(__file__).parent / "data" / "ctr_sample"  # collected from tests/data/ctr_root
CTR_GOLDEN: dict[str, dict[str, object]] = {
    "ctr_leases": {}, "ctr_reach": {}, "ctr_verdicts": {"grace_seconds": 0}, "leaks": {"grace_seconds": 0},
    "leaked_metadata": {"grace_seconds": 0}, "ctr_history": {"grace_seconds": 0},
    "ctr_diff": {"old_snap": 0, "new_snap": 0, "grace_seconds": 0},
    "reconciliation": {"grace_seconds": 0}, "known_bugs": {"grace_seconds": 0},
    "ctr_explain": {"store": str(Path("/work/main/tests/data/ctr_root")), "name": "3", "grace_seconds": 0},
}


@pytest.mark.parametrize("name", sorted(CTR_GOLDEN))
def test_golden_output_on_the_containerd_sample(name: str) -> None:
    """tests/data/ctr_root is a real dockerd 26.1 containerd store (meta.db and the snapshotter's metadata.db
    as the engine wrote them; dirs and blobs reduced to markers) plus a dir without a record and a blob
    without metadata; collected without its docker root, so no container or BuildKit record owns a lease."""
    check_golden(CTR_SAMPLE, name, CTR_GOLDEN[name], GOLDEN / f"ctr_{name.removeprefix('ctr_')}.csv")
