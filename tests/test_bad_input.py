"""Bad snapshots given to every command that reads one: exactly one stderr line
``snapper: error: <object>: <problem> (<fix>)`` naming the damaged file, exit 1, no traceback, no output.
Usage errors exit 2 (each one checked below).

Every command is run through typer's CliRunner; a sample also through the real entry point
(``python3 -m snapper.cli``), so that nothing between ``main()`` and the terminal adds a traceback.
Commands that exist only in newer trees (query, views, report, metrics) are included when present.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner, Result

from snapper.cli import app
from snapper.collect import CollectOptions, collect
from snapper.schema import SCHEMA_VERSION
from tests.synthetic import build_standard

runner = CliRunner()
COMMANDS = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_standard(tmp_path_factory.mktemp("std") / "root", odd=False).root
    out = tmp_path_factory.mktemp("snaps") / "good"
    collect(CollectOptions(root=str(root), out=str(out), jobs=1, api=False))
    return out


# --- ways to break a snapshot: kind -> (make it, the object the error must name, a fragment of the problem) ---

def _copy(good: Path, tmp: Path) -> Path:
    dst = tmp / "bad"
    shutil.copytree(good, dst)
    return dst


def _edit_manifest(p: Path, **changes: object) -> None:
    m = json.loads((p / "manifest.json").read_text())
    m.update(changes)
    (p / "manifest.json").write_text(json.dumps(m))


def truncated(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    t = p / "layers.parquet"
    t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    return p, t, "corrupt Parquet file"


def _scribble_mid_file(t: Path) -> None:
    """Overwrite bytes in the middle of the column chunks of a table file: its footer and row count stay
    intact, so only the content tells."""
    data = bytearray(t.read_bytes())
    rg = pq.ParquetFile(t).metadata.row_group(0)
    for i in range(rg.num_columns):
        col = rg.column(i)
        mid = col.data_page_offset + col.total_compressed_size // 2
        data[mid: mid + 4] = b"\xff\x00\xff\x00"
    t.write_bytes(bytes(data))


def corrupt_mid_file(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    _scribble_mid_file(p / "files.parquet")
    return p, p / "files.parquet", "corrupt Parquet file (content is not what the collect wrote"


def corrupt_mid_file_no_digests(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    """A snapshot written before digests were recorded: the full decode finds the damage."""
    p = _copy(good, tmp)
    m = json.loads((p / "manifest.json").read_text())
    m.pop("table_digests", None)
    (p / "manifest.json").write_text(json.dumps(m))
    _scribble_mid_file(p / "files.parquet")
    return p, p / "files.parquet", "corrupt Parquet file"


def empty_table(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "files.parquet").write_bytes(b"")
    return p, p / "files.parquet", "corrupt Parquet file"


def garbage_table(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "errors.parquet").write_bytes(os.urandom(5000))
    return p, p / "errors.parquet", "corrupt Parquet file"


def missing_table(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "layers.parquet").unlink()
    return p, p / "layers.parquet", "table file missing"


def table_is_a_dir(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "images.parquet").unlink()
    (p / "images.parquet").mkdir()
    return p, p / "images.parquet", "images.parquet"


def wrong_table_schema(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    """A readable Parquet file whose columns are not the table's (another tool's, or another table's)."""
    p = _copy(good, tmp)
    n = pq.ParquetFile(p / "layers.parquet").metadata.num_rows
    pq.write_table(pa.table({"layer_id": pa.array(range(n), pa.int64()), "x": pa.array(["?"] * n)}),
                   p / "layers.parquet")
    return p, p / "layers.parquet", "layers.parquet"


def other_schema_version(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    _edit_manifest(p, schema_version=SCHEMA_VERSION + 1)
    return p, p, f"schema version {SCHEMA_VERSION + 1}"


def no_schema_version(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    _edit_manifest(p, schema_version=None)
    return p, p, "schema version None"


def manifest_not_json(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "manifest.json").write_bytes(b'{"schema_version": 1, "rows": {')
    return p, p / "manifest.json", "unreadable manifest"


def manifest_not_object(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "manifest.json").write_text("[1, 2, 3]")
    return p, p / "manifest.json", "not a JSON object"


def rows_disagree(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    m = json.loads((p / "manifest.json").read_text())
    m["rows"]["layers"] += 7
    (p / "manifest.json").write_text(json.dumps(m))
    return p, p / "layers.parquet", "rows but the manifest says"


def random_dir(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = tmp / "random"
    (p / "sub").mkdir(parents=True)
    (p / "notes.txt").write_bytes(os.urandom(300))
    (p / "layers.parquet").write_bytes(os.urandom(300))
    return p, p, "no"  # show: "no manifest.json"; series commands: "holds no snapshot"


def interrupted(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = _copy(good, tmp)
    (p / "manifest.json").unlink()
    return p, p, "no"


def regular_file(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = tmp / "file.parquet"
    p.write_bytes(os.urandom(100))
    return p, p, "no"


def nonexistent(good: Path, tmp: Path) -> tuple[Path, Path, str]:
    p = tmp / "does" / "not" / "exist"
    return p, p, "no"


KINDS: dict[str, Callable[[Path, Path], tuple[Path, Path, str]]] = {f.__name__: f for f in (
    truncated, corrupt_mid_file, corrupt_mid_file_no_digests, empty_table, garbage_table, missing_table,
    table_is_a_dir, wrong_table_schema, other_schema_version,
    no_schema_version, manifest_not_json, manifest_not_object, rows_disagree, random_dir, interrupted,
    regular_file, nonexistent)}

# command -> argv from (bad, good, tmp). Two-snapshot commands get the bad one in each position.
ARGV: dict[str, Callable[[Path, Path, Path], list[str]]] = {
    "show": lambda b, g, t: ["show", str(b)],
    "show-json": lambda b, g, t: ["show", str(b), "--format", "json"],
    "leaks": lambda b, g, t: ["leaks", str(b)],
    "leaks-json": lambda b, g, t: ["leaks", str(b), "--format", "json", "--grace", "0"],
    "explain": lambda b, g, t: ["explain", str(b), "abc"],
    "diff-old": lambda b, g, t: ["diff", str(b), str(g)],
    "diff-new": lambda b, g, t: ["diff", str(g), str(b)],
    "diff-layer": lambda b, g, t: ["diff", str(g), str(b), "--layer", "abc"],
    "history": lambda b, g, t: ["history", str(b)],
    "history-series": lambda b, g, t: ["history", str(g), str(b), "--format", "json"],
    "query": lambda b, g, t: ["query", "leaks", str(b)],
    "views": lambda b, g, t: ["views", str(b)],
    "report": lambda b, g, t: ["report", str(b), "--out", str(t / "out" / "report.html")],
    "metrics": lambda b, g, t: ["metrics", str(b), "--output", str(t / "out" / "m.prom")],
}


def assert_one_error_line(res: Result | subprocess.CompletedProcess[str], code: int, obj: Path | None,
                          fragment: str = "") -> str:
    rc = res.exit_code if isinstance(res, Result) else res.returncode
    assert rc == code, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("snapper: error: "), line
    if obj is not None:
        assert line.startswith(f"snapper: error: {obj}: "), line
    assert line.endswith(")") and " (" in line, f"no fix in: {line}"
    assert fragment in line, line
    return line


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("command", list(ARGV))
def test_bad_snapshot(good: Path, tmp_path: Path, command: str, kind: str) -> None:
    if command.split("-")[0] not in COMMANDS:
        pytest.skip(f"no `{command.split('-')[0]}` command in this tree")
    bad, obj, fragment = KINDS[kind](good, tmp_path)
    (tmp_path / "out").mkdir()
    res = invoke(*ARGV[command](bad, good, tmp_path))
    assert_one_error_line(res, 1, obj, fragment)
    assert res.stdout == "", res.stdout
    assert os.listdir(tmp_path / "out") == [], "an output file was written for a bad snapshot"


@pytest.mark.parametrize("command,kind", [("show", "truncated"), ("leaks", "missing_table"),
                                          ("explain", "other_schema_version"), ("diff-new", "random_dir"),
                                          ("history", "regular_file"), ("query", "manifest_not_json")])
def test_bad_snapshot_real_entry_point(good: Path, tmp_path: Path, command: str, kind: str) -> None:
    if command.split("-")[0] not in COMMANDS:
        pytest.skip(f"no `{command.split('-')[0]}` command in this tree")
    bad, obj, fragment = KINDS[kind](good, tmp_path)
    (tmp_path / "out").mkdir()
    proc = subprocess.run([sys.executable, "-m", "snapper.cli", *ARGV[command](bad, good, tmp_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert_one_error_line(proc, 1, obj, fragment)
    assert proc.stdout == ""


def test_a_series_with_one_bad_snapshot_names_it(good: Path, tmp_path: Path) -> None:
    series = tmp_path / "series" / "host"
    series.mkdir(parents=True)
    shutil.copytree(good, series / "20261101T000000Z")
    bad = truncated(good, tmp_path)[0]
    shutil.move(bad, series / "20261102T000000Z")
    res = invoke("history", str(tmp_path / "series"))
    assert_one_error_line(res, 1, series / "20261102T000000Z" / "layers.parquet", "corrupt Parquet file")


# --- usage errors: exit 2 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["show", "{good}", "--format", "xml"], "--format xml"),
    (["leaks", "{good}", "--grace", "banana"], "--grace banana"),
    (["diff", "{good}", "{good}", "--grace", "-1"], "--grace -1"),
    (["history", "{good}", "--window", "soon"], "soon"),
    (["explain", "{good}", "no-such-dir"], "no-such-dir"),
    (["query", "leaks"], "no snapshot given"),
])
def test_snapper_usage_errors_are_one_line_exit_2(good: Path, args: list[str], fragment: str) -> None:
    if args[0] not in COMMANDS:
        pytest.skip(f"no `{args[0]}` command in this tree")
    res = invoke(*[a.format(good=good) for a in args])
    assert_one_error_line(res, 2, None, fragment)


@pytest.mark.parametrize("args,fragment", [
    (["show"], "snapper show: Missing argument"),
    (["explain", "{good}"], "snapper explain: Missing argument 'dir'"),
    (["diff", "{good}"], "snapper diff: Missing argument 'new'"),
    (["leaks", "{good}", "--min-bytes", "many"], "snapper leaks: Invalid value for '--min-bytes'"),
    (["show", "{good}", "--no-such-option"], "snapper show: No such option: --no-such-option"),
    (["no-such-command"], "snapper: No such command 'no-such-command'"),
])
def test_argument_parsing_errors_are_one_line_exit_2(good: Path, args: list[str], fragment: str) -> None:
    """Missing arguments, bad option values and unknown options or commands (typer's own parsing): one line
    naming the command and pointing at its --help, exit 2, never a traceback or a usage block."""
    res = invoke(*[a.format(good=good) for a in args])
    line = assert_one_error_line(res, 2, None, fragment)
    assert line.endswith("--help')"), line
    assert res.stdout == ""


def test_argument_parsing_error_through_the_real_entry_point(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", "from snapper.cli import main; main()", "diff", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert_one_error_line(res, 2, None, "snapper diff: Missing argument 'new' (see 'snapper diff --help')")


def test_no_arguments_print_the_help_exit_0() -> None:
    res = invoke()
    assert res.exit_code == 0 and "Usage: snapper" in res.stdout and "collect" in res.stdout
