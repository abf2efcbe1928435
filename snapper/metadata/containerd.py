"""containerd image store: snapshotter ``metadata.db`` records, ``meta.db`` snapshots and leases, and the
``snapshots/<n>`` directories (containerd ``core/snapshots/storage/bolt.go``, ``core/metadata/buckets.go``).

The directory name is the decimal ``id`` of a snapshotter record; a dir with no record is pending GC
(the overlayfs snapshotter's Cleanup deletes it on the next GC pass).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from snapper.bbolt import BoltError, Bucket
from snapper.metadata import Rows, clean_text, int64
from snapper.metadata.buildkit import open_bolt
from snapper.walk import error_row

SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
META = "io.containerd.metadata.v1.bolt/meta.db"
KINDS = {0: "unknown", 1: "view", 2: "active", 3: "committed"}


def uvarint(data: bytes) -> int | None:
    """Go encoding/binary Uvarint; None when malformed."""
    x = 0
    shift = 0
    for i, b in enumerate(data[:10]):
        x |= (b & 0x7F) << shift
        if b < 0x80:
            return x if i < 9 or b <= 1 else None
        shift += 7
    return None


def _text(b: bytes | None) -> str | None:
    return b.decode("utf-8", "replace") if b else None


def store_roots(root: Path, containerd_store: bool) -> list[tuple[Path, str]]:
    """(path, how it shows in rows): the managed containerd under the data root, and the system one when the
    containerd image store is in use."""
    out = [(root / "containerd" / "daemon", "containerd/daemon")]
    if containerd_store:
        out.append((Path("/var/lib/containerd"), "/var/lib/containerd"))
    return [(p, label) for p, label in out if p.is_dir()]


def read_snapshotter(root: Path, containerd_store: bool) -> tuple[Rows, Rows]:
    """One row per snapshotter record and per ``snapshots/<n>`` dir (joined on id)."""
    rows: Rows = []
    errors: Rows = []
    for store, label in store_roots(root, containerd_store):
        base = store / SNAPSHOTTER
        records: dict[int, dict[str, Any]] = {}
        db = open_bolt(store, f"{SNAPSHOTTER}/metadata.db", "containerd_snapshots", errors) \
            if (base / "metadata.db").exists() else None
        if db is not None:
            try:
                v1 = db.root().bucket(b"v1")
                snaps = v1.bucket(b"snapshots") if v1 is not None else None
                for key, b in snaps.items() if snaps is not None else []:
                    if not isinstance(b, Bucket):
                        continue
                    raw_id = b.get(b"id")
                    sid = int64(uvarint(raw_id)) if isinstance(raw_id, bytes) else None
                    raw_kind = b.get(b"kind")
                    kind = KINDS.get(raw_kind[0], "unknown") if isinstance(raw_kind, bytes) and raw_kind else None
                    parent = b.get(b"parent")
                    backend = key.decode("utf-8", "replace")
                    parts = backend.split("/", 2)
                    rec: dict[str, Any] = {"store": label, "backend_key": backend,
                           "namespace": parts[0] if len(parts) == 3 else None,
                           "key": parts[2] if len(parts) == 3 else backend, "snapshot_id": sid, "kind": kind,
                           "parent_key": _text(parent) if isinstance(parent, bytes) else None,
                           "dir": None, "dir_exists": False}
                    if sid is not None:
                        records[sid] = rec
                    rows.append(rec)
            except BoltError as e:
                errors.append(error_row("containerd_snapshots", f"{label}/{SNAPSHOTTER}/metadata.db", "parse", e,
                                        str(e)))
        try:
            names = sorted(os.listdir(base / "snapshots"))
        except OSError:
            names = []
        for n in names:
            # isdigit() is also true for "\u00b2" and other non-ASCII digits that int() refuses or reads
            num = int64(int(n)) if n.isascii() and n.isdigit() and len(n) < 30 else None
            found = records.get(num) if num is not None else None
            shown = clean_text(n)
            if found is not None:
                found["dir"] = f"{label}/{SNAPSHOTTER}/snapshots/{shown}"
                found["dir_exists"] = True
            else:
                rows.append({"store": label, "backend_key": None, "namespace": None, "key": None,
                             "snapshot_id": num, "kind": None, "parent_key": None,
                             "dir": f"{label}/{SNAPSHOTTER}/snapshots/{shown}", "dir_exists": True})
    return rows, errors


def read_meta_leases(root: Path, containerd_store: bool) -> tuple[Rows, Rows]:
    """Leases of every containerd meta.db (the managed one and, in containerd-store mode, the system one)."""
    from snapper.metadata.buildkit import read_leases

    rows: Rows = []
    errors: Rows = []
    for store, label in store_roots(root, containerd_store):
        if not (store / META).exists():
            continue
        r, e = read_leases(store, META, "containerd_leases")
        for row in r:
            row["db"] = f"{label}/{META}"
        rows += r
        errors += e
    return rows, errors
