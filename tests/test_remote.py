"""snapper.remote: snapshots read from an S3-compatible store (the moto server of tests/test_lake.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs
from typer.testing import CliRunner

from snapper.cli import app
from tests.test_lake import REPO, s3_env, s3_server  # noqa: F401 (fixtures)

runner = CliRunner()


def upload(url: str, local: Path) -> None:
    from snapper import lake

    store = lake.open_lake(url)
    pafs.copy_files(str(local), store.root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=store.fs)


def listing(url: str) -> dict[str, int]:
    from snapper import lake

    store = lake.open_lake(url)
    return {i.path: i.size for i in store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True))}


def test_leaks_of_a_snapshot_on_s3(s3_env: str) -> None:  # noqa: F811
    bucket = s3_env.rsplit("/", 1)[0]
    url = f"{bucket}/snaps/sample"
    upload(url, REPO / "snapper/demo/sample")
    before = listing(f"{bucket}/snaps")
    here = runner.invoke(app, ["leaks", str(REPO / "snapper/demo/sample"), "-f", "json"])
    there = runner.invoke(app, ["leaks", url, "-f", "json"])
    assert there.exit_code == 0, there.output
    assert json.loads(there.stdout) == json.loads(here.stdout) and len(json.loads(here.stdout)) == 7
    assert listing(f"{bucket}/snaps") == before  # read-only


def test_history_of_a_series_on_s3(s3_env: str) -> None:  # noqa: F811
    bucket = s3_env.rsplit("/", 1)[0]
    upload(f"{bucket}/series/ci-02", REPO / "tests/data/series")
    here = runner.invoke(app, ["history", str(REPO / "tests/data/series"), "-f", "json"])
    there = runner.invoke(app, ["history", f"{bucket}/series/ci-02", "-f", "json"])
    assert there.exit_code == 0, there.output
    assert here.exit_code == 0
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    assert a.keys() == b.keys() and len(a["dirs"]) > 5
    assert a["dirs"] == b["dirs"] and a.get("timeline") == b.get("timeline")


def test_missing_snapshot_on_s3_is_one_line(s3_env: str) -> None:  # noqa: F811
    bucket = s3_env.rsplit("/", 1)[0]
    res = runner.invoke(app, ["leaks", f"{bucket}/nothing/here"])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"snapper: error: {bucket}/nothing/here: no snapshot there")
