"""snapper.snapshot: atomic writing, stale-partial cleanup, validation on open."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from snapper.errors import OutputError, SnapshotError
from snapper.schema import ERRORS, FILES, LAYERS, SCHEMA_VERSION, TABLES
from snapper.snapshot import (
    MANIFEST,
    PARTIAL_MARK,
    SnapshotWriter,
    clean_stale_partials,
    connect,
    open_snapshot,
)
from snapper.walk import error_row


def write_snapshot(out: Path, n_errors: int = 3) -> Path:
    w = SnapshotWriter(out)
    w.write_rows(ERRORS, [error_row("walk", f"overlay2/x{i}", "lstat", None, "gone") for i in range(n_errors)])
    w.write_rows(LAYERS, [{"layer_id": "a" * 64, "name_class": "hex64", "file_count": 1}])
    return w.finish({"tool": "snapper", "note": "unit test"})


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("snaps") / "good")


def damaged(good: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    return bad


def dead_pid() -> int:
    """A pid that certainly belonged to a process that has exited (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --- writing -----------------------------------------------------------------------------------------------

def test_finish_writes_every_table_and_the_manifest(good: Path) -> None:
    names = sorted(p.name for p in good.iterdir())
    assert names == sorted([f"{t.name}.parquet" for t in TABLES] + [MANIFEST])
    m = json.loads((good / MANIFEST).read_text())
    assert m["schema_version"] == SCHEMA_VERSION and m["note"] == "unit test"
    assert m["rows"] == {t.name: {"errors": 3, "layers": 1}.get(t.name, 0) for t in TABLES}
    for t in TABLES:
        assert pq.ParquetFile(good / f"{t.name}.parquet").metadata.num_rows == m["rows"][t.name]
    assert not [p for p in good.parent.iterdir() if ".partial-" in p.name]


def test_modes_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        out = write_snapshot(tmp_path / "series" / "host" / "snap")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(out.parent).st_mode) == 0o700  # parents it created, too
    for p in out.iterdir():
        assert stat.S_IMODE(os.lstat(p).st_mode) == 0o600, p.name
        assert stat.S_ISREG(os.lstat(p).st_mode)


def test_existing_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        SnapshotWriter(tmp_path / "exists")
    os.symlink("nowhere", tmp_path / "link")
    with pytest.raises(OutputError, match="already exists"):
        SnapshotWriter(tmp_path / "link")
    assert (tmp_path / "exists" / "keep").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "link"]


def test_partial_is_hidden_until_finish_and_abort_removes_it(tmp_path: Path) -> None:
    w = SnapshotWriter(tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
    assert w.tmp == tmp_path / f".snap.partial-{os.getpid()}"
    assert (w.tmp / PARTIAL_MARK).exists()
    w.write_rows(ERRORS, [error_row("walk", "x", "lstat", None, "m")])
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_out_appearing_while_collecting_is_an_error(tmp_path: Path) -> None:
    w = SnapshotWriter(tmp_path / "snap")
    (tmp_path / "snap").mkdir()
    with pytest.raises(OutputError, match="appeared while collecting"):
        w.finish({})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]
    assert list((tmp_path / "snap").iterdir()) == []


def test_large_batches_are_split_into_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa

    w = SnapshotWriter(tmp_path / "snap")
    n = 300_000
    cols = {f.name: pa.nulls(n, f.type) for f in FILES.schema}
    cols["path"] = pa.array([f"p{i}" for i in range(n)])
    cols["layer_id"] = pa.array(["x"] * n).dictionary_encode()
    batch = pa.RecordBatch.from_arrays([cols[f.name] for f in FILES.schema], schema=FILES.schema)
    for start in range(0, n, 20_000):
        w.write_batch(FILES, batch.slice(start, 20_000))
    out = w.finish({})
    meta = pq.ParquetFile(out / "files.parquet").metadata
    assert meta.num_rows == n and meta.num_row_groups >= 2
    assert pq.read_table(out / "files.parquet", columns=["path"]).column(0).to_pylist()[-1] == f"p{n - 1}"


# --- stale partials ---------------------------------------------------------------------------------------

def test_stale_partials_of_dead_processes_are_removed(tmp_path: Path) -> None:
    def partial(name: str, marked: bool = True) -> Path:
        p = tmp_path / name
        p.mkdir()
        (p / "files.parquet").write_bytes(b"half")
        if marked:
            (p / PARTIAL_MARK).write_bytes(b"")
        return p

    dead = dead_pid()
    stale = partial(f".old.partial-{dead}")
    alive = partial(f".busy.partial-{os.getppid()}")  # a live process that is not us
    foreign = partial(f".mine.partial-{dead}", marked=False)  # not ours: no marker
    odd = partial(".x.partial-notapid")
    visible = partial(f"visible.partial-{dead}")
    os.symlink(stale, tmp_path / f".link.partial-{dead}")
    empty = tmp_path / f".early.partial-{dead}"  # killed between mkdir and writing the mark
    empty.mkdir()
    removed = clean_stale_partials(tmp_path)
    assert sorted(removed) == sorted([stale, empty])
    assert not stale.exists() and not empty.exists()
    for p in (alive, foreign, odd, visible):
        assert p.exists()
    assert (tmp_path / f".link.partial-{dead}").is_symlink()


def test_new_writer_cleans_stale_partials_next_to_it(tmp_path: Path) -> None:
    stale = tmp_path / f".earlier.partial-{dead_pid()}"
    stale.mkdir()
    (stale / PARTIAL_MARK).write_bytes(b"")
    w = SnapshotWriter(tmp_path / "next")
    assert w.removed_partials == [stale] and not stale.exists()
    w.finish({})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next"]


def test_clean_stale_partials_of_missing_dir(tmp_path: Path) -> None:
    assert clean_stale_partials(tmp_path / "nope") == []


# --- validation on open ----------------------------------------------------------------------------------

def test_open_good_snapshot_and_query_it(good: Path) -> None:
    snap = open_snapshot(good)
    assert snap.path == good and snap.manifest["rows"]["errors"] == 3
    con = connect(snap)
    assert con.execute("SELECT count(*) FROM errors").fetchone() == (3,)
    assert con.execute("SELECT count(*) FROM files").fetchone() == (0,)
    assert con.execute("SELECT manifest->>'note' FROM manifest").fetchone() == ("unit test",)


def _expect(path: Path, *fragments: str) -> SnapshotError:
    with pytest.raises(SnapshotError) as ei:
        open_snapshot(path)
    text = ei.value.line()
    assert "\n" not in text
    for f in fragments:
        assert f in text, text
    return ei.value


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    _expect(tmp_path / "missing", "not a snapshot directory")


def test_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    _expect(tmp_path / "f", "not a snapshot directory")


def test_a_random_directory(tmp_path: Path) -> None:
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "notes.txt").write_text("hello")
    _expect(tmp_path / "dir", "no manifest.json")


def test_an_interrupted_collect(good: Path, tmp_path: Path) -> None:
    bad = damaged(good, tmp_path)
    (bad / MANIFEST).unlink()
    _expect(bad, "no manifest.json")


@pytest.mark.parametrize("content,fragment", [
    (b"{not json", "unreadable manifest"),
    (b"\xff\xfe", "unreadable manifest"),
    (b"[1, 2]", "not a JSON object"),
])
def test_corrupt_manifest(good: Path, tmp_path: Path, content: bytes, fragment: str) -> None:
    bad = damaged(good, tmp_path)
    (bad / MANIFEST).write_bytes(content)
    _expect(bad, fragment)


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, None, str(SCHEMA_VERSION)])
def test_wrong_schema_version(good: Path, tmp_path: Path, version: object) -> None:
    bad = damaged(good, tmp_path)
    m = json.loads((bad / MANIFEST).read_text())
    if version is None:
        del m["schema_version"]
    else:
        m["schema_version"] = version
    (bad / MANIFEST).write_text(json.dumps(m))
    _expect(bad, "schema version", f"reads version {SCHEMA_VERSION}")


def test_missing_table(good: Path, tmp_path: Path) -> None:
    bad = damaged(good, tmp_path)
    (bad / "layers.parquet").unlink()
    _expect(bad, "layers.parquet", "table file missing")


@pytest.mark.parametrize("keep", [0, 4, 100, -8])
def test_truncated_parquet(good: Path, tmp_path: Path, keep: int) -> None:
    bad = damaged(good, tmp_path)
    p = bad / "errors.parquet"
    data = p.read_bytes()
    p.write_bytes(data[:keep])
    _expect(bad, "errors.parquet", "corrupt Parquet file")


def test_table_is_a_directory(good: Path, tmp_path: Path) -> None:
    bad = damaged(good, tmp_path)
    (bad / "files.parquet").unlink()
    (bad / "files.parquet").mkdir()
    _expect(bad, "files.parquet")


def test_row_count_disagrees_with_manifest(good: Path, tmp_path: Path) -> None:
    bad = damaged(good, tmp_path)
    m = json.loads((bad / MANIFEST).read_text())
    m["rows"]["errors"] = 4
    (bad / MANIFEST).write_text(json.dumps(m))
    _expect(bad, "errors.parquet", "3 rows but the manifest says 4")
