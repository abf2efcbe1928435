"""snapper.lake_compact: merged files, the same rows before and after, push idempotency and a cut-short run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import snapper
from snapper import lake, lake_compact
from snapper.cli import app
from snapper.errors import LakeError
from tests.spark import require_pyspark
from tests.test_lake import (  # noqa: F401 (fixtures)
    GOLDEN,
    QUERIES,
    Wrapped,
    all_snaps,
    csv_of,
    fleet,
    listing,
    pushed,
    s3_env,
    s3_server,
)

runner = CliRunner()
AFTER = "2026-12-09"  # after every snapshot of the test fleet


def copy_of(src: lake.Lake, tmp_path: Path) -> lake.Lake:
    shutil.copytree(src.root, tmp_path / "lake")
    return lake.open_lake(str(tmp_path / "lake"))


def assert_golden(lk: lake.Lake) -> None:
    for name in QUERIES:
        assert csv_of(lake.run(lk, name)) == (GOLDEN / f"fleet_{name}.csv").read_text(), name


def live_files(lk: lake.Lake) -> list[str]:
    return sorted(n for n in listing(lk) if not n.startswith(("/compacted/", "/_")))


@pytest.fixture
def compacted(pushed: lake.Lake, tmp_path: Path) -> lake.Lake:  # noqa: F811
    lk = copy_of(pushed, tmp_path)
    res = lake_compact.compact(lk, AFTER)
    assert res.merged_files == len(live_files(pushed)) == 5 * 9  # 9 snapshots, 5 tables
    return lk


def test_compacted_lake_gives_the_same_rows(compacted: lake.Lake) -> None:
    lk = compacted
    assert live_files(lk) == []
    names = sorted(n for n in listing(lk) if n.startswith("/compacted/"))
    hosts = ["ci%2004%2Fx/2026-11", "ci-01/2026-11", "ci-02/2026-11", "ci-03/2026-12"]
    assert names == sorted(f"/compacted/{t}/host={h.split('/')[0]}/{h.split('/')[1]}.parquet"
                           for t in lake.COMPACT_TABLES for h in hosts)
    assert lake.members(lk, "leaks", "ci-02", "2026-11").keys() == {"s0", "s1", "s2", "s3", "s4"}
    assert_golden(lk)
    before = listing(lk)
    mtimes = {i.path: i.mtime_ns for i in lk.fs.get_file_info(pafs.FileSelector(lk.root, recursive=True))}
    again = lake_compact.compact(lk, AFTER)  # idempotent
    assert again.merged_files == 0 and again.groups == []
    assert listing(lk) == before
    assert {i.path: i.mtime_ns for i in lk.fs.get_file_info(pafs.FileSelector(lk.root, recursive=True))} == mtimes


def test_partition_pruning_after_compaction(compacted: lake.Lake) -> None:
    h = Wrapped(compacted.fs)
    lk = lake.Lake(pafs.PyFileSystem(h), compacted.root, compacted.url, compacted.rename)
    assert lake.run(lk, "leaks", {"host": "ci-01"}).num_rows == 7
    assert sorted(p[len(lk.root):] for p in h.opened if not p.endswith(lake.MARKER)) == [
        "/compacted/leaks/host=ci-01/2026-11.parquet", "/compacted/snapshots/host=ci-01/2026-11.parquet"]


def test_push_after_compaction_writes_nothing(fleet: Path, compacted: lake.Lake,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = listing(compacted)
    res = lake.push(compacted, all_snaps(fleet))
    assert {w.status for r in res for w in r.files} == {"unchanged"}
    assert listing(compacted) == before
    # another snapper version: the sources differ, the contents do not (computed again, still nothing written)
    monkeypatch.setattr(snapper, "__version__", "999.0")
    res = lake.push(compacted, all_snaps(fleet))
    assert {w.status for r in res for w in r.files} == {"unchanged"} and res[0].files[0].rows >= 0
    assert listing(compacted) == before


def _forget(lk: lake.Lake, table: str, host: str, month: str, sid: str) -> None:
    """Make a compacted file's footer disagree with a snapshot (as if its content had changed since)."""
    path = lake.compacted_path(lk, table, host, month)
    t = pq.read_table(path)
    meta = dict(t.schema.metadata)
    members = json.loads(meta[lake.MEMBERS_KEY])
    members[sid][1:] = ["other source", "other content"]
    meta[lake.MEMBERS_KEY] = json.dumps(members).encode()
    pq.write_table(t.replace_schema_metadata(meta), path)


def test_changed_snapshot_is_pushed_live_and_never_twice(fleet: Path, compacted: lake.Lake) -> None:  # noqa: F811
    lk = compacted
    _forget(lk, "leaks", "ci-01", "2026-11", "sample")
    res = lake.push(lk, all_snaps(fleet))
    changed = [(r.host, w.table, w.status) for r in res for w in r.files if w.status != "unchanged"]
    assert changed == [("ci-01", "leaks", "written")]
    assert live_files(lk) == ["/leaks/host=ci-01/date=2026-11-28/sample.parquet"]
    assert_golden(lk)  # the live file hides the compacted rows of that snapshot: no row twice
    res2 = lake_compact.compact(lk, AFTER)
    assert [(g.table, g.host, g.merged_files) for g in res2.groups] == [("leaks", "ci-01", 1)]
    assert live_files(lk) == []
    assert lake.members(lk, "leaks", "ci-01", "2026-11")["sample"][2] != "other content"
    assert_golden(lk)


class FailingDelete(Wrapped):
    def __init__(self, inner: pafs.FileSystem, after: int) -> None:
        super().__init__(inner)
        self.deletes, self.after = 0, after

    def delete_file(self, path: str) -> None:
        self.deletes += 1
        if self.deletes > self.after:
            raise OSError(f"injected failure deleting {path}")
        super().delete_file(path)


def test_compaction_cut_short_shows_every_row_once(pushed: lake.Lake, tmp_path: Path) -> None:  # noqa: F811
    lk = copy_of(pushed, tmp_path)
    h = FailingDelete(lk.fs, after=7)
    broken = lake.Lake(pafs.PyFileSystem(h), lk.root, lk.url, lk.rename)
    with pytest.raises(LakeError, match="injected failure deleting"):
        lake_compact.compact(broken, AFTER)
    left = live_files(lk)
    assert 0 < len(left) < 45 and any(n.startswith("/compacted/") for n in listing(lk))
    assert_golden(lk)  # written compacted files and the live files they merged: each row once
    res = lake_compact.compact(lk, AFTER)
    assert res.merged_files == len(left) and live_files(lk) == []
    assert_golden(lk)


def test_cli_compact(pushed: lake.Lake, tmp_path: Path) -> None:  # noqa: F811
    lk = copy_of(pushed, tmp_path)
    res = runner.invoke(app, ["lake", "compact", "--lake", lk.root, "--before", "2026-12-01"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("merged 40 files before 2026-12-01 into 15 compacted files (")
    assert live_files(lk) == sorted(f"/{t}/host=ci-03/date=2026-12-08/ctr_sample.parquet"
                                    for t in lake.COMPACT_TABLES)
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%d")  # the default: what is older than today (ctr_sample: 12-08)
    res = runner.invoke(app, ["lake", "compact", "--lake", lk.root])
    n = 5 if today > "2026-12-08" else 0
    assert res.exit_code == 0 and res.stdout.startswith(f"merged {n} files before {today} "), res.output
    res = runner.invoke(app, ["lake", "compact", "--lake", lk.root, "--before", "yesterday"])
    assert res.exit_code == 2 and "not a day" in res.stderr and len(res.stderr.splitlines()) == 1


def test_spark_reads_the_compacted_lake(fleet: Path, compacted: lake.Lake) -> None:  # noqa: F811
    pyspark = require_pyspark()
    lk = compacted
    _forget(lk, "leaks", "ci-01", "2026-11", "sample")
    lake.push(lk, all_snaps(fleet))  # one snapshot live again: the union and the live-wins rule in Spark SQL
    assert len(live_files(lk)) == 1
    try:
        for name in QUERIES:
            assert csv_of(lake.run_spark(lk, name)) == (GOLDEN / f"fleet_{name}.csv").read_text(), name
    finally:
        pyspark.sql.SparkSession.builder.getOrCreate().stop()




def test_compact_on_s3(fleet: Path, s3_env: str) -> None:  # noqa: F811
    lk = lake.open_lake(s3_env)
    lake.push(lk, all_snaps(fleet))
    res = lake_compact.compact(lk, AFTER)
    assert res.merged_files == 45 and live_files(lk) == []
    assert_golden(lk)
    before = listing(lk)
    res = lake.push(lk, all_snaps(fleet))
    assert {w.status for r in res for w in r.files} == {"unchanged"} and listing(lk) == before
    assert lake_compact.compact(lk, AFTER).groups == [] and listing(lk) == before


def test_emptied_dirs_are_removed_and_others_kept(pushed: lake.Lake, tmp_path: Path) -> None:  # noqa: F811
    lk = copy_of(pushed, tmp_path)
    busy = Path(lk.root) / "leaks/host=ci-01/date=2026-11-28"
    (busy / ".sample.parquet.tmp-cafe").write_bytes(b"a push under way")
    lake_compact.compact(lk, "2026-12-01")
    root = Path(lk.root)
    assert sorted(str(p.relative_to(root)) for p in root.glob("*/host=*/date=*")) == sorted(
        [f"{t}/host=ci-03/date=2026-12-08" for t in lake.COMPACT_TABLES] + ["leaks/host=ci-01/date=2026-11-28"])
    assert [p.name for p in busy.iterdir()] == [".sample.parquet.tmp-cafe"]
    assert not (root / "snapshots/host=ci-01").exists() and (root / "snapshots").is_dir()
