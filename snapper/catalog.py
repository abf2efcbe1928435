"""The query catalogue: ``queries/*.sql`` files with a header the loader reads.

Header (comment lines at the top of the file)::

    -- name: leaks
    -- description: overlay2 dirs no root reaches, with mechanism
    -- why: what `docker system df` cannot see
    -- params: min_bytes BIGINT = 0, grace_seconds BIGINT = 3600
    -- view: true            (optional: also bound as a view of that name, for other queries to use)
    -- requires: verdicts    (optional: views this query reads)

Parameters are read in SQL with ``getvariable('name')``, so every file runs verbatim in the ``duckdb`` shell
after ``SET VARIABLE name = value``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from snapper.errors import QueryError, UsageError

if TYPE_CHECKING:
    import duckdb

_HEADER = re.compile(r"^--\s*([a-z_]+):\s*(.*?)\s*$")
_PARAM = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s+([A-Z]+)\s*(?:=\s*(.+?))?\s*$")
TYPES = {"BIGINT": int, "INTEGER": int, "DOUBLE": float, "VARCHAR": str, "BOOLEAN": bool}


def queries_dir() -> Path:
    """queries/ beside the package (source checkout), else where the wheel installs it (share/snapper)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "queries", here / "queries", Path(sys.prefix) / "share" / "snapper" / "queries"):
        if cand.is_dir():
            return cand
    raise QueryError("queries/", "query directory not found", "reinstall snapper")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None

    def default_value(self) -> object | None:
        return None if self.default is None else self.convert(self.default.strip("'"))

    def convert(self, text: str) -> object:
        if self.type == "BOOLEAN":
            if text.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"--param {self.name}={text}", "not a boolean", "use true or false")
            return text.lower() in ("true", "1")
        try:
            return TYPES[self.type](text)
        except ValueError as e:
            raise UsageError(f"--param {self.name}={text}", f"not a {self.type}", "pass a valid value") from e


@dataclass(frozen=True)
class Query:
    name: str
    path: Path
    description: str
    why: str
    params: tuple[Param, ...]
    view: bool
    requires: tuple[str, ...]
    sql: str

    def body(self) -> str:
        """The SQL without its trailing semicolon (for use inside CREATE VIEW)."""
        return self.sql.strip().rstrip(";").strip()


def parse(path: Path) -> Query:
    text = path.read_text(encoding="utf-8")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        m = _HEADER.match(line)
        if m:
            fields[m.group(1)] = m.group(2)
    missing = [k for k in ("name", "description", "why", "params") if k not in fields]
    if missing:
        raise QueryError(str(path), f"header lacks {', '.join(missing)}", "add the header lines")
    if fields["name"] != path.stem:
        raise QueryError(str(path), f"name {fields['name']!r} differs from the file name", "rename one of them")
    params: list[Param] = []
    if fields["params"].strip() not in ("", "none"):
        for part in fields["params"].split(","):
            m = _PARAM.match(part)
            if not m or m.group(2) not in TYPES:
                raise QueryError(str(path), f"bad params entry {part.strip()!r}", "write `name TYPE = default`")
            params.append(Param(m.group(1), m.group(2), m.group(3)))
    requires = tuple(r.strip() for r in fields.get("requires", "").split(",") if r.strip())
    return Query(fields["name"], path, fields["description"], fields["why"], tuple(params),
                 fields.get("view", "false") == "true", requires, text)


@cache
def _catalog(directory: str) -> dict[str, Query]:
    return {p.stem: parse(p) for p in sorted(Path(directory).glob("*.sql"))}


def catalog() -> dict[str, Query]:
    return _catalog(str(queries_dir()))


def get(name: str) -> Query:
    cat = catalog()
    if name not in cat:
        raise UsageError(f"query {name}", "no such query", "see `snapper query --list`")
    return cat[name]


def view_order(names: list[str] | None = None) -> list[Query]:
    """Derived views (``view: true``) in dependency order."""
    cat = catalog()
    out: list[Query] = []
    seen: set[str] = set()

    def visit(q: Query) -> None:
        if q.name in seen:
            return
        seen.add(q.name)
        for r in q.requires:
            if r in cat:
                visit(cat[r])
        if q.view:
            out.append(q)

    for q in cat.values() if names is None else [get(n) for n in names]:
        visit(q)
    return out


def derived_view_statements() -> list[str]:
    return [f"CREATE OR REPLACE VIEW {q.name} AS\n{q.body()};" for q in view_order()]


def set_params(con: duckdb.DuckDBPyConnection, query: Query, given: Mapping[str, object] | None = None) -> None:
    """SET VARIABLE for every parameter of the query and of the views it reads (defaults unless given)."""
    given = dict(given or {})
    for q in [*view_order([query.name]), query]:
        for p in q.params:
            if p.name in given:
                value: object = given[p.name]
            elif p.default is not None:
                value = p.default_value()
            else:
                raise UsageError(f"query {query.name}", f"parameter {p.name} has no default",
                                 f"pass --param {p.name}=...")
            con.execute(f"SET VARIABLE {p.name} = ?::{p.type}", [value])


def bind_views(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in derived_view_statements():
        con.execute(stmt)


def _param_values(con: duckdb.DuckDBPyConnection, names: list[str]) -> str:
    vals = {n: con.execute(f"SELECT getvariable('{n}')::VARCHAR").fetchall()[0][0] for n in sorted(names)}
    return json.dumps(vals, sort_keys=True)


def _materialize(con: duckdb.DuckDBPyConnection, query: Query) -> None:
    """Turn the derived views a query reads into temp tables (which shadow the views of the same name).

    The views stay the definition (they are what the duckdb shell runs); a temp table is just their
    result, computed once per parameter set instead of once per reference: a view used inside a recursive
    CTE would otherwise be recomputed at every iteration. Keyed by the parameter values it was built with.
    """
    con.execute("CREATE TEMP TABLE IF NOT EXISTS _snapper_materialized (name VARCHAR PRIMARY KEY, key VARCHAR)")
    needed = [v for v in view_order([query.name]) if v.name != query.name]
    for v in needed:
        deps = [v, *view_order([v.name])]
        key = _param_values(con, sorted({p.name for d in deps for p in d.params}))
        old = con.execute("SELECT key FROM _snapper_materialized WHERE name = ?", [v.name]).fetchall()
        if old and old[0][0] == key:
            continue
        con.execute(f"CREATE OR REPLACE TEMP TABLE {v.name} AS\n{v.body()}")
        con.execute("INSERT OR REPLACE INTO _snapper_materialized VALUES (?, ?)", [v.name, key])


def run(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, object] | None = None) -> pa.Table:
    """Run a catalogue query on a connection where the snapshot views are bound."""
    import duckdb

    q = get(name)
    known = {p.name: p for qq in [*view_order([name]), q] for p in qq.params}
    for k in params or {}:
        if k not in known:
            raise UsageError(f"--param {k}", f"query {name} has no such parameter",
                             f"parameters: {', '.join(known) or 'none'}")
    given = dict(params or {})
    snap = known.get("snap")
    if snap is not None:
        value = given.get("snap", snap.default_value())
        if isinstance(value, int) and value < 0:  # "the newest": as a number, so DuckDB can skip the others' files
            newest = con.execute("SELECT max(snap) FROM snapshots").fetchall()[0][0]
            if newest is not None:
                given["snap"] = newest
    set_params(con, q, given)
    try:
        _materialize(con, q)
        return con.sql(q.body()).to_arrow_table()
    except duckdb.Error as e:
        raise QueryError(f"query {name}", str(e).splitlines()[0], "check the snapshot with `snapper show`") from e


def markdown() -> str:
    """The README query catalogue, generated from the headers."""
    out = ["| query | what it answers | why it matters | params |", "|---|---|---|---|"]
    for q in catalog().values():
        params = ", ".join(f"`{p.name}` {p.type}" + (f" = {p.default}" if p.default else "") for p in q.params)
        out.append(f"| `{q.name}` | {q.description.replace('|', '/')} | {q.why.replace('|', '/')} | "
                   f"{params or 'none'} |")
    return "\n".join(out) + "\n"
