"""``snapper sql``: an interactive SQL shell with snapshots bound as views.

The same statements serve two shells: the ``duckdb`` CLI (PyPI ``duckdb-cli``) when it is on PATH, started
with an init file that lives in a private temporary dir removed when the shell exits; otherwise a small
built-in shell over the Python package's connection (``pip install .`` alone has no ``duckdb`` binary). Either
way every catalogue query is a view of its own name (``SELECT mechanism, sum(bytes) FROM leaks GROUP BY
ALL``), reading its parameters from variables set to their defaults (``SET VARIABLE grace_seconds = 0``
changes them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from snapper import catalog
from snapper.snapshot import Snapshot, view_statements

if TYPE_CHECKING:
    import duckdb

HELP = """.tables           list the views
.read FILE        run the SQL in FILE (e.g. .read queries/leaks.sql)
.help             this text
.quit / .exit     leave (also Ctrl-D)
Statements end with ';'. Views: the snapshot tables (with a snap column), snapshots, manifest, and every
query of `snapper query --list` by name; parameters are variables: SET VARIABLE grace_seconds = 0;"""


def _sql_literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def init_statements(snaps: Sequence[Snapshot]) -> list[str]:
    """Variables at their defaults, the snapshot views, the derived views and one view per other query."""
    cat = catalog.catalog()
    variables: dict[str, tuple[str, object]] = {}
    for q in cat.values():
        for p in q.params:
            if p.default is not None and p.name not in variables:
                variables[p.name] = (p.type, p.default_value())
    out = [f"SET VARIABLE {name} = {_sql_literal(v)}::{typ};" for name, (typ, v) in sorted(variables.items())]
    out += view_statements(snaps)
    out += catalog.derived_view_statements()
    out += [f"CREATE OR REPLACE VIEW {q.name} AS\n{q.body()};" for q in cat.values() if not q.view]
    return out


def duckdb_cli() -> str | None:
    return shutil.which("duckdb")


def run_cli(exe: str, snaps: Sequence[Snapshot]) -> int:
    """The duckdb CLI with the views bound; the init file is removed when it exits."""
    with tempfile.TemporaryDirectory(prefix="snapper-sql-") as tmp:
        init = Path(tmp) / "views.sql"
        fd = os.open(init, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(init_statements(snaps)) + "\n")
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the shell, not to us
        try:
            return subprocess.run([exe, "-init", str(init)], check=False).returncode
        finally:
            signal.signal(signal.SIGINT, old)


def connect(snaps: Sequence[Snapshot]) -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    for stmt in init_statements(snaps):
        con.execute(stmt)
    return con


def run_builtin(snaps: Sequence[Snapshot], stdin: IO[str], stdout: IO[str], stderr: IO[str]) -> int:
    """A line-oriented SQL shell: reads statements ending in ';' (and dot commands), prints each result as a
    table. Returns 1 when a statement failed and input is not a terminal (a script), else 0."""
    import duckdb

    from snapper.render import render_table

    con = connect(snaps)
    interactive = stdin.isatty()
    failed = False
    buf: list[str] = []

    def execute(sql: str) -> None:
        nonlocal failed
        if not sql.strip():
            return
        try:  # DuckDB runs every statement of the text and answers with the last one's result
            rel = con.sql(sql)
            table = rel.to_arrow_table() if rel is not None else None
            if table is not None and not (table.column_names == ["Success"] and table.num_rows == 0):
                render_table(table, "table", out=stdout)
        except duckdb.Error as e:
            failed = True
            print(f"Error: {str(e).splitlines()[0]}", file=stderr)

    while True:
        if interactive:
            stdout.write("D " if not buf else "· ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        stripped = line.strip()
        if not buf and stripped.startswith("."):
            cmd, _, arg = stripped.partition(" ")
            if cmd in (".quit", ".exit", ".q"):
                break
            if cmd == ".tables":
                execute("SELECT table_name AS name FROM information_schema.tables ORDER BY 1")
            elif cmd == ".read" and arg:
                try:
                    execute(Path(arg.strip()).read_text(encoding="utf-8"))
                except OSError as e:
                    failed = True
                    print(f"Error: {arg.strip()}: {e.strerror}", file=stderr)
            elif cmd == ".help":
                print(HELP, file=stdout)
            else:
                failed = True
                print(f"Error: unknown command {cmd} (.help lists them)", file=stderr)
            continue
        buf.append(line)
        if stripped.endswith(";"):
            execute("".join(buf))
            buf = []
    execute("".join(buf))
    if interactive:
        stdout.write("\n")
    return 1 if failed and not interactive else 0


def run(snaps: Sequence[Snapshot], builtin: bool = False) -> int:
    exe = None if builtin else duckdb_cli()
    with contextlib.suppress(AttributeError):
        sys.stdout.flush()
    if exe is not None:
        return run_cli(exe, snaps)
    return run_builtin(snaps, sys.stdin, sys.stdout, sys.stderr)
