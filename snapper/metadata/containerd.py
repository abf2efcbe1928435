"""containerd image store: snapshotter ``metadata.db`` records, ``meta.db`` snapshots and leases, and the
``snapshots/<n>`` directories (containerd ``core/snapshots/storage/bolt.go``, ``core/metadata/buckets.go``).

The directory name is the decimal ``id`` of a snapshotter record; a dir with no record is pending GC
(the overlayfs snapshotter's Cleanup deletes it on the next GC pass).
"""

from __future__ import annotations

import hashlib
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


def _text(b: bytes | Bucket | None) -> str | None:
    return b.decode("utf-8", "replace") if isinstance(b, bytes) and b else None


SYSTEM_ROOT = Path("/var/lib/containerd")
CONTENT = "io.containerd.content.v1.content"
# time.Time.MarshalBinary counts seconds from 0001-01-01 UTC
_GO_EPOCH_OFFSET = 62135596800


def store_roots(root: Path, containerd_store: bool, extra: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """(path, how it shows in rows) of every containerd root to collect: the managed containerd under the data
    root (``containerd/daemon``), the system one when the containerd image store is in use, and each
    ``--containerd-root`` (shown as its absolute path)."""
    out = [(root / "containerd" / "daemon", "containerd/daemon")]
    if (root / META).exists():  # --root is itself a containerd root (a host with containerd and no dockerd)
        out.append((root, str(root)))
    if containerd_store:
        out.append((SYSTEM_ROOT, str(SYSTEM_ROOT)))
    for e in extra:
        p = Path(os.path.abspath(e))
        out.append((p, str(p)))
    seen: set[str] = set()
    found: list[tuple[Path, str]] = []
    for p, label in out:
        try:
            real = os.path.realpath(p)
        except OSError:
            continue
        if real in seen or not p.is_dir():
            continue
        seen.add(real)
        found.append((p, label))
    return found


def go_time_ns(raw: bytes | Bucket | None) -> int | None:
    """A Go ``time.Time`` as MarshalBinary writes it (containerd's createdat/updatedat) -> ns since epoch."""
    if not isinstance(raw, bytes) or len(raw) < 15 or raw[0] not in (1, 2):
        return None
    sec = int.from_bytes(raw[1:9], "big", signed=True) - _GO_EPOCH_OFFSET
    nsec = int.from_bytes(raw[9:13], "big")
    return int64(sec * 1_000_000_000 + nsec) if nsec < 1_000_000_000 else None


def rfc3339_ns(text: str | None) -> int | None:
    """containerd.io/gc.expire (RFC 3339) -> ns since epoch; None when it does not parse (containerd then
    ignores the label)."""
    if not text:
        return None
    import re
    from datetime import datetime

    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", text.strip())
    if m is None:
        return None
    try:
        base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    except ValueError:
        return None
    frac = int((m.group(2) or ".0")[1:].ljust(9, "0"))
    return int64(int(base.timestamp()) * 1_000_000_000 + frac)


def read_snapshotter(stores: list[tuple[Path, str]]) -> tuple[Rows, Rows]:
    """One row per snapshotter record and per ``snapshots/<n>`` dir (joined on id)."""
    rows: Rows = []
    errors: Rows = []
    for store, label in stores:
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
                           "parent_key": _text(parent),
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


def lease_rows(label: str, objects: Rows, labels: Rows, held: Rows) -> Rows:
    """The ``leases`` table rows of one meta.db (a row per held snapshot, one row for a lease holding none),
    from what :func:`read_meta` read: the file is read once."""
    expire = {(lb["namespace"], lb["key"]): lb["value"] for lb in labels
              if lb["type"] == "lease" and lb["label"] == "containerd.io/gc.expire"}
    snaps: dict[tuple[str, str], list[tuple[str | None, str | None]]] = {}
    for h in held:
        if h["type"] == "snapshot":
            snaps.setdefault((h["namespace"], h["lease_id"]), []).append((h["snapshotter"], h["key"]))
    rows: Rows = []
    for o in objects:
        if o["type"] != "lease":
            continue
        k = (o["namespace"], o["key"])
        for snapshotter, key in snaps.get(k) or [(None, None)]:
            rows.append({"db": f"{label}/{META}", "namespace": k[0], "lease_id": k[1], "snapshotter": snapshotter,
                         "snapshot_key": key, "expire": expire.get(k)})
    return rows


# --- meta.db: every object, its labels, and what leases hold ----------------------------------------------

_OBJECT_BUCKETS = (("images", "image"), ("containers", "container"), ("leases", "lease"),
                   ("sandboxes", "sandbox"))


def read_meta(store: Path, label: str) -> tuple[Rows, Rows, Rows, Rows, str]:
    """(objects, labels, lease resources, errors, status) of ``<store>/io.containerd.metadata.v1.bolt/meta.db``.

    Read from one consistent copy of the file; a damaged database is one error row and status
    ``error: ...`` (the verdicts then say unknown for this store, never leaked)."""
    objects: Rows = []
    labels: Rows = []
    held: Rows = []
    errors: Rows = []
    if not (store / META).exists():
        return objects, labels, held, errors, "missing"
    db = open_bolt(store, META, "ctr_objects", errors)
    if db is None:
        for e in errors:
            e["object"] = f"{label}/{META}"
        return objects, labels, held, errors, f"error: {errors[-1]['message'] if errors else 'unreadable'}"

    def add(ns: str, typ: str, key: str, b: Bucket, snapshotter: str | None = None, **extra: Any) -> None:
        created = go_time_ns(b.get(b"createdat"))
        updated = go_time_ns(b.get(b"updatedat"))
        expire = None
        lb = b.bucket(b"labels")
        for name, value in lb.items() if lb is not None else []:
            if not isinstance(value, bytes):
                continue
            n = clean_text(name.decode("utf-8", "replace"))
            v = clean_text(value.decode("utf-8", "replace"))
            labels.append({"store": label, "namespace": ns, "type": typ, "key": key, "snapshotter": snapshotter,
                           "label": n, "value": v})
            if n == "containerd.io/gc.expire":
                expire = rfc3339_ns(v)
        row = {"store": label, "namespace": ns, "type": typ, "key": key, "snapshotter": snapshotter,
               "target": None, "parent": None, "size": None, "created_ns": created, "updated_ns": updated,
               "expire_ns": expire}
        row.update(extra)
        objects.append(row)

    try:
        v1 = db.root().bucket(b"v1")
        for nsk, nsb in v1.items() if v1 is not None else []:
            if not isinstance(nsb, Bucket):
                continue
            ns = clean_text(nsk.decode("utf-8", "replace"))
            for bucket_name, typ in _OBJECT_BUCKETS:
                ob = nsb.bucket(bucket_name.encode())
                for k, b in ob.items() if ob is not None else []:
                    if not isinstance(b, Bucket):
                        continue
                    key = clean_text(k.decode("utf-8", "replace"))
                    if typ == "image":
                        tb = b.bucket(b"target")
                        add(ns, typ, key, b, target=_text(tb.get(b"digest")) if tb is not None else None)
                    elif typ == "container":
                        add(ns, typ, key, b, snapshotter=_text(b.get(b"snapshotter")),
                            target=_text(b.get(b"snapshotKey")))
                    else:
                        add(ns, typ, key, b)
                    if typ == "lease":
                        _lease_resources(label, ns, key, b, held)
            sb = nsb.bucket(b"snapshots")
            for ssk, ssb in sb.items() if sb is not None else []:
                if not isinstance(ssb, Bucket):
                    continue
                ss = clean_text(ssk.decode("utf-8", "replace"))
                for k, b in ssb.items():
                    if isinstance(b, Bucket):
                        add(ns, "snapshot", clean_text(k.decode("utf-8", "replace")), b, snapshotter=ss,
                            target=_text(b.get(b"name")), parent=_text(b.get(b"parent")))
            cb = nsb.bucket(b"content")
            blobs = cb.bucket(b"blob") if cb is not None else None
            for k, b in blobs.items() if blobs is not None else []:
                if isinstance(b, Bucket):
                    raw = b.get(b"size")
                    size = _varint(raw) if isinstance(raw, bytes) else None
                    add(ns, "content", clean_text(k.decode("utf-8", "replace")), b, size=size)
            ingests = cb.bucket(b"ingests") if cb is not None else None
            for k, b in ingests.items() if ingests is not None else []:
                if isinstance(b, Bucket):
                    ea = b.get(b"expireat")
                    ref = b.get(b"ref")
                    add(ns, "ingest", clean_text(k.decode("utf-8", "replace")), b, target=_text(b.get(b"expected")),
                        parent=hashlib.sha256(ref).hexdigest() if isinstance(ref, bytes) and ref else None,
                        expire_ns=go_time_ns(ea))
    except BoltError as e:
        errors.append(error_row("ctr_objects", f"{label}/{META}", "parse", e, str(e)))
        return [], [], [], errors, f"error: {e}"
    return objects, labels, held, errors, "ok"


def _varint(raw: bytes) -> int | None:
    """Go binary.Varint (zig-zag), as containerd stores sizes."""
    u = uvarint(raw)
    if u is None:
        return None
    return int64((u >> 1) ^ -(u & 1))


def _lease_resources(label: str, ns: str, lease: str, b: Bucket, held: Rows) -> None:
    for sub, typ in ((b"content", "content"), (b"ingests", "ingest")):
        rb = b.bucket(sub)
        for k in rb.keys() if rb is not None else []:
            held.append({"store": label, "namespace": ns, "lease_id": lease, "type": typ, "snapshotter": None,
                         "key": clean_text(k.decode("utf-8", "replace"))})
    sb = b.bucket(b"snapshots")
    for ss, ssb in sb.items() if sb is not None else []:
        if isinstance(ssb, Bucket):
            for k in ssb.keys():  # noqa: SIM118
                held.append({"store": label, "namespace": ns, "lease_id": lease, "type": "snapshot",
                             "snapshotter": clean_text(ss.decode("utf-8", "replace")),
                             "key": clean_text(k.decode("utf-8", "replace"))})


# --- the content store: blobs and ingests on disk ---------------------------------------------------------

def read_content(store: Path, label: str) -> tuple[Rows, Rows, str]:
    """``ctr_dirs`` rows for ``blobs/sha256/*`` files and ``ingest/*`` dirs of the content store."""
    from snapper.metadata.layerdb import tree_size

    rows: Rows = []
    errors: Rows = []
    base = store / CONTENT
    if not base.is_dir():
        return rows, errors, "missing"
    for sub, kind in (("blobs/sha256", "blob"), ("ingest", "ingest")):
        d = base / sub
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            continue
        except OSError as e:
            errors.append(error_row("ctr_dirs", f"{label}/{CONTENT}/{sub}", "scandir", e))
            continue
        for n in names:
            shown = clean_text(n)
            rel = f"{label}/{CONTENT}/{sub}/{shown}"
            try:
                st = os.lstat(d / n)
            except FileNotFoundError:
                continue
            except OSError as e:
                errors.append(error_row("ctr_dirs", rel, "lstat", e))
                continue
            if kind == "ingest":
                files, nbytes = tree_size(str(d / n))
                apparent = nbytes
            else:
                files, nbytes, apparent = 1, st.st_blocks * 512, st.st_size
            rows.append({"store": label, "kind": kind, "name": f"sha256:{shown}" if kind == "blob" else shown,
                         "dir_id": None, "path": rel, "bytes": nbytes, "apparent_bytes": apparent, "files": files,
                         "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "walk_status": "ok"})
    return rows, errors, "ok"


def find_containerd(store: Path) -> tuple[int | None, int | None]:
    """(pid, start ns) of the containerd process serving ``store`` (``--root``/``-root`` on its command line,
    ``root = ...`` in its ``--config`` file, else the default /var/lib/containerd); (None, None) if none runs."""
    from snapper.docker_root import _cmdline, _flag_values, process_start_ns

    want = os.path.realpath(store)
    try:
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    except OSError:
        return None, None
    for pid in pids:
        args = _cmdline(pid)
        if not args or os.path.basename(args[0]) != "containerd":
            continue
        roots = _flag_values(args, "--root", "-root", "-r")
        configs = _flag_values(args, "--config", "-c")
        root = roots[-1] if roots else _config_root(configs[-1]) if configs else None
        if os.path.realpath(root or str(SYSTEM_ROOT)) == want:
            return pid, process_start_ns(pid)
    return None, None


def _config_root(path: str) -> str | None:
    try:
        import tomllib

        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, ValueError):
        return None
    root = cfg.get("root")
    return root if isinstance(root, str) else None
