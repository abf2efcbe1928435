"""The fleet lake: every host's snapshots as small Parquet tables on a shared store, queried as one.

Layout (hive partitioning, readable by DuckDB, Spark, Trino, Athena)::

    <lake>/_snapper_lake.json                                   lake format and major version
    <lake>/<table>/host=<host>/date=<yyyy-mm-dd>/<snapshot>.parquet

Tables: ``leaks``, ``reconciliation``, ``errors``, ``prefixes`` (and ``files`` with ``--files``) per snapshot, then
``snapshots`` (its manifest facts) written last: a snapshot is in the lake once its ``snapshots`` file is, so
a push cut short leaves nothing a query sees. Every file carries in its footer the sha256 of its Arrow content
(``snapper.digest``) and of what it was computed from (``snapper.source``: manifest, table, versions): pushing
the same snapshot again reads only footers and writes nothing, and a rerun after a crash writes only what is
missing or different. Each file appears whole or not at all: locally it is written under a
hidden temp name in the same dir and renamed; on S3 an object appears only when its upload completes.

All I/O goes through ``pyarrow.fs`` (local paths and ``s3://bucket/prefix``); DuckDB reads the lake through
Arrow datasets registered as views, so no DuckDB extension is needed. Partition filters (``host = ...``) reach
the dataset scan: a query for one host opens only that host's files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from snapper import catalog
from snapper.errors import LakeError, UsageError
from snapper.schema import (
    LAKE_ERRORS,
    LAKE_FILES,
    LAKE_LEAKS,
    LAKE_PARTITIONS,
    LAKE_PREFIXES,
    LAKE_RECONCILIATION,
    LAKE_SNAPSHOTS,
    LAKE_TABLES,
    LAKE_VERSION,
    SCHEMA_MINOR,
    Table,
)

if TYPE_CHECKING:
    import duckdb

    from snapper.snapshot import Snapshot

MARKER = "_snapper_lake.json"
DIGEST_KEY = b"snapper.digest"  # sha256 of the file's Arrow content
SOURCE_KEY = b"snapper.source"  # sha256 of what it was computed from (see _source_digest)
_TMP = ".tmp-"
COMPACTED = "compacted"  # <lake>/compacted/<table>/host=<host>/<yyyy-mm>.parquet (see snapper.lake_compact)
MEMBERS_KEY = b"snapper.members"  # in a compacted file: {snapshot: [date, source digest, content digest]}
COMPACT_TABLES = ("leaks", "reconciliation", "errors", "prefixes", "snapshots")  # files stays per snapshot


@dataclass
class Lake:
    """A lake root on a pyarrow filesystem. ``rename`` is true where a rename is atomic (local disks)."""

    fs: pafs.FileSystem
    root: str
    url: str
    rename: bool = False

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.root else "/".join(parts)


def _s3(url: str, endpoint: str | None) -> Lake:
    u = urlparse(url)
    if not u.netloc:
        raise UsageError(f"--lake {url}", "no bucket", "use s3://bucket/prefix")
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # delayed open: a file smaller than a part goes up as one PutObject when closed (atomic, one round trip)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    kw: dict[str, Any] = {"allow_delayed_open": True, "region": region}
    if endpoint:
        e = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kw.update(endpoint_override=e.netloc, scheme=e.scheme or "https")
    try:
        fs = pafs.S3FileSystem(**kw)
    except (OSError, ValueError) as exc:
        raise LakeError(url, f"cannot set up S3 ({exc})", "check AWS_* variables and --s3-endpoint") from exc
    return Lake(fs, f"{u.netloc}/{u.path.strip('/')}".rstrip("/"), url)


def open_lake(url: str, s3_endpoint: str | None = None) -> Lake:
    """A lake URL: a local path (or file://...) or s3://bucket/prefix."""
    if url.startswith("s3://"):
        return _s3(url, s3_endpoint)
    if "://" in url and not url.startswith("file://"):
        raise UsageError(f"--lake {url}", "unsupported scheme", "use a local path or s3://bucket/prefix")
    try:
        fs, path = pafs.FileSystem.from_uri(url if "://" in url else str(Path(url).resolve()))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--lake {url}", str(exc), "use a local path or s3://bucket/prefix") from exc
    return Lake(fs, path, url, rename=True)


def _io(lake: Lake, what: str, exc: Exception) -> LakeError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return LakeError(f"{lake.url}: {what}", first, "check the lake URL, the endpoint and the credentials")


# --- schema version ----------------------------------------------------------------------------------------

def _read_marker(lake: Lake) -> dict[str, Any] | None:
    p = lake.path(MARKER)
    try:
        if lake.fs.get_file_info(p).type == pafs.FileType.NotFound:
            return None
        with lake.fs.open_input_stream(p) as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise _io(lake, MARKER, exc) from exc
    if not isinstance(data, dict) or data.get("format") != "snapper-lake":
        raise LakeError(f"{lake.url}/{MARKER}", "not a snapper lake marker", "point --lake at a snapper lake")
    return data


def check_version(lake: Lake, create: bool = False) -> None:
    """Refuse a lake of another major version; create the marker on first push."""
    marker = _read_marker(lake)
    if marker is None:
        if not create:
            raise LakeError(lake.url, f"not a snapper lake (no {MARKER})", "push snapshots with `snapper lake push`")
        body = json.dumps({"format": "snapper-lake", "lake_version": LAKE_VERSION, "minor": SCHEMA_MINOR},
                          sort_keys=True).encode()
        _put(lake, lake.path(MARKER), body)
        return
    if marker.get("lake_version") != LAKE_VERSION:
        raise LakeError(lake.url, f"lake version {marker.get('lake_version')}, this snapper reads "
                        f"{LAKE_VERSION}", "use a snapper of that version or a new lake URL")


def _put(lake: Lake, path: str, body: bytes) -> None:
    """Write one file whole or not at all."""
    parent = path.rsplit("/", 1)[0]
    try:
        if lake.rename:
            lake.fs.create_dir(parent, recursive=True)
            name = path.rsplit("/", 1)[1]
            tmp = f"{parent}/.{name}{_TMP}{uuid.uuid4().hex}"
            try:
                with lake.fs.open_output_stream(tmp) as f:
                    f.write(body)
                lake.fs.move(tmp, path)
            except BaseException:
                _delete_quietly(lake, tmp)
                raise
        else:  # object stores: the object appears when its (single or multipart) upload completes
            with lake.fs.open_output_stream(path) as f:
                f.write(body)
    except OSError as exc:
        raise _io(lake, path, exc) from exc


def _delete_quietly(lake: Lake, path: str) -> None:
    with contextlib.suppress(OSError):
        lake.fs.delete_file(path)


def _clean_partials(lake: Lake, parent: str, name: str) -> int:
    """Temp files an earlier push of this file left behind (killed between write and rename)."""
    if not lake.rename:
        return 0
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    except OSError:
        return 0
    stale = [i.path for i in infos if i.base_name.startswith(f".{name}{_TMP}")]
    for p in stale:
        _delete_quietly(lake, p)
    return len(stale)


# --- push --------------------------------------------------------------------------------------------------

@dataclass
class Written:
    table: str
    path: str
    status: str  # written | replaced | unchanged
    rows: int
    bytes: int


@dataclass
class PushResult:
    snapshot: str
    host: str
    files: list[Written] = field(default_factory=list)
    cleaned: int = 0


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as w:
        w.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _conform(t: Table, data: pa.Table, snapshot_id: str) -> pa.Table:
    data = data.append_column("snapshot", pa.array([snapshot_id] * data.num_rows, pa.string())) \
        if "snapshot" not in data.column_names else data
    return data.select(t.column_names).cast(t.schema)


def _date(manifest: Mapping[str, Any]) -> str:
    utc = manifest.get("started_utc")
    if isinstance(utc, str) and re.match(r"^\d{4}-\d{2}-\d{2}", utc):
        return utc[:10]
    raise LakeError(str(manifest.get("host")), "manifest has no started_utc", "collect the snapshot again")


def _manifest_row(snap: Snapshot) -> dict[str, Any]:
    m = snap.manifest
    engine, daemon, statvfs = ({} if not isinstance(m.get(k), dict) else m[k] for k in ("engine", "daemon", "statvfs"))
    return {"snapshot": snap.path.name, "started_ns": m.get("started_ns"), "started_utc": m.get("started_utc"),
            "engine_version": engine.get("engine_version"), "data_root": m.get("data_root"),
            "daemon_running": daemon.get("running"), "daemon_started_utc": daemon.get("started_utc"),
            "fs_used_bytes": statvfs.get("used_bytes"), "fs_total_bytes": statvfs.get("total_bytes"),
            "tool_version": m.get("tool_version"),
            "schema": f"{m.get('schema_version')}.{m.get('schema_minor', 1)}"}


def snapshot_tables(snap: Snapshot, files: bool = False) -> dict[str, pa.Table]:
    """The lake tables of one snapshot, in push order (``snapshots`` last)."""
    from snapper.snapshot import connect

    sid = snap.path.name
    con = connect(snap)
    catalog.bind_views(con)
    out: dict[str, pa.Table] = {}
    if files:
        out["files"] = _conform(LAKE_FILES, pq.read_table(snap.table_path("files")), sid)
    out["leaks"] = _conform(LAKE_LEAKS, catalog.run(con, "leaks"), sid)
    out["reconciliation"] = _conform(LAKE_RECONCILIATION, catalog.run(con, "reconciliation"), sid)
    out["errors"] = _conform(LAKE_ERRORS, con.sql("SELECT * EXCLUDE (snap) FROM errors").to_arrow_table(), sid)
    out["prefixes"] = _conform(LAKE_PREFIXES, catalog.run(con, "leak_prefixes"), sid)
    out["snapshots"] = pa.Table.from_pylist([_manifest_row(snap)], schema=LAKE_SNAPSHOTS.schema)
    return out


def file_path(lake: Lake, table: str, host: str, date: str, snapshot_id: str) -> str:
    return lake.path(table, f"host={quote(host, safe='')}", f"date={date}", f"{snapshot_id}.parquet")


def _footer(lake: Lake, path: str) -> dict[bytes, bytes] | None:
    """The key-value metadata of an existing lake file (None when absent or unreadable: write it again)."""
    try:
        if lake.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with lake.fs.open_input_file(path) as f:
            return dict(pq.read_metadata(f).metadata or {})
    except (OSError, pa.ArrowInvalid):
        return None


def _source_digest(snap: Snapshot, table: str) -> str:
    """What a lake file is computed from: the snapshot's manifest (its row counts, times, host), the table,
    the lake version and the snapper version. Equal in the lake's file: nothing to compute again."""
    from snapper import __version__

    h = hashlib.sha256((snap.path / "manifest.json").read_bytes())
    h.update(f"\0{snap.path.name}\0{table}\0{LAKE_VERSION}\0{__version__}".encode())
    return h.hexdigest()


def push_snapshot(lake: Lake, snap: Snapshot, files: bool = False) -> PushResult:
    host = snap.manifest.get("host")
    if not isinstance(host, str) or not host:
        raise LakeError(str(snap.path), "manifest has no host", "collect the snapshot again")
    date = _date(snap.manifest)
    res = PushResult(snap.path.name, host)
    names = [t.name for t in LAKE_TABLES if files or t is not LAKE_FILES]
    paths = {n: file_path(lake, n, host, date, snap.path.name) for n in names}
    for p in paths.values():
        res.cleaned += _clean_partials(lake, p.rsplit("/", 1)[0], p.rsplit("/", 1)[1])
    sources = {n: _source_digest(snap, n) for n in names}
    footers = {n: _footer(lake, p) for n, p in paths.items()}
    # a snapshot already merged by `lake compact` (no live file): its entry in the compacted file's footer
    merged = {n: members(lake, n, host, date[:7]).get(snap.path.name) for n in names
              if footers[n] is None and n in COMPACT_TABLES}

    def same(n: str, key: bytes, value: str) -> bool:
        f, m = footers[n], merged.get(n)
        if f is not None:
            return f.get(key) == value.encode()
        return m is not None and m[1 if key == SOURCE_KEY else 2] == value

    if all(same(n, SOURCE_KEY, sources[n]) for n in names):
        res.files = [Written(n, paths[n], "unchanged", -1, 0) for n in names]
        return res
    for name, table in snapshot_tables(snap, files).items():
        path, old = paths[name], footers[name]
        digest = _digest(table)
        if same(name, DIGEST_KEY, digest):
            res.files.append(Written(name, path, "unchanged", table.num_rows, 0))
            continue
        meta = {**(table.schema.metadata or {}), DIGEST_KEY: digest.encode(), SOURCE_KEY: sources[name].encode(),
                b"snapper.lake_version": str(LAKE_VERSION).encode(), b"snapper.host": host.encode()}
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(meta), sink, compression="zstd")
        body = sink.getvalue().to_pybytes()
        _put(lake, path, body)
        res.files.append(Written(name, path, "written" if old is None else "replaced", table.num_rows, len(body)))
    return res


def push(lake: Lake, snaps: Sequence[Snapshot], files: bool = False) -> list[PushResult]:
    check_version(lake, create=True)
    return [push_snapshot(lake, s, files) for s in snaps]


def push_collected(lake: Lake, path: Path, files: bool = False) -> PushResult:
    """Push a snapshot just collected (``collect --push``); a failure names the command that finishes it."""
    from snapper.snapshot import open_snapshot

    try:
        return push(lake, [open_snapshot(path)], files)[0]
    except LakeError as exc:
        again = f"snapper lake push {path} --lake {lake.url}" + (" --files" if files else "")
        raise LakeError(exc.obj, exc.problem, f"the snapshot is kept: rerun `{again}`") from exc


# --- query -------------------------------------------------------------------------------------------------

def fleet_dir() -> Path:
    return catalog.queries_dir() / "fleet"


@cache
def _fleet(directory: str) -> dict[str, catalog.Query]:
    return {p.stem: catalog.parse(p) for p in sorted(Path(directory).glob("*.sql"))}


def fleet_queries() -> dict[str, catalog.Query]:
    """queries/fleet/*.sql (kept apart from the snapshot catalogue: they read the lake's tables)."""
    return _fleet(str(fleet_dir()))


def get(name: str) -> catalog.Query:
    qs = fleet_queries()
    if name not in qs:
        raise UsageError(f"fleet query {name}", "no such query", f"one of {', '.join(qs)}")
    return qs[name]


def convert_params(q: catalog.Query, given: Mapping[str, str]) -> dict[str, object]:
    known = {p.name: p for p in q.params}
    out: dict[str, object] = {}
    for k, v in given.items():
        if k not in known:
            raise UsageError(f"--param {k}", f"fleet query {q.name} has no such parameter",
                             f"parameters: {', '.join(known) or 'none'}")
        out[k] = known[k].convert(v)
    return out


def dataset(lake: Lake, t: Table) -> ds.Dataset:
    """The lake table as an Arrow dataset (explicit schema: discovery lists files, opens none)."""
    schema = pa.schema([*t.schema, *LAKE_PARTITIONS])
    part = ds.partitioning(LAKE_PARTITIONS, flavor="hive")
    base = lake.path(t.name)
    try:
        if lake.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return ds.dataset(schema.empty_table())
        # small local files: pre-buffering only adds work (on S3 it coalesces the range requests: keep it)
        fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
            pre_buffer=not lake.rename))
        return ds.dataset(base, schema=schema, filesystem=lake.fs, format=fmt, partitioning=part)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _io(lake, t.name, exc) from exc


def compacted_path(lake: Lake, table: str, host: str, month: str) -> str:
    return lake.path(COMPACTED, table, f"host={quote(host, safe='')}", f"{month}.parquet")


def members(lake: Lake, table: str, host: str, month: str) -> dict[str, list[str]]:
    """The snapshots a compacted file holds: snapshot -> [date, source digest, content digest]."""
    meta = _footer(lake, compacted_path(lake, table, host, month)) or {}
    try:
        got = json.loads(meta.get(MEMBERS_KEY, b"{}"))
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def compacted_dataset(lake: Lake, t: Table) -> ds.Dataset | None:
    """The compacted files of a table (``date`` is a column there, ``host`` the partition), None when none."""
    base = lake.path(COMPACTED, t.name)
    try:
        if lake.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return None
        schema = pa.schema([*t.schema, LAKE_PARTITIONS.field("date"), LAKE_PARTITIONS.field("host")])
        part = ds.partitioning(pa.schema([LAKE_PARTITIONS.field("host")]), flavor="hive")
        return ds.dataset(base, schema=schema, filesystem=lake.fs, format="parquet", partitioning=part)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _io(lake, f"{COMPACTED}/{t.name}", exc) from exc


def live_ids(live: ds.Dataset) -> dict[str, list[str]]:
    """host -> snapshot ids with a live (not yet compacted) file, from the dataset's file list (nothing opened)."""
    from urllib.parse import unquote

    out: dict[str, list[str]] = {}
    for f in getattr(live, "files", []):
        m = re.search(r"/host=([^/]*)/date=[^/]*/([^/]*)\.parquet$", f)
        if m:
            out.setdefault(unquote(m.group(1)), []).append(m.group(2))
    return out


def view_sql(t: Table, live: str, compacted: str | None, ids: Mapping[str, Sequence[str]],
             spark: bool = False) -> str:
    """The SELECT of a lake table's view: its live files, plus its compacted files minus every snapshot that also
    has a live file (live wins: a snapshot pushed again after compaction, or a compaction cut short before it
    removed what it merged, never shows twice). Plain SQL that DuckDB and Spark both run."""
    cols = ", ".join([*(f"`{c}`" if spark else f'"{c}"' for c in t.column_names), "host", "date"])
    sql = f"SELECT {cols} FROM {live}"
    if compacted is None:
        return sql
    def lit(v: str) -> str:
        return "'" + (v.replace("\\", "\\\\").replace("'", "\\'") if spark else v.replace("'", "''")) + "'"

    hidden = " OR ".join(f"(host = {lit(h)} AND snapshot IN ({', '.join(lit(s) for s in sorted(ss))}))"
                         for h, ss in sorted(ids.items()))
    return f"{sql} UNION ALL SELECT {cols} FROM {compacted}" + (f" WHERE NOT ({hidden})" if hidden else "")


def bind(lake: Lake, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per lake table (``snapshots``, ``leaks``, ...)."""
    import duckdb

    check_version(lake)
    con = con or duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for t in LAKE_TABLES:
        live = dataset(lake, t)
        con.register(f"_lake_{t.name}", live)
        cmp = compacted_dataset(lake, t)
        if cmp is not None:
            con.register(f"_cmp_{t.name}", cmp)
        sql = view_sql(t, f"_lake_{t.name}", f"_cmp_{t.name}" if cmp is not None else None, live_ids(live))
        con.execute(f"CREATE OR REPLACE TEMP VIEW {t.name} AS {sql}")
    return con


def run(lake: Lake, name: str, params: Mapping[str, str] | None = None,
        con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Run a fleet query on the lake with DuckDB."""
    import duckdb

    q = get(name)
    given = convert_params(q, params or {})
    con = bind(lake, con)
    for p in q.params:
        value = given[p.name] if p.name in given else p.default_value()
        if value is None:
            raise UsageError(f"fleet query {name}", f"parameter {p.name} has no default", f"pass --param {p.name}=...")
        con.execute(f"SET VARIABLE {p.name} = ?::{p.type}", [value])
    try:
        return con.sql(q.body()).to_arrow_table()
    except duckdb.Error as exc:
        raise LakeError(f"fleet query {name}", str(exc).splitlines()[0], "check the lake with `lake query`") from exc
    except OSError as exc:
        raise _io(lake, f"fleet query {name}", exc) from exc


def spark_sql(q: catalog.Query, values: Mapping[str, object]) -> str:
    """The fleet query as Spark SQL: each ``getvariable('p')`` replaced by the parameter's literal."""
    def literal(m: re.Match[str]) -> str:
        v = values[m.group(1)]
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return re.sub(r"getvariable\('([a-z_][a-z0-9_]*)'\)", literal, q.body())


def _spark_path(lake: Lake, table: str) -> str:
    if lake.rename:  # a local lake
        return "file://" + lake.path(table)
    return "s3a://" + lake.path(table)  # needs hadoop-aws on the cluster (fs.s3a.* settings)


def run_spark(lake: Lake, name: str, params: Mapping[str, str] | None = None,
              master: str = "local[*]") -> pa.Table:
    """Run a fleet query on a Spark session over the same lake (pyspark; ``local[*]`` or a cluster URL)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise UsageError("--engine spark", "pyspark is not installed", "pip install pyspark") from exc
    q = get(name)
    given = convert_params(q, params or {})
    check_version(lake)
    values = {p.name: given.get(p.name, p.default_value()) for p in q.params}
    spark = (SparkSession.builder.master(master).appName("snapper-lake")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
             .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
             .config("spark.sql.shuffle.partitions", "4").config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    for t in LAKE_TABLES:
        # the schema given, never inferred: a table dir emptied by `lake compact` has no file to infer it from
        ddl = ", ".join(f"`{f.name}` {_spark_type(f.type)}" for f in pa.schema([*t.schema, *LAKE_PARTITIONS]))
        base = lake.path(t.name)
        if lake.fs.get_file_info(base).type == pafs.FileType.NotFound:
            df = spark.createDataFrame([], ddl)
        else:
            df = spark.read.schema(ddl).option("basePath", _spark_path(lake, t.name)).parquet(
                _spark_path(lake, t.name))
        df.createOrReplaceTempView(f"_lake_{t.name}")
        cmp = compacted_dataset(lake, t)
        if cmp is not None:
            path = _spark_path(lake, f"{COMPACTED}/{t.name}")
            spark.read.schema(ddl).option("basePath", path).parquet(path).createOrReplaceTempView(f"_cmp_{t.name}")
        sql = view_sql(t, f"_lake_{t.name}", f"_cmp_{t.name}" if cmp is not None else None,
                       live_ids(dataset(lake, t)), spark=True)
        spark.sql(f"CREATE OR REPLACE TEMP VIEW {t.name} AS {sql}")
    try:
        return spark.sql(spark_sql(q, values)).toArrow()
    except Exception as exc:  # pyspark raises its own exception family
        raise LakeError(f"fleet query {name} (spark)", str(exc).splitlines()[0], "check the lake and the "
                        "Spark session") from exc


def _spark_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_list(t):
        return f"array<{_spark_type(t.value_type)}>"
    return {pa.string(): "string", pa.int64(): "bigint", pa.uint32(): "bigint", pa.bool_(): "boolean",
            pa.binary(): "binary", pa.binary(16): "binary"}[t]


__all__ = ["Lake", "PushResult", "bind", "check_version", "fleet_queries", "open_lake", "push",
           "run"]
