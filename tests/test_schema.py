"""snapper.schema: the declared schemas are what a collect really writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from snapper.collect import CollectOptions, collect
from snapper.metadata.containers import read_containers
from snapper.metadata.imagedb import read_images, read_tags
from snapper.metadata.layerdb import read_chains, read_mounts, read_write_sets
from snapper.metadata.overlay import read_links
from snapper.schema import BY_NAME, ERRORS, SCHEMA_VERSION, TABLES
from snapper.walk import error_row
from tests.synthetic import Standard, build_standard

# Columns that the standard synthetic root legitimately leaves null in every row.
ALL_NULL_OK = {
    "layerdb": {"problem"},
    "mounts": {"problem"},
    "images": {"problem"},
    "links": set(),
    "errors": {"errno"},
}
# Tables the standard root fills (the others need BuildKit, containerd, a daemon or mounts).
FILLED = ("files", "layers", "links", "layerdb", "mounts", "images", "tags", "containers", "write_sets", "errors")


@pytest.fixture(scope="module")
def std(tmp_path_factory: pytest.TempPathFactory) -> Standard:
    return build_standard(tmp_path_factory.mktemp("std") / "root")


@pytest.fixture(scope="module")
def snap(std: Standard, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("snaps") / "snap"
    collect(CollectOptions(root=str(std.root), out=str(out), hash_mode="partial", jobs=1, api=False))
    return out


def test_tables_are_well_formed() -> None:
    names = [t.name for t in TABLES]
    assert len(names) == len(set(names)) and set(BY_NAME) == set(names)
    for t in TABLES:
        cols = t.column_names
        assert len(cols) == len(set(cols)), t.name
        assert t.description and all(desc for _, _, desc in t.columns), t.name
        s = t.schema
        assert s.metadata == {b"table": t.name.encode(), b"schema_version": str(SCHEMA_VERSION).encode()}
        assert all(f.metadata and f.metadata[b"description"] for f in s)


LIST_TABLES = [t.name for t in TABLES if any(pa.types.is_list(f.type) for f in t.schema)]


@pytest.mark.parametrize("name", [t.name for t in TABLES])
def test_every_parquet_file_has_the_declared_schema(snap: Path, name: str) -> None:
    """Types, nullability, field and schema metadata, list item names included."""
    declared = BY_NAME[name].schema
    written = pq.ParquetFile(snap / f"{name}.parquet").schema_arrow
    assert written.equals(declared, check_metadata=True), f"{name}:\n{written}\n!=\n{declared}"
    # What readers get back from the data is typed the same (dictionary columns stay dictionaries).
    assert pq.read_table(snap / f"{name}.parquet").schema.equals(declared)


@pytest.mark.parametrize("name", LIST_TABLES)
def test_list_columns_read_back_exactly_as_declared(snap: Path, name: str) -> None:
    written = pq.ParquetFile(snap / f"{name}.parquet").schema_arrow
    assert written.equals(BY_NAME[name].schema, check_metadata=True)


def test_snapshot_holds_exactly_the_declared_tables(snap: Path) -> None:
    assert sorted(p.name for p in snap.iterdir()) == sorted([f"{t.name}.parquet" for t in TABLES] +
                                                             ["manifest.json"])


@pytest.mark.parametrize("name", FILLED)
def test_no_column_is_silently_null(snap: Path, name: str) -> None:
    """Rows are dicts written with ``row.get(column)``: a misspelt key would give an all-null column."""
    t = pq.read_table(snap / f"{name}.parquet")
    assert t.num_rows > 0, name
    all_null = {c for c in t.column_names if t.column(c).null_count == t.num_rows}
    assert all_null <= ALL_NULL_OK.get(name, set()), f"{name}: {sorted(all_null)}"


def test_reader_rows_have_exactly_the_table_columns(std: Standard) -> None:
    image_dir = std.root / "image" / "overlay2"
    tags, _ = read_tags(image_dir, "image/overlay2")
    produced = {
        "layerdb": read_chains(image_dir, "image/overlay2")[0],
        "mounts": read_mounts(image_dir, "image/overlay2")[0],
        "write_sets": read_write_sets(image_dir, "image/overlay2")[0],
        "tags": tags,
        "images": read_images(image_dir, "image/overlay2", tags)[0],
        "containers": read_containers(std.root)[0],
        "links": read_links(str(std.root / "overlay2").encode())[0],
    }
    for name, rows in produced.items():
        assert rows, name
        for r in rows:
            assert set(r) == set(BY_NAME[name].column_names), name


def test_error_rows_match_the_errors_table() -> None:
    row = error_row("walk", "overlay2/x", "lstat", FileNotFoundError(2, "No such file or directory"))
    assert list(row) == ERRORS.column_names
    assert row["errno"] == 2 and row["message"] == "No such file or directory"
    pa.RecordBatch.from_pylist([row], schema=ERRORS.schema)  # types fit
