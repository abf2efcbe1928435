"""snapper.shell / `snapper sql`: the README's example works with the duckdb CLI and without it (the built-in
shell), and no init file is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from snapper import verdict
from snapper.cli import app
from snapper.demo import sample_path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "SELECT mechanism, sum(bytes) FROM leaks GROUP BY ALL;\n"
MECHANISMS = ("interrupted-image-delete", "interrupted-layer-create", "orphan-container-mount")


def _sql(tmp_path: Path, stdin: str, *extra: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path), "COLUMNS": "120"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "snapper.cli", "sql", str(sample_path()), *extra], input=stdin,
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_example_in_the_builtin_shell_when_duckdb_is_not_installed(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH without a duckdb binary: what `pip install .` gives
    bare.mkdir()
    proc = _sql(tmp_path, EXAMPLE, path=str(bare))
    assert proc.returncode == 0, proc.stderr
    assert "built-in shell" in proc.stderr and "Error" not in proc.stderr
    for m in MECHANISMS:
        assert m in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]  # no snapper-views-*.sql left


@pytest.mark.skipif(shutil.which("duckdb") is None, reason="the duckdb CLI (PyPI duckdb-cli) is not installed")
def test_example_in_the_duckdb_cli_leaves_no_file(tmp_path: Path) -> None:
    proc = _sql(tmp_path, EXAMPLE)
    assert proc.returncode == 0, proc.stderr
    assert "duckdb CLI" in proc.stderr
    for m in MECHANISMS:
        assert m in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_builtin_shell_variables_read_and_dot_commands() -> None:
    script = (".tables\nSET VARIABLE min_bytes = 1000000;\nSELECT count(*) AS big\nFROM leaks;\n"
              ".read queries/leaks.sql\n.quit\nSELECT 'not reached';\n")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        res = CliRunner().invoke(app, ["sql", str(sample_path()), "--builtin"], input=script,
                                 env={"COLUMNS": "200"})
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.stderr
    assert "leaked_metadata" in res.stdout and "verdicts" in res.stdout  # .tables
    big = verdict.leaks(sample_path(), 1_000_000, 3600).num_rows
    assert 0 < big < verdict.leaks(sample_path(), 0, 3600).num_rows
    assert f"│ {big}   │" in res.stdout  # the variable reached the leaks view
    assert "interrupted-image-delete" in res.stdout  # .read queries/leaks.sql
    assert "not reached" not in res.stdout


def test_builtin_shell_script_with_an_error_exits_1() -> None:
    res = CliRunner().invoke(app, ["sql", str(sample_path()), "--builtin"], input="SELECT * FROM nope;\n")
    assert res.exit_code == 1
    assert "Error: Catalog Error" in res.stderr
