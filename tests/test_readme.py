"""The README stays true: schema section generated from snapper/schema.py, commands documented, and the
test command is exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from snapper import schema
from snapper.cli import app

TOP = Path(__file__).resolve().parent.parent
README = (TOP / "README.md").read_text()


def test_schema_section_is_generated_from_schema_module() -> None:
    section = README.split("<!-- schema:begin -->\n", 1)[1].split("\n<!-- schema:end -->", 1)[0]
    assert section == schema.markdown(), "regenerate: python3 -c 'from snapper import schema; print(schema.markdown())'"


def test_every_command_has_a_readme_section() -> None:
    names = sorted(c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands)
    assert names
    for name in names:
        assert re.search(rf"^### `snapper {name}\b", README, re.M), f"README lacks a section for `snapper {name}`"


def test_ci_runs_the_readme_test_command() -> None:
    cmd = re.search(r"(python3? -m )?pytest[^`\n]*", README)
    assert cmd is not None
    ci = (TOP / ".ci" / "run").read_text()
    assert cmd.group(0).strip() in ci


def test_readme_sql_example_runs_in_snapper_sql() -> None:
    """The ```sql block of the ad-hoc SQL section, typed into `snapper sql` (built-in shell) on the sample."""
    import os
    import subprocess
    import sys

    from snapper.demo import sample_path

    block = README.split("In `snapper sql`", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    proc = subprocess.run([sys.executable, "-m", "snapper.cli", "sql", str(sample_path()), "--builtin"],
                          input=block, capture_output=True, text=True, cwd=TOP, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(TOP), "COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    assert "Error" not in proc.stderr
    assert proc.stdout.count("sum(bytes)") == 2  # the leaks view, the verdicts query
    assert "evidence" in proc.stdout and proc.stdout.count("interrupted-image-delete") >= 3  # and .read
