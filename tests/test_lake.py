"""The fleet lake on a local dir and on a real S3-compatible server (moto's server mode on 127.0.0.1).

The fleet: hosts made from the real collected sample snapshots (copies whose manifest names another host).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from typer.testing import CliRunner

from snapper import lake
from snapper.catalog import queries_dir
from snapper.cli import app
from snapper.errors import LakeError
from snapper.render import render_table
from snapper.schema import LAKE_VERSION
from snapper.snapshot import Snapshot, find_snapshots
from tests.spark import require_pyspark

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
# host -> the real snapshots it is made of
FLEET = {
    "ci-01": ["snapper/demo/sample"],
    "ci-02": [f"tests/data/series/s{i}" for i in range(5)],
    "ci-03": ["tests/data/ctr_sample"],
    "ci 04/x": ["tests/data/series/s3", "snapper/demo/sample"],  # a host name that needs escaping in a path
}
# (host, snapshot) -> engine version: ci-02 is upgraded from 20.10.24+dfsg1 between s2 and s3
UPGRADED = {("ci-02", "s3"): "24.0.7", ("ci-02", "s4"): "24.0.7"}
TABLES = ("leaks", "reconciliation", "errors", "prefixes", "snapshots")
QUERIES = ["engine_upgrade", "leak_bytes", "leak_rate", "leaks", "mechanisms", "top_prefixes"]
runner = CliRunner()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fleet/<host>/<snapshot> copies of the real samples, the host rewritten in manifest.json."""
    base = tmp_path_factory.mktemp("fleet")
    for i, (host, dirs) in enumerate(FLEET.items()):
        for d in dirs:
            dst = base / f"h{i}" / Path(d).name
            shutil.copytree(REPO / d, dst)
            m = json.loads((dst / "manifest.json").read_text())
            m["host"] = host
            if (host, dst.name) in UPGRADED:
                m["engine"]["engine_version"] = UPGRADED[host, dst.name]
            (dst / "manifest.json").write_text(json.dumps(m))
    return base


@pytest.fixture(scope="module")
def pushed(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> lake.Lake:
    """A local lake holding the whole fleet (pushed once for the read-only tests)."""
    lk = lake.open_lake(str(tmp_path_factory.mktemp("pushed") / "lake"))
    lake.push(lk, all_snaps(fleet))
    return lk


def snaps_of(fleet: Path, *hosts: int) -> list[Snapshot]:
    return [s for h in hosts for s in find_snapshots([fleet / f"h{h}"])]


def all_snaps(fleet: Path) -> list[Snapshot]:
    return snaps_of(fleet, *range(len(FLEET)))


class Wrapped(pafs.FileSystemHandler):
    """A pyarrow filesystem that delegates to another and records opens; optionally fails the n-th write."""

    def __init__(self, inner: pafs.FileSystem, fail_write: int | None = None) -> None:
        self.inner = inner
        self.opened: list[str] = []
        self.writes = 0
        self.fail_write = fail_write

    def get_type_name(self) -> str:
        return "wrapped"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(paths)  # type: ignore[no-any-return]

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.inner.get_file_info(selector)  # type: ignore[no-any-return]

    def create_dir(self, path: str, recursive: bool) -> None:
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("not here")

    def delete_file(self, path: str) -> None:
        self.inner.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.inner.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.inner.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        self.opened.append(path)
        return self.inner.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        self.opened.append(path)
        return self.inner.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any = None) -> Any:
        self.writes += 1
        if self.fail_write is not None and self.writes >= self.fail_write:
            raise OSError(f"injected network failure writing {path}")
        return self.inner.open_output_stream(path)

    def open_append_stream(self, path: str, metadata: Any = None) -> Any:
        raise OSError("not here")


def wrapped(base: lake.Lake, fail_write: int | None = None) -> tuple[lake.Lake, Wrapped]:
    h = Wrapped(base.fs, fail_write)
    return lake.Lake(pafs.PyFileSystem(h), base.root, base.url, base.rename), h


def listing(lk: lake.Lake) -> dict[str, tuple[int, bytes]]:
    """Every file of the lake, hidden ones included: path -> (size, content)."""
    out = {}
    for info in lk.fs.get_file_info(pafs.FileSelector(lk.root, recursive=True)):
        if info.type == pafs.FileType.File:
            with lk.fs.open_input_stream(info.path) as f:
                out[info.path[len(lk.root):]] = (info.size, f.read())
    return out


def csv_of(table: pa.Table) -> str:
    import io

    buf = io.StringIO()
    render_table(table, "csv", buf)
    return buf.getvalue()


# --- the S3 server ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS variables pointing at the moto server; returns a fresh bucket's lake URL."""
    import uuid

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    bucket = f"fleet-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(endpoint_override=s3_server.split("://")[1], scheme="http", region="us-east-1",
                           access_key="testing", secret_key="testing", allow_bucket_creation=True)
    fs.create_dir(bucket)
    return f"s3://{bucket}/lake"


# --- tests ------------------------------------------------------------------------------------------------

def test_layout_and_content(fleet: Path, tmp_path: Path) -> None:
    lk = lake.open_lake(str(tmp_path / "lake"))
    res = lake.push(lk, snaps_of(fleet, 0, 3))
    assert [r.host for r in res] == ["ci-01", "ci 04/x", "ci 04/x"]
    names = sorted(listing(lk))
    assert "/_snapper_lake.json" in names
    assert "/leaks/host=ci-01/date=2026-11-28/sample.parquet" in names
    assert "/snapshots/host=ci%2004%2Fx/date=2026-11-28/s3.parquet" in names
    assert not any(n.rsplit("/", 1)[1].startswith(".") for n in names)
    con = lake.bind(lk)
    rows = con.sql("SELECT host, snapshot, count(*), sum(bytes)::BIGINT FROM leaks GROUP BY ALL ORDER BY ALL")
    assert rows.fetchall() == [("ci 04/x", "s3", 3, 1314816), ("ci 04/x", "sample", 7, 81453056),
                               ("ci-01", "sample", 7, 81453056)]
    # the leaks rows are the snapshot's own `leaks` query with the default grace
    from snapper import catalog
    from snapper.snapshot import connect, open_snapshot

    own = connect(open_snapshot(REPO / "snapper/demo/sample"))
    catalog.bind_views(own)
    expect = catalog.run(own, "leaks").select(["layer_id", "bytes", "mechanism"]).to_pylist()
    got = con.sql("SELECT layer_id, bytes, mechanism FROM leaks WHERE host = 'ci-01' "
                  "ORDER BY bytes DESC, layer_id").to_arrow_table().to_pylist()
    assert got == expect
    snap = con.sql("SELECT host, date, engine_version, data_root FROM snapshots WHERE snapshot = 's3'").fetchall()
    assert snap == [("ci 04/x", "2026-11-28", None, json.loads((fleet / "h3/s3/manifest.json").read_text())
                     ["data_root"])]
    assert con.sql("SELECT item, bytes FROM reconciliation WHERE host = 'ci-01' AND item = 'leaked'").fetchall() \
        == [("leaked", 81453056)]


def test_files_only_with_the_flag(fleet: Path, tmp_path: Path) -> None:
    lk = lake.open_lake(str(tmp_path / "lake"))
    snap = snaps_of(fleet, 0)
    lake.push(lk, snap)
    assert not any(n.startswith("/files/") for n in listing(lk))
    res = lake.push(lk, snap, files=True)
    assert [(w.table, w.status) for w in res[0].files] == [
        ("files", "written"), ("leaks", "unchanged"), ("reconciliation", "unchanged"), ("errors", "unchanged"),
        ("prefixes", "unchanged"), ("snapshots", "unchanged")]
    n = lake.bind(lk).sql("SELECT count(*) FROM files WHERE host = 'ci-01'").fetchall()[0][0]
    assert n == snap[0].manifest["rows"]["files"] == 20146


def test_push_twice_changes_nothing(fleet: Path, pushed: lake.Lake) -> None:
    lk = pushed
    before = listing(lk)
    mtimes = {i.path: i.mtime_ns for i in lk.fs.get_file_info(pafs.FileSelector(lk.root, recursive=True))}
    res = lake.push(lk, all_snaps(fleet))
    assert {w.status for r in res for w in r.files} == {"unchanged"}
    assert listing(lk) == before
    assert {i.path: i.mtime_ns for i in lk.fs.get_file_info(pafs.FileSelector(lk.root, recursive=True))} == mtimes


def test_interrupted_push_resumes(fleet: Path, tmp_path: Path) -> None:
    base = lake.open_lake(str(tmp_path / "lake"))
    snaps = snaps_of(fleet, 0)
    # write 1 is the lake marker, write 2 the leaks table: the network fails on the third write
    broken, _ = wrapped(base, fail_write=3)
    with pytest.raises(LakeError, match="injected network failure"):
        lake.push(broken, snaps)
    part = tmp_path / "lake/reconciliation/host=ci-01/date=2026-11-28"
    # a push killed between write and rename leaves a hidden temp file
    part.mkdir(parents=True, exist_ok=True)
    (part / f".sample.parquet{lake._TMP}deadbeef").write_bytes(b"PAR1 half a file")
    assert sorted(n for n in listing(base) if not n.startswith("/_")) == [
        "/leaks/host=ci-01/date=2026-11-28/sample.parquet",
        f"/reconciliation/host=ci-01/date=2026-11-28/.sample.parquet{lake._TMP}deadbeef"]
    # a snapshot without its snapshots row is not in the lake for the queries (and the temp file is not read)
    assert lake.run(base, "leaks").num_rows == 0
    assert lake.bind(base).sql("SELECT count(*) FROM reconciliation").fetchall() == [(0,)]
    res = lake.push(base, snaps)
    assert [(w.table, w.status) for w in res[0].files] == [
        ("leaks", "unchanged"), ("reconciliation", "written"), ("errors", "written"), ("prefixes", "written"),
        ("snapshots", "written")]
    assert res[0].cleaned == 1
    clean = lake.open_lake(str(tmp_path / "clean"))
    lake.push(clean, snaps)
    assert listing(base) == listing(clean)
    assert lake.run(base, "leaks").num_rows == 7


def test_other_lake_version_is_refused(fleet: Path, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    root.mkdir()
    (root / lake.MARKER).write_text(json.dumps({"format": "snapper-lake", "lake_version": LAKE_VERSION + 1}))
    lk = lake.open_lake(str(root))
    with pytest.raises(LakeError, match=f"lake version {LAKE_VERSION + 1}"):
        lake.push(lk, snaps_of(fleet, 0))
    assert sorted(p.name for p in root.iterdir()) == [lake.MARKER]
    res = runner.invoke(app, ["lake", "query", "leaks", "--lake", str(root)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"snapper: error: {root}: lake version {LAKE_VERSION + 1}")
    assert "Traceback" not in res.output


def test_not_a_lake(tmp_path: Path) -> None:
    res = runner.invoke(app, ["lake", "query", "leaks", "--lake", str(tmp_path)])
    assert res.exit_code == 1 and "not a snapper lake" in res.output and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["lake", "query", "leaks", "--lake", "ftp://x/y"])
    assert res.exit_code == 2 and "unsupported scheme" in res.output


def test_partition_pruning(pushed: lake.Lake) -> None:
    base = pushed
    lk, h = wrapped(base)
    one = lake.run(lk, "leaks", {"host": "ci-01"})
    data = [p for p in h.opened if not p.endswith(lake.MARKER)]
    assert sorted(data) == sorted(f"{base.root}/{t}/host=ci-01/date=2026-11-28/sample.parquet"
                                  for t in ("snapshots", "leaks"))
    assert set(one.column("host").to_pylist()) == {"ci-01"} and one.num_rows == 7
    h.opened.clear()
    series = lake.run(lk, "leak_bytes", {"host": "ci-02"})
    data = [p for p in h.opened if not p.endswith(lake.MARKER)]
    assert len(data) == 10 and all("/host=ci-02/" in p for p in data), data
    assert series.column("snapshot").to_pylist() == ["s0", "s1", "s2", "s3", "s4"]
    h.opened.clear()
    lake.run(lk, "leaks")
    hosts = {p.split("/host=")[1].split("/")[0] for p in h.opened if "/host=" in p}
    assert hosts == {"ci-01", "ci-02", "ci-03", "ci%2004%2Fx"}


@pytest.mark.parametrize("name", QUERIES)
def test_golden_fleet_queries(pushed: lake.Lake, name: str) -> None:
    got = csv_of(lake.run(pushed, name))
    path = GOLDEN / f"fleet_{name}.csv"
    if os.environ.get("SNAPPER_UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert path.exists(), f"no golden file {path}: run with SNAPPER_UPDATE_GOLDEN=1 and review the diff"
    assert got == path.read_text(), f"{name} differs from {path} (SNAPPER_UPDATE_GOLDEN=1 to accept)"


def test_fleet_queries_have_headers_and_stay_out_of_the_catalogue() -> None:
    from snapper import catalog

    qs = lake.fleet_queries()
    assert sorted(qs) == QUERIES
    for q in qs.values():
        assert q.path.parent == queries_dir() / "fleet" and q.description and q.why
        assert set(q.requires) <= {*TABLES, "files"}
    assert all(q.path.parent == queries_dir() for q in catalog.catalog().values())


def test_s3_push_query_idempotent_and_resumed(fleet: Path, s3_env: str, pushed: lake.Lake) -> None:
    lk = lake.open_lake(s3_env)  # endpoint and credentials from the standard AWS variables
    assert isinstance(lk.fs, pafs.S3FileSystem) and not lk.rename
    snaps = all_snaps(fleet)
    broken, _ = wrapped(lk, fail_write=4)
    with pytest.raises(LakeError, match="injected network failure"):
        lake.push(broken, snaps)
    assert len(listing(lk)) == 3  # marker, leaks and reconciliation of the first snapshot
    res = lake.push(lk, snaps)
    assert [w.status for w in res[0].files] == ["unchanged", "unchanged", "written", "written", "written"]
    first = listing(lk)
    res = lake.push(lk, snaps)
    assert {w.status for r in res for w in r.files} == {"unchanged"}
    assert listing(lk) == first
    assert listing(pushed) == first
    for name in QUERIES:
        assert csv_of(lake.run(lk, name)) == (GOLDEN / f"fleet_{name}.csv").read_text()
    counted, h = wrapped(lk)  # pruning on the object store too: one host's objects only
    assert lake.run(counted, "leaks", {"host": "ci-03"}).num_rows == 9
    assert sorted(p.split("/lake/", 1)[1] for p in h.opened if not p.endswith(lake.MARKER)) == [
        "leaks/host=ci-03/date=2026-12-08/ctr_sample.parquet",
        "snapshots/host=ci-03/date=2026-12-08/ctr_sample.parquet"]


def test_s3_cli(fleet: Path, s3_env: str, s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    res = runner.invoke(app, ["lake", "push", str(fleet / "h0"), str(fleet / "h2"), "--lake", s3_env,
                              "--s3-endpoint", s3_server])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert [ln.split(", 0 unchanged")[0] for ln in lines] == ["ci-01/sample: 5 written, 0 replaced",
                                                              "ci-03/ctr_sample: 5 written, 0 replaced"]
    res = runner.invoke(app, ["lake", "query", "leaks", "--lake", s3_env, "--s3-endpoint", s3_server,
                              "-p", "host=ci-03", "-f", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 9 and {r["host"] for r in rows} == {"ci-03"}
    assert sum(r["bytes"] for r in rows) == 131072


def test_readme_lake_commands_run(pushed: lake.Lake) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### `snapper lake push|query", 1)[1].split("\n### ", 1)[0]
    cmds = [ln.split() for ln in section.splitlines()
            if ln.startswith("snapper lake query") and "/srv/lake" in ln and "[" not in ln]
    assert len(cmds) == 2
    for cmd in cmds:
        args = [pushed.root if a == "/srv/lake" else a for a in cmd[1:]]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (cmd, res.output)
        assert any("ci-07" in a for a in cmd) or "interrupted-image-delete" in res.output


def test_spark_local_gives_the_same_rows(pushed: lake.Lake) -> None:
    pyspark = require_pyspark()
    try:
        for name in QUERIES:
            assert csv_of(lake.run_spark(pushed, name)) == (GOLDEN / f"fleet_{name}.csv").read_text(), name
        host = {"host": "ci 04/x"}  # a partition value that needs escaping in the path
        assert lake.run_spark(pushed, "leak_bytes", host).to_pylist() \
            == lake.run(pushed, "leak_bytes", host).to_pylist()
        res = runner.invoke(app, ["lake", "query", "leaks", "--lake", pushed.root, "--engine", "spark",
                                  "-p", "host=ci-01", "-f", "json"])
        assert res.exit_code == 0, res.output
        assert len(json.loads(res.output)) == 7
    finally:
        pyspark.sql.SparkSession.builder.getOrCreate().stop()


def test_a_different_file_is_replaced(fleet: Path, tmp_path: Path) -> None:
    lk = lake.open_lake(str(tmp_path / "lake"))
    snaps = snaps_of(fleet, 0)
    lake.push(lk, snaps)
    path = Path(lake.file_path(lk, "leaks", "ci-01", "2026-11-28", "sample"))
    import pyarrow.parquet as pq

    good = path.read_bytes()
    t = pq.read_table(path)
    pq.write_table(t.slice(0, 2).replace_schema_metadata(None), path)  # another content, no digests
    res = runner.invoke(app, ["lake", "push", str(fleet / "h0"), "--lake", str(tmp_path / "lake")])
    assert res.exit_code == 0 and res.output == "ci-01/sample: 0 written, 1 replaced, 4 unchanged, " \
        f"{len(good)} bytes\n", res.output
    assert path.read_bytes() == good
    assert lake.run(lk, "leaks").num_rows == 7


def test_s3_missing_bucket_is_one_line(fleet: Path, s3_env: str) -> None:
    url = "s3://no-such-bucket-x/lake"
    res = runner.invoke(app, ["lake", "push", str(fleet / "h0"), "--lake", url])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"snapper: error: {url}") and "Traceback" not in res.output


# --- collect --push and the README's systemd units ---------------------------------------------------------

def readme_units() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The ```ini blocks of the README's collect section: unit name -> section -> key -> values."""
    section = (REPO / "README.md").read_text().split("### `snapper collect", 1)[1].split("\n### ", 1)[0]
    units: dict[str, dict[str, dict[str, list[str]]]] = {}
    for block in section.split("```ini\n")[1:]:
        text = block.split("```", 1)[0]
        name = text.splitlines()[0].removeprefix("# ").rsplit("/", 1)[1]
        unit: dict[str, dict[str, list[str]]] = {}
        current: dict[str, list[str]] = {}
        for line in text.splitlines()[1:]:
            if line.startswith("[") and line.endswith("]"):
                current = unit.setdefault(line[1:-1], {})
            elif "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                current.setdefault(k, []).append(v)
        units[name] = unit
    return units


def test_readme_systemd_units_run(s3_env: str, s3_server: str, tmp_path: Path) -> None:
    import shlex
    import subprocess
    import sys

    from tests.synthetic import build_standard

    units = readme_units()
    assert sorted(units) == ["snapper-push.service", "snapper-push.timer"]
    service, timer = units["snapper-push.service"], units["snapper-push.timer"]
    assert service["Service"]["Type"] == ["oneshot"] and len(service["Service"]["ExecStart"]) == 1
    assert timer["Timer"]["OnCalendar"] == ["hourly"] and timer["Install"]["WantedBy"] == ["timers.target"]
    argv = shlex.split(service["Service"]["ExecStart"][0])
    assert argv[:2] == ["/usr/local/bin/snapper", "collect"]
    root = build_standard(tmp_path / "docker", odd=False).root
    before = sorted((p, p.lstat().st_mtime_ns) for p in root.rglob("*"))
    subs = {"/var/lib/docker": str(root), "/var/lib/snapper/snapshots": str(tmp_path / "series"),
            "s3://fleet/snapper": s3_env}
    assert set(subs) <= set(argv), argv
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.update(kv.split("=", 1) for kv in service["Service"]["Environment"])
    assert env["AWS_ENDPOINT_URL"] != s3_server
    env["AWS_ENDPOINT_URL"] = s3_server  # the unit's endpoint, pointed at the test's server
    for _ in range(2):  # the timer fires twice: a second snapshot (incremental), pushed too
        proc = subprocess.run([sys.executable, "-m", "snapper.cli", *(subs.get(a, a) for a in argv[1:])],
                              env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "" and len(proc.stdout.splitlines()) == 1, (proc.stdout, proc.stderr)
        snap = Path(proc.stdout.strip())
        assert snap.parent.parent == tmp_path / "series" and (snap / "manifest.json").exists()
    assert sorted((p, p.lstat().st_mtime_ns) for p in root.rglob("*")) == before  # read-only
    lk = lake.open_lake(s3_env)
    host = json.loads((snap / "manifest.json").read_text())["host"]
    got = lake.run(lk, "leak_bytes")
    assert got.column("host").to_pylist() == [host, host]
    assert got.column("snapshot").to_pylist() == sorted(p.name for p in snap.parent.iterdir())
    own = runner.invoke(app, ["leaks", str(snap), "-f", "json"])
    assert own.exit_code == 0, own.output
    assert sorted(r["layer_id"] for r in json.loads(own.output)) == sorted(
        lake.run(lk, "leaks").column("layer_id").to_pylist())


def test_collect_push_failure_keeps_the_snapshot(s3_env: str, tmp_path: Path) -> None:
    from tests.synthetic import build_standard

    root = build_standard(tmp_path / "docker", odd=False).root
    out = tmp_path / "snap"
    url = "s3://no-such-bucket-x/lake"
    res = runner.invoke(app, ["collect", "--root", str(root), "--out", str(out), "--no-api", "--jobs", "1",
                              "--push", url])
    assert res.exit_code == 1, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"snapper: error: {url}"), res.stderr
    assert f"rerun `snapper lake push {out} --lake {url}`" in err[0]
    assert (out / "manifest.json").exists() and res.stdout.startswith(f"snapshot {out}\n")
    res = runner.invoke(app, ["collect", "--root", str(root), "--out", str(tmp_path / "x"), "--files"])
    assert res.exit_code == 2 and "only used with --push" in res.stderr and not (tmp_path / "x").exists()
    res = runner.invoke(app, ["collect", "--root", str(root), "--out", str(tmp_path / "x"), "--push", "ftp://a/b"])
    assert res.exit_code == 2 and "unsupported scheme" in res.stderr and not (tmp_path / "x").exists()
    lk = str(tmp_path / "lake")
    res = runner.invoke(app, ["collect", "--root", str(root), "--out", str(tmp_path / "y"), "--no-api", "-q",
                              "--push", lk, "--files"])
    assert res.exit_code == 0 and res.stdout == f"{tmp_path / 'y'}\n", res.output
    assert lake.bind(lake.open_lake(lk)).sql("SELECT count(*) FROM files").fetchall()[0][0] \
        == json.loads((tmp_path / "y/manifest.json").read_text())["rows"]["files"]
