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


def _notebook_block() -> list[str]:
    section = README.split("## The notebook\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines() if line.strip()]


def test_readme_notebook_extra_has_what_the_notebook_imports() -> None:
    import json
    import re
    import sys
    import tomllib

    install, _ = _notebook_block()
    assert install == "python3 -m pip install '.[notebook]'"
    extra = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]["optional-dependencies"]["notebook"]
    names = {re.split(r"[<>=\[]", r)[0] for r in extra}
    assert {"nbconvert", "ipykernel", "matplotlib"} <= names  # jupyter nbconvert --execute, its kernel, figures
    nb = json.loads((TOP / "notebooks" / "leak-investigation.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    imported = set(re.findall(r"^\s*(?:import|from)\s+([a-z_]+)", code, re.M)) - {"snapper"} - sys.stdlib_module_names
    assert imported <= names | {"pyarrow", "duckdb"}, imported  # the rest comes with snapper itself


def test_readme_notebook_command_runs_verbatim(tmp_path: Path) -> None:
    """The README's command, exactly, from a dir holding the notebook and snapshots/myhost (the recorded series)."""
    import os
    import shutil
    import subprocess

    if shutil.which("jupyter-nbconvert") is None:
        import pytest

        if os.environ.get("CI") == "true":
            pytest.fail("jupyter nbconvert is missing in CI: the [test] extra installs it")
        pytest.skip("needs nbconvert (pip install '.[notebook]')")
    _, command = _notebook_block()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(TOP / "notebooks" / "leak-investigation.ipynb", tmp_path / "notebooks")
    (tmp_path / "snapshots").mkdir()
    shutil.copytree(TOP / "tests" / "data" / "series", tmp_path / "snapshots" / "myhost")
    proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(TOP)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "notebooks" / "leak-investigation.html").read_text()
    assert "data:image/png;base64" in page and "Traceback" not in page
