"""The containerd store: Docker's containerd image store (``<data root>/containerd/daemon``, or the system
containerd in containerd-store mode) and plain containerd hosts (``--root``/``--containerd-root`` a containerd
root). Its layer dirs are the overlayfs snapshotter's ``snapshots/<n>``, walked into files under layer_id
``<store>/snapshots/<n>``; it reads every namespace of ``meta.db``, the snapshotter's ``metadata.db`` and the
content store (``snapper.metadata.containerd``). Its verdicts are ``queries/ctr_leases.sql`` ->
``ctr_reach.sql`` -> ``ctr_verdicts.sql``, after containerd's own GC rules."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from snapper.fileswriter import _SnapshotWriter
from snapper.metadata import Rows
from snapper.metadata.containerd import (
    SNAPSHOTTER,
    find_containerd,
    lease_rows,
    read_content,
    read_meta,
    read_snapshotter,
    store_roots,
)
from snapper.schema import (
    CONTAINERD_SNAPSHOTS,
    CTR_DIRS,
    CTR_LABELS,
    CTR_LEASE_RESOURCES,
    CTR_OBJECTS,
    CTR_STORES,
    LEASES,
)
from snapper.snapshot import SnapshotWriter
from snapper.stores import CollectContext, Progress
from snapper.walk import LayerResult, error_row, show_bytes
from snapper.walkpool import walk_layers


class ContainerdStore:
    name = "containerd"

    def collect(self, ctx: CollectContext) -> dict[str, Any]:
        t = time.time()
        stores = store_roots(ctx.root, ctx.layout.containerd_store, ctx.containerd_roots)
        dirs = _collect_containerd(ctx.writer, stores, ctx.daemon_started_ns, ctx.errors)
        ctx.durations["containerd_metadata_s"] = round(time.time() - t, 3)
        t = time.time()
        dirs += _walk_snapshot_dirs(stores, ctx.hash_mode, ctx.mount_points, ctx.jobs, files_writer=ctx.writer,
                                    errors=ctx.errors, progress=ctx.progress)
        ctx.writer.write_rows(CTR_DIRS, dirs)
        ctx.durations["containerd_walk_s"] = round(time.time() - t, 3)
        return {"containerd_stores": [label for _, label in stores]}


def _collect_containerd(writer: SnapshotWriter, stores: list[tuple[Path, str]], docker_started_ns: int | None,
                        errors: Rows) -> Rows:
    """meta.db objects, labels and leases with what they hold, the snapshotter's records, the content store,
    and one ctr_stores row per store. A managed store (dockerd's own containerd) takes dockerd's start: its
    leases belong to dockerd's operations, which die with dockerd."""
    objects: Rows = []
    labels: Rows = []
    held: Rows = []
    leases: Rows = []
    snaps: Rows = []
    content: Rows = []
    store_rows: Rows = []
    for path, label in stores:
        o, lb, h, e, meta_status = read_meta(path, label)
        objects += o
        labels += lb
        held += h
        leases += lease_rows(label, o, lb, h)
        errors += e
        records, e = read_snapshotter([(path, label)])
        snaps += records
        errors += e
        snap_status = "missing" if not (path / SNAPSHOTTER / "metadata.db").exists() else next(
            (f"error: {r['message']}" for r in e), "ok")
        c, e, content_status = read_content(path, label)
        content += c
        errors += e
        managed = label == "containerd/daemon"
        if managed:
            pid, started = None, docker_started_ns
        else:
            pid, started = find_containerd(path)
        store_rows.append({"store": label, "path": str(path), "kind": "managed" if managed else "system",
                           "pid": pid, "started_ns": started, "meta_status": meta_status,
                           "snapshotter_status": snap_status, "content_status": content_status})
    writer.write_rows(LEASES, leases)
    writer.write_rows(CONTAINERD_SNAPSHOTS, snaps)
    writer.write_rows(CTR_STORES, store_rows)
    writer.write_rows(CTR_OBJECTS, objects)
    writer.write_rows(CTR_LABELS, labels)
    writer.write_rows(CTR_LEASE_RESOURCES, held)
    return content


def _walk_snapshot_dirs(stores: list[tuple[Path, str]], hash_mode: str, mount_points: frozenset[bytes], jobs: int,
                        files_writer: _SnapshotWriter, errors: Rows, progress: Progress) -> Rows:
    """The full file manifest of every ``snapshots/<n>`` dir of each store's overlayfs snapshotter, with the
    walk overlay2 uses; its files rows carry layer_id = ``<store>/snapshots/<n>`` (never an overlay2 name)."""
    rows: Rows = []
    for path, label in stores:
        snap_dir = path / SNAPSHOTTER / "snapshots"
        try:
            names = sorted(os.listdir(os.fsencode(str(snap_dir))))
        except FileNotFoundError:
            continue
        except OSError as e:
            errors.append(error_row("ctr_dirs", f"{label}/{SNAPSHOTTER}/snapshots", "scandir", e))
            continue
        ids = {show_bytes(n)[0]: f"{label}/snapshots/{show_bytes(n)[0]}" for n in names}
        results: dict[str, LayerResult] = {}
        stats: dict[str, int] = {}
        for kind, payload, extra in walk_layers(os.fsencode(str(snap_dir)), names, hash_mode, mount_points, jobs,
                                                iter(()), stats):
            if kind == "batch":
                files_writer.write_files(_relabel(payload, ids), False)
            elif kind == "layer":
                results[payload.layer_id] = payload
                for r in extra:
                    r["object"] = f"{label}/{SNAPSHOTTER}/snapshots/{r['object']}"
                errors += extra
                progress.advance(payload.file_count, payload.allocated_bytes)
            else:
                raise RuntimeError(f"walk failed: {payload}")
        for n in names:
            sid = show_bytes(n)[0]
            res = results.get(sid) or LayerResult(sid, walk_status="error")
            rows.append({"store": label, "kind": "snapshot", "name": sid, "dir_id": ids[sid],
                         "path": f"{label}/{SNAPSHOTTER}/snapshots/{sid}", "bytes": res.allocated_bytes,
                         "apparent_bytes": res.apparent_bytes, "files": res.file_count, "mtime_ns": res.dir_mtime_ns,
                         "ctime_ns": res.dir_ctime_ns, "walk_status": res.walk_status})
    return rows


def _relabel(rb: pa.RecordBatch, ids: dict[str, str]) -> pa.RecordBatch:
    """A files batch of one snapshotter dir with its layer_id dictionary renamed to the store-qualified id."""
    col = rb.column(0)
    assert isinstance(col, pa.DictionaryArray)
    names = [ids.get(v, v) for v in col.dictionary.to_pylist()]
    new = pa.DictionaryArray.from_arrays(col.indices, pa.array(names, pa.string()))
    return rb.set_column(0, rb.schema.field(0), new)
