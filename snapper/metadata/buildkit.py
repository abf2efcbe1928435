"""BuildKit state under <root>/buildkit, read with the read-only bbolt reader (on an in-memory copy).

- ``metadata_v2.db`` bucket ``_main/<record-id>/<key>``: cache records, values JSON ``{"value": ...}``
  (moby/buildkit ``cache/metadata.go``). A record without ``cache.deleted`` is a liveness root.
- ``snapshots.db`` top-level bucket per snapshot key with ``parent``, ``committed`` (the active key whose
  graph dir holds the data), ``iscommitted``, ``chainid``, ``size`` (moby
  ``daemon/internal/builder-next/adapters/snapshot/snapshot.go``). A mapping, not a root: stale buckets are
  normal.
- ``containerdmeta.db`` ``v1/buildkit/leases/<id>/snapshots/<snapshotter>/<key>``: the leases that hold keys.
- ``executor/<id>/``: runc bundles; left behind (often still mounted) when the daemon dies mid-RUN.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from snapper.bbolt import BoltDB, BoltError, Bucket, read_consistent
from snapper.metadata import Rows, clean_text, int64
from snapper.walk import error_row

RECORD_DBS = ("buildkit/metadata_v2.db", "buildkit/containerd-overlayfs/metadata_v2.db")


def open_bolt(root: Path, rel: str, source: str, errors: Rows) -> BoltDB | None:
    path = root / rel
    if not path.exists():
        return None
    try:
        return read_consistent(path)
    except BoltError as e:
        errors.append(error_row(source, rel, "parse", e, str(e)))
    except OSError as e:
        errors.append(error_row(source, rel, "read", e))
    return None


def _value(raw: bytes) -> Any:
    """``{"value": X, "index": ...}`` -> X; empty bytes (a cleared key) -> None."""
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc.get("value") if isinstance(doc, dict) else None


def _str(v: Any) -> str | None:
    return clean_text(v) if isinstance(v, str) and v else None


def _int(v: Any) -> int | None:
    return int64(v)


def read_records(root: Path) -> tuple[Rows, Rows]:
    rows: Rows = []
    errors: Rows = []
    for rel in RECORD_DBS:
        db = open_bolt(root, rel, "buildkit_records", errors)
        if db is None:
            continue
        try:
            main = db.root().bucket(b"_main")
            if main is None:
                continue
            for rid, rec in main.items():
                if not isinstance(rec, Bucket):
                    continue
                vals: dict[str, Any] = {}
                for k, v in rec.items():
                    if isinstance(v, bytes):
                        vals[k.decode("utf-8", "replace")] = _value(v)
                record_id = rid.decode("utf-8", "replace")
                rows.append({
                    "db": rel,
                    "record_id": record_id,
                    "record_type": _str(vals.get("cache.recordType")) or "regular",
                    "description": _str(vals.get("cache.description")),
                    "parent": _str(vals.get("cache.parent")),
                    "equal_mutable": _str(vals.get("cache.equalMutable")),
                    "snapshot_key": _str(vals.get("cache.snapshot")) or record_id,
                    "deleted": vals.get("cache.deleted") is True,
                    "committed": vals.get("snapshot.committed") is True,
                    "chain_id": _str(vals.get("cache.chainID")),
                    "blob_chain_id": _str(vals.get("cache.blobChainID")),
                    "diff_id": _str(vals.get("cache.diffID")),
                    "blob_only": vals.get("cache.blobonly") is True,
                    "created_ns": _int(vals.get("cache.createdAt")),
                    "last_used_ns": _int(vals.get("cache.lastUsedAt")),
                    "usage_count": _int(vals.get("cache.usageCount")),
                    "size": _int(vals.get("snapshot.size")),
                })
        except BoltError as e:
            errors.append(error_row("buildkit_records", rel, "parse", e, str(e)))
    return rows, errors


def read_snapshot_keys(root: Path) -> tuple[Rows, Rows]:
    rows: Rows = []
    errors: Rows = []
    rel = "buildkit/snapshots.db"
    db = open_bolt(root, rel, "buildkit_snapshots", errors)
    if db is None:
        return rows, errors
    try:
        for key, b in db.root().items():
            if not isinstance(b, Bucket):
                continue
            vals = {k: v for k, v in b.items() if isinstance(v, bytes)}

            def text(name: bytes, vals: dict[bytes, bytes] = vals) -> str | None:
                v = vals.get(name)
                return v.decode("utf-8", "replace") if v else None

            size = text(b"size")
            rows.append({
                "key": key.decode("utf-8", "replace"),
                "parent": text(b"parent"),
                "committed": text(b"committed"),
                "is_committed": b"iscommitted" in vals,
                "chain_id": text(b"chainid"),
                "size": int64(int(size)) if size and size.isascii() and size.isdigit() and len(size) < 30 else None,
            })
    except BoltError as e:
        errors.append(error_row("buildkit_snapshots", rel, "parse", e, str(e)))
    return rows, errors


def read_leases(root: Path, rel: str, source: str) -> tuple[Rows, Rows]:
    """Leases of a containerd-format metadata DB: (namespace, lease, snapshotter, key) rows."""
    rows: Rows = []
    errors: Rows = []
    db = open_bolt(root, rel, source, errors)
    if db is None:
        return rows, errors
    try:
        v1 = db.root().bucket(b"v1")
        for ns, nsb in v1.items() if v1 is not None else []:
            if not isinstance(nsb, Bucket):
                continue
            leases = nsb.bucket(b"leases")
            for lid, lb in leases.items() if leases is not None else []:
                if not isinstance(lb, Bucket):
                    continue
                labels = lb.bucket(b"labels")
                expire = labels.get(b"containerd.io/gc.expire") if labels is not None else None
                snaps = lb.bucket(b"snapshots")
                keys: list[tuple[str | None, str | None]] = []
                for sn, sb in snaps.items() if snaps is not None else []:
                    if isinstance(sb, Bucket):
                        keys += [(sn.decode("utf-8", "replace"), k.decode("utf-8", "replace")) for k in sb.keys()]  # noqa: SIM118
                for snapshotter, key in keys or [(None, None)]:
                    rows.append({"db": rel, "namespace": ns.decode("utf-8", "replace"),
                                 "lease_id": lid.decode("utf-8", "replace"), "snapshotter": snapshotter,
                                 "snapshot_key": key,
                                 "expire": expire.decode("utf-8", "replace") if isinstance(expire, bytes) else None})
    except BoltError as e:
        errors.append(error_row(source, rel, "parse", e, str(e)))
    return rows, errors


def read_residue(root: Path, active_driver: str | None) -> tuple[Rows, Rows]:
    """Directories outside overlay2/ that only ever hold transient or dormant state."""
    rows: Rows = []
    errors: Rows = []
    from snapper.docker_root import GRAPH_DRIVERS
    from snapper.metadata.layerdb import tree_size
    from snapper.walk import type_char

    def add(kind: str, rel: str) -> None:
        p = root / rel
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        except OSError as e:
            errors.append(error_row("residue", rel, "lstat", e))
            return
        files, nbytes = tree_size(str(p)) if type_char(st.st_mode) == "d" else (1, st.st_size)
        rows.append({"kind": kind, "path": clean_text(rel), "entry_type": type_char(st.st_mode),
                     "mtime_ns": st.st_mtime_ns, "files": files, "bytes": nbytes})

    for base, kind in (("buildkit/executor", "buildkit_executor"),
                       ("buildkit/containerd-overlayfs/executor", "buildkit_executor")):
        try:
            names = sorted(os.listdir(root / base))
        except OSError:
            continue
        for n in names:
            if (root / base / n).is_dir() and not (root / base / n).is_symlink():  # bundles; files are normal
                add(kind, f"{base}/{n}")
    for drv in GRAPH_DRIVERS:
        if drv != active_driver and (root / drv).is_dir():
            add("dormant_driver_tree", drv)
    for extra in ("tmp", "tmp-old"):
        try:
            with os.scandir(root / extra) as it:
                nonempty = any(True for _ in it)
        except OSError:  # absent or not a directory: nothing to report
            continue
        if nonempty and not (root / extra).is_symlink():
            add("daemon_tmp", extra)
    return rows, errors
