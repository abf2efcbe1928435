"""image/<driver>/layerdb: read-only layers (sha256/), read-write mounts (mounts/), transactions (tmp/).

Format: moby ``daemon/internal/layer/filestore.go`` (``layer/filestore.go`` before v29). A chain dir holds
``cache-id`` (the overlay2 dir name), ``diff``, ``parent``, ``size``, ``tar-split.json.gz``. Since 20.10 an
interrupted delete leaves ``<chain>-<random64>-removing`` (moby#39193). Mount dirs hold ``mount-id``,
``init-id`` (absent for BuildKit transient mounts) and ``parent``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from snapper.metadata import Rows, clean_text, int64
from snapper.metadata.files import read_optional
from snapper.walk import error_row, type_char

# \Z, not $: "$" also matches before a trailing newline, and a name or file may end in one.
HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
BUILDKIT_ID = re.compile(r"^[0-9a-z]{25}\Z")
REMOVING = re.compile(r"^([0-9a-f]{64})-([0-9a-z]+)-removing\Z")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_DECIMAL = re.compile(r"^-?[0-9]+\Z")


def name_class(name: str) -> str:
    if HEX64.match(name):
        return "hex64"
    if name.endswith("-init") and HEX64.match(name[:-5]):
        return "hex64-init"
    if BUILDKIT_ID.match(name):
        return "buildkit25"
    return "other"


def _scandir(path: Path, source: str, rel: str, errors: Rows) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as e:
        errors.append(error_row(source, rel, "scandir", e))
        return []


def _mtime(entry: os.DirEntry[str]) -> int | None:
    try:
        return entry.stat(follow_symlinks=False).st_mtime_ns
    except OSError:
        return None


def read_chains(image_dir: Path, rel: str) -> tuple[Rows, Rows]:
    """layerdb/sha256/*: one row per entry, -removing leftovers flagged."""
    rows: Rows = []
    errors: Rows = []
    base = image_dir / "layerdb" / "sha256"
    for entry in _scandir(base, "layerdb", f"{rel}/layerdb/sha256", errors):
        name = clean_text(entry.name)
        obj = f"{rel}/layerdb/sha256/{name}"
        row: dict[str, Any] = {"dir_name": name, "chain_id": None, "diff_id": None, "parent": None,
                               "cache_id": None, "size": None, "removing": False, "has_tar_split": False,
                               "mtime_ns": _mtime(entry), "problem": None}
        problems: list[str] = []
        m = REMOVING.match(entry.name)
        if m:
            row["removing"] = True
            row["chain_id"] = "sha256:" + m.group(1)
        elif HEX64.match(entry.name):
            row["chain_id"] = "sha256:" + entry.name
        else:
            problems.append("name is not a chain id")
        if not entry.is_dir(follow_symlinks=False):
            row["problem"] = "; ".join([*problems, "not a directory"])
            rows.append(row)
            continue
        d = Path(entry.path)
        try:
            row["cache_id"] = read_optional(d / "cache-id")
            row["diff_id"] = read_optional(d / "diff")
            row["parent"] = read_optional(d / "parent") or None
            size = read_optional(d / "size")
            if size is not None:
                row["size"] = int64(int(size)) if _DECIMAL.match(size) and len(size) < 30 else None
                if row["size"] is None:
                    problems.append(f"size is not a number (64-bit decimal): {size[:40]!r}")
            row["has_tar_split"] = os.path.lexists(d / "tar-split.json.gz")
        except OSError as e:
            errors.append(error_row("layerdb", obj, "read", e))
            problems.append(f"unreadable: {e.strerror or e}")
        if not row["cache_id"]:
            problems.append("no cache-id")
        if row["diff_id"] is not None and not DIGEST.match(row["diff_id"]):
            problems.append("diff is not a sha256 digest")
        if row["parent"] is not None and not DIGEST.match(row["parent"]):
            problems.append("parent is not a sha256 digest")
        if problems:
            row["problem"] = "; ".join(problems)
            errors.append(error_row("layerdb", obj, "parse", None, row["problem"]))
        rows.append(row)
    return rows, errors


def read_mounts(image_dir: Path, rel: str) -> tuple[Rows, Rows]:
    """layerdb/mounts/*: container RW layers and BuildKit transient mounts."""
    rows: Rows = []
    errors: Rows = []
    base = image_dir / "layerdb" / "mounts"
    for entry in _scandir(base, "mounts", f"{rel}/layerdb/mounts", errors):
        name = clean_text(entry.name)
        obj = f"{rel}/layerdb/mounts/{name}"
        cls = name_class(name)
        row: dict[str, Any] = {"name": name, "name_class": cls if cls != "hex64-init" else "other",
                               "mount_id": None, "init_id": None, "parent": None, "mtime_ns": _mtime(entry),
                               "problem": None}
        if not entry.is_dir(follow_symlinks=False):
            row["problem"] = "not a directory"
            rows.append(row)
            continue
        d = Path(entry.path)
        try:
            row["mount_id"] = read_optional(d / "mount-id")
            row["init_id"] = read_optional(d / "init-id") or None
            row["parent"] = read_optional(d / "parent") or None
        except OSError as e:
            errors.append(error_row("mounts", obj, "read", e))
            row["problem"] = f"unreadable: {e.strerror or e}"
        if not row["mount_id"] and row["problem"] is None:
            row["problem"] = "no mount-id"
            errors.append(error_row("mounts", obj, "parse", None, "no mount-id"))
        rows.append(row)
    return rows, errors


def tree_size(path: str) -> tuple[int, int]:
    files = 0
    size = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    files += 1
                    size += st.st_size
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(e.path)
        except OSError:
            continue
    return files, size


def read_write_sets(image_dir: Path, rel: str) -> tuple[Rows, Rows]:
    """layerdb/tmp/*: every entry is residue of an interrupted registration (or one in flight)."""
    rows: Rows = []
    errors: Rows = []
    for entry in _scandir(image_dir / "layerdb" / "tmp", "write_sets", f"{rel}/layerdb/tmp", errors):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as e:
            errors.append(error_row("write_sets", f"{rel}/layerdb/tmp/{clean_text(entry.name)}", "lstat", e))
            continue
        files, size = tree_size(entry.path) if stat.S_ISDIR(st.st_mode) else (0, st.st_size)
        rows.append({"name": clean_text(entry.name), "entry_type": type_char(st.st_mode), "files": files, "bytes": size,
                     "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns})
    return rows, errors


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI identity.ChainID of every prefix: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out
