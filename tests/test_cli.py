"""snapper.cli: exit codes and the one-line error contract, through typer's CliRunner and the real entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from snapper import __version__
from snapper.cli import app
from snapper.schema import SCHEMA_MINOR, SCHEMA_VERSION
from tests.synthetic import Standard, build_standard, can_mount, mounted, mounts_under

needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root and mount(8)")
runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), catch_exceptions=False)


def assert_one_error_line(res: Result, code: int = 1, *fragments: str) -> str:
    assert res.exit_code == code, (res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("snapper: error: "), lines[0]
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def std(tmp_path_factory: pytest.TempPathFactory) -> Standard:
    return build_standard(tmp_path_factory.mktemp("std") / "root", odd=False)


@pytest.fixture(scope="module")
def snap(std: Standard, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("snaps") / "snap"
    res = invoke("collect", "--root", str(std.root), "--out", str(out), "--no-api", "--jobs", "1", "-q")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == f"{out}\n"
    return out


def copy_of(snap: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(snap, dst)
    return dst


# --- show ------------------------------------------------------------------------------------------------

def test_show_table(snap: Path, std: Standard) -> None:
    res = invoke("show", str(snap))
    assert res.exit_code == 0 and res.stderr == ""
    assert f"snapshot        {snap}" in res.stdout
    assert f"data_root       {std.root}" in res.stdout
    assert "daemon          stopped" in res.stdout
    assert f"schema_version  {SCHEMA_VERSION}.{SCHEMA_MINOR}\n" in res.stdout  # was "schema_version1"


def test_show_json_is_the_manifest(snap: Path) -> None:
    res = invoke("show", str(snap), "--format", "json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == json.loads((snap / "manifest.json").read_text())


def _break(kind: str, snap: Path, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "does-not-exist"
    if kind == "file":
        (tmp_path / "f").write_text("x")
        return tmp_path / "f"
    if kind == "random-dir":
        (tmp_path / "random" / "sub").mkdir(parents=True)
        return tmp_path / "random"
    bad = copy_of(snap, tmp_path)
    if kind == "truncated":
        p = bad / "files.parquet"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "missing-table":
        (bad / "images.parquet").unlink()
    elif kind == "schema-version":
        m = json.loads((bad / "manifest.json").read_text())
        m["schema_version"] = SCHEMA_VERSION + 41
        (bad / "manifest.json").write_text(json.dumps(m))
    elif kind == "bad-manifest":
        (bad / "manifest.json").write_text("{")
    return bad


@pytest.mark.parametrize("kind,fragment", [
    ("missing", "not a snapshot directory"),
    ("file", "not a snapshot directory"),
    ("random-dir", "no manifest.json"),
    ("truncated", "files.parquet: corrupt Parquet file"),
    ("missing-table", "images.parquet: table file missing"),
    ("schema-version", f"schema version {SCHEMA_VERSION + 41}"),
    ("bad-manifest", "unreadable manifest"),
])
def test_show_broken_snapshot(snap: Path, tmp_path: Path, kind: str, fragment: str) -> None:
    res = invoke("show", str(_break(kind, snap, tmp_path)))
    assert_one_error_line(res, 1, fragment)
    assert res.stdout == ""


def test_show_unknown_format(snap: Path) -> None:
    assert_one_error_line(invoke("show", str(snap), "--format", "xml"), 2, "--format xml")


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    res = invoke("--debug", "show", str(tmp_path / "nope"))
    assert res.exit_code == 1
    assert "Traceback" in res.stderr and "SnapshotError" in res.stderr
    assert res.stderr.splitlines()[-1].startswith("snapper: error: ")


def test_version_with_a_command() -> None:
    res = invoke("--version", "show", "anything")
    assert res.exit_code == 0 and res.stdout.strip() == f"snapper {__version__}"


def test_version() -> None:
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"snapper {__version__}"


def test_real_entry_point_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "from snapper.cli import main; main()", "show",
                           str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("snapper: error: ")


# --- collect -----------------------------------------------------------------------------------------------

def test_collect_summary(std: Standard, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    res = invoke("collect", "--root", str(std.root), "--out", str(out), "--no-api", "--jobs", "1")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"snapshot {out}"
    assert "daemon not running" in lines[1] and "api skipped (--no-api)" in lines[1]
    assert "2 errors" in lines[2]


def test_collect_out_exists(std: Standard, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious").write_text("keep me")
    res = invoke("collect", "--root", str(std.root), "--out", str(out), "--no-api")
    assert_one_error_line(res, 1, str(out), "already exists")
    assert [p.name for p in out.iterdir()] == ["precious"] and (out / "precious").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_collect_missing_root(tmp_path: Path) -> None:
    res = invoke("collect", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "s"), "--no-api")
    assert_one_error_line(res, 1, "data root does not exist")
    assert list(tmp_path.iterdir()) == []


def test_collect_bad_hash_mode(std: Standard, tmp_path: Path) -> None:
    res = invoke("collect", "--root", str(std.root), "--out", str(tmp_path / "s"), "--hash", "md5", "--no-api")
    assert_one_error_line(res, 2, "--hash md5")
    assert list(tmp_path.iterdir()) == []


@needs_mount
@pytest.mark.parametrize("opts", ["size=64k", "size=1m,nr_inodes=2"], ids=["no-space", "no-inodes"])
def test_collect_output_filesystem_full(std: Standard, tmp_path: Path, opts: str) -> None:
    full = tmp_path / "full"
    full.mkdir()
    try:
        with mounted(full, "-t", "tmpfs", "-o", opts, "tmpfs"):
            res = invoke("collect", "--root", str(std.root), "--out", str(full / "snap"), "--no-api",
                         "--jobs", "1")
            left = os.listdir(full)
    finally:
        assert mounts_under(tmp_path) == []
    assert_one_error_line(res, 1, "No space left on device")
    assert left == []


# --- issue 17: checks a new user hit ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "not-a-socket"])
def test_collect_socket_that_is_not_one_is_named(std: Standard, tmp_path: Path, kind: str) -> None:
    sock = tmp_path / "wrong" / "docker.sock"
    if kind == "not-a-socket":
        sock.parent.mkdir()
        sock.write_text("")
    res = invoke("collect", "--root", str(std.root), "--out", str(tmp_path / "s"), "--socket", str(sock))
    assert_one_error_line(res, 2, f"--socket {sock}: ", "no such socket" if kind == "missing" else "not a unix socket",
                          "--no-api")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv", [["leaks", "SNAP", "--min-bytes", "-5"], ["leaks", "SNAP", "--fail-on-leak", "-1"],
                                  ["collect", "--jobs", "-2"]])
def test_negative_sizes_are_usage_errors(snap: Path, argv: list[str]) -> None:
    res = invoke(*[str(snap) if a == "SNAP" else a for a in argv])
    assert res.exit_code == 2 and res.stdout == ""
    line = assert_one_error_line(res, 2, "greater than or equal to 0")
    assert argv[-2] in line


def test_show_aligns_fields_and_row_counts(snap: Path) -> None:
    out = invoke("show", str(snap)).stdout.splitlines()
    head = out[: out.index("rows:")]
    assert len({len(line) - len(line[16:].lstrip()) for line in head}) == 1  # values start in one column
    counts = out[out.index("rows:") + 1:]
    assert len(counts) == len(json.loads((snap / "manifest.json").read_text())["rows"])
    assert len({len(line) for line in counts}) == 1, counts  # right-aligned counts end in one column
    assert any(line.strip().startswith("containerd_snapshots ") for line in counts)


def test_show_csv_is_the_manifest_flattened(snap: Path) -> None:
    import csv
    import io

    res = invoke("show", str(snap), "--format", "csv")
    assert res.exit_code == 0, res.stderr
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0] == ["key", "value"]
    kv = dict(rows[1:])
    m = json.loads((snap / "manifest.json").read_text())
    assert kv["host"] == m["host"] and kv["rows.files"] == str(m["rows"]["files"])
    assert kv["daemon.running"] == "false" and kv["schema_version"] == str(SCHEMA_VERSION)


def test_demo_csv_has_the_columns_of_leaks_csv() -> None:
    from snapper.demo import sample_path

    demo = invoke("demo", "--format", "csv")
    leaks = invoke("leaks", str(sample_path()), "--grace", "0", "--format", "csv")
    assert demo.exit_code == leaks.exit_code == 0
    assert demo.stdout == leaks.stdout
    assert demo.stdout.splitlines()[0] == "layer_id,bytes,files,created,mechanism,self_heals,evidence"


def test_history_csv_prints_the_section_asked_for() -> None:
    series = Path(__file__).parent / "data" / "series"
    heads = {sec: invoke("history", str(series), "--grace", "0", "-f", "csv", "--section", sec).stdout.split("\n")[0]
             for sec in ("dirs", "timeline", "never_reachable", "rate")}
    assert heads["dirs"].startswith("layer_id,name_class,first_seen")
    assert heads["timeline"].startswith("snap,started_utc")
    assert heads["never_reachable"].startswith("layer_id,first_seen,last_seen")
    assert heads["rate"].startswith("snapshots,span_hours")
    bad = invoke("history", str(series), "-f", "csv", "--section", "nope")
    assert_one_error_line(bad, 2, "--section nope: unknown section")


def _commands() -> list[str]:
    return sorted(c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands)


@pytest.mark.parametrize("command", _commands())
def test_help_examples_keep_their_lines(command: str) -> None:
    import inspect

    cmd = next(c for c in app.registered_commands if (c.name or (c.callback and c.callback.__name__)) == command)
    doc = inspect.getdoc(cmd.callback) or ""
    if "Examples:" not in doc:
        return
    examples = [line.strip() for line in doc.split("Examples:", 1)[1].splitlines() if line.strip()]
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    shown = [line.strip() for line in res.stdout.splitlines()]
    for line in examples:
        assert line in shown, f"{command} --help rewrapped: {line!r}\n{res.stdout}"


def test_explain_help_says_a_prefix_is_enough() -> None:
    res = runner.invoke(app, ["explain", "--help"], env={"COLUMNS": "200"})
    assert "unique prefix" in res.stdout and "full overlay2 dir name" not in res.stdout


def _leaks_lines(columns: str | None, *extra: str) -> list[str]:
    from snapper.demo import sample_path

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    proc = subprocess.run([sys.executable, "-m", "snapper.cli", "leaks", str(sample_path()), "--grace", "0", *extra],
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(Path(__file__).parent.parent)},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_leaks_fits_a_100_column_terminal() -> None:
    lines = _leaks_lines("100")
    assert max(map(len, lines)) <= 100
    table = lines[: lines.index("evidence (one line each; --verbose for all of it)")]
    rows = [line for line in table if line.startswith("│")]
    assert len(rows) <= 7 + 2  # one line a leak (a -init id may fold once), was ~25 lines a leak
    evidence = lines[len(table) + 1: len(table) + 8]
    assert evidence[0].startswith("ba01ba24476e  ") and "layer chain sha256:" in evidence[0]
    verbose = _leaks_lines("100", "--verbose")
    assert max(map(len, verbose)) <= 100
    assert any("released by an image delete that was interrupted" in line for line in verbose)
    assert len(verbose) > len(lines)


def test_piped_leaks_is_not_200_wide() -> None:
    from snapper.render import PIPED_WIDTH

    assert max(map(len, _leaks_lines(None))) <= PIPED_WIDTH


def test_explain_wraps_details_under_their_column() -> None:
    from snapper.demo import sample_path

    proc = subprocess.run([sys.executable, "-m", "snapper.cli", "explain", str(sample_path()), "ba01ba24476e"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100", "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= 100 and all(line == line.rstrip() for line in lines)
    i = next(n for n, line in enumerate(lines) if line.startswith("evidence "))
    assert lines[i + 1].startswith(" " * 18) and "released by an image delete" in " ".join(lines[i:i + 4])
