"""table | json | csv | parquet output of an Arrow table (rich tables on a TTY)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from decimal import Decimal
from typing import IO, Any

import pyarrow as pa

FORMATS = ("table", "json", "csv")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return ",".join(_cell(x) for x in v)
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in table.to_pylist()]


PIPED_WIDTH = 120  # tables written to a pipe or file: $COLUMNS when set, else this


def console_width(out: IO[str]) -> int | None:
    """Width for rich: None on a terminal (rich asks it), else $COLUMNS or PIPED_WIDTH."""
    if out.isatty():
        return None
    try:
        return max(40, int(os.environ["COLUMNS"]))
    except (KeyError, ValueError):
        return PIPED_WIDTH


def render_notes(notes: list[tuple[str, str]], out: IO[str] | None = None, title: str | None = None,
                 full: bool = False) -> None:
    """``key  text`` lines under a table, for text too long for a column (evidence): each cut to one line
    of the terminal with an ellipsis, or whole and wrapped under its key when ``full``."""
    from rich.console import Console
    from rich.table import Table

    out = out or sys.stdout
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, min_width=max((len(k) for k, _ in notes), default=0))
    grid.add_column(no_wrap=not full, overflow="fold" if full else "ellipsis")
    for key, text in notes:
        grid.add_row(key, text)
    buf = io.StringIO()
    console = Console(file=buf, width=console_width(out), highlight=False)
    if title:
        console.print(title)
    console.print(grid)
    out.write("".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines()))  # no padding to the width


def render_table(table: pa.Table, fmt: str, out: IO[str] | None = None, title: str | None = None,
                 byte_columns: tuple[str, ...] = (), no_wrap: tuple[str, ...] = ()) -> None:
    out = out or sys.stdout
    if fmt == "json":
        json.dump(rows_of(table), out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(table.column_names)
        for r in table.to_pylist():
            w.writerow([_cell(r[c]) for c in table.column_names])
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_lines=False)
        for c in table.column_names:
            t.add_column(c, justify="right" if c in byte_columns else "left", overflow="fold", no_wrap=c in no_wrap)
        for r in table.to_pylist():
            t.add_row(*[human_bytes(r[c]) if c in byte_columns and r[c] is not None else _cell(r[c])
                        for c in table.column_names])
        Console(file=out, width=console_width(out)).print(t)


def render_json(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    json.dump(_jsonable(obj), out, indent=2, sort_keys=True)
    out.write("\n")


def to_csv_string(table: pa.Table) -> str:
    buf = io.StringIO()
    render_table(table, "csv", buf)
    return buf.getvalue()
