"""One collection -> one snapshot: overlay2 manifests plus every piece of Docker metadata, read-only.

The walk runs in worker processes (one overlay2 entry per task) that stream Arrow batches back through a
bounded queue; the parent is the only writer. Metadata is read from files, so a stopped daemon is fine;
the engine API, when it answers on the same data root, adds ``api_*`` cross-check tables.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from snapper import __version__
from snapper.docker_root import (
    DAEMON_JSON,
    api_socket_candidates,
    detect_layout,
    find_daemons,
    find_data_root,
)
from snapper.errors import UsageError
from snapper.metadata import Rows
from snapper.metadata.api import collect_api
from snapper.metadata.buildkit import read_leases, read_records, read_residue, read_snapshot_keys
from snapper.metadata.containerd import read_meta_leases, read_snapshotter
from snapper.metadata.containers import read_containers
from snapper.metadata.imagedb import read_images, read_tags
from snapper.metadata.layerdb import name_class, read_chains, read_mounts, read_write_sets
from snapper.metadata.mountinfo import read_mountinfo
from snapper.metadata.overlay import list_entries, read_links, resolve_lower
from snapper.schema import (
    API_BUILD_CACHE,
    API_CONTAINERS,
    API_DF,
    API_IMAGES,
    BUILDKIT_RECORDS,
    BUILDKIT_SNAPSHOTS,
    CONTAINERD_SNAPSHOTS,
    CONTAINERS,
    ERRORS,
    FILES,
    IMAGES,
    LAYERDB,
    LAYERS,
    LEASES,
    LINKS,
    MOUNTINFO,
    MOUNTS,
    RESIDUE,
    TAGS,
    WRITE_SETS,
)
from snapper.snapshot import SnapshotWriter
from snapper.walk import HASH_MODES, LayerResult, LayerWalker, error_row, show_bytes


class Progress(Protocol):
    def start(self, total_layers: int) -> None: ...
    def advance(self, files: int, nbytes: int) -> None: ...


class _NoProgress:
    def start(self, total_layers: int) -> None:
        pass

    def advance(self, files: int, nbytes: int) -> None:
        pass


@dataclass(frozen=True)
class CollectOptions:
    root: str | None = None
    out: str | None = None
    hash_mode: str = "none"
    jobs: int = 0  # 0 = choose
    api: bool = True
    socket: str | None = None
    daemon_json: str = str(DAEMON_JSON)
    series_dir: str = "snapshots"


@dataclass
class CollectResult:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def default_jobs() -> int:
    """The walk is syscall- and I/O-bound: a couple of walkers per core keeps the disk queue busy."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _statvfs(path: Path) -> dict[str, int]:
    st = os.statvfs(path)
    return {"total_bytes": st.f_blocks * st.f_frsize, "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "avail_bytes": st.f_bavail * st.f_frsize, "total_inodes": st.f_files,
            "used_inodes": st.f_files - st.f_ffree}


# --- walk workers ---------------------------------------------------------------------------------

def _walk_worker(overlay_dir: bytes, hash_mode: str, mount_points: frozenset[bytes], tasks: Any,
                 results: Any) -> None:
    """Process entry: walk names from ``tasks`` until None, put batches and layer results on ``results``."""
    walker = LayerWalker(overlay_dir, "overlay2", hash_mode, mount_points,
                         lambda b: results.put(("batch", b, None)), batch_rows=16384)
    try:
        while (name := tasks.get()) is not None:
            res = walker.walk(name)
            walker.flush()
            results.put(("layer", res, walker.errors))
            walker.errors = []
    except BaseException as e:  # report instead of dying silently; the parent turns it into an error
        results.put(("fatal", f"{type(e).__name__}: {e}", None))
        raise
    finally:
        results.put(("done", None, None))


def _walk_inline(overlay_dir: bytes, names: list[bytes], hash_mode: str,
                 mount_points: frozenset[bytes]) -> Iterator[tuple[str, Any, Any]]:
    out: list[pa.RecordBatch] = []
    walker = LayerWalker(overlay_dir, "overlay2", hash_mode, mount_points, out.append, batch_rows=32768)
    for name in names:
        res = walker.walk(name)
        walker.flush()
        while out:
            yield "batch", out.pop(0), None
        yield "layer", res, walker.errors
        walker.errors = []


def _walk_parallel(overlay_dir: bytes, names: list[bytes], hash_mode: str, mount_points: frozenset[bytes],
                   jobs: int) -> Iterator[tuple[str, Any, Any]]:
    ctx = mp.get_context("spawn")
    tasks: Any = ctx.Queue()
    results: Any = ctx.Queue(maxsize=4 * jobs)  # bounded: memory stays flat however big the tree
    # Largest-looking first is unknowable without walking; name order spreads 64-hex dirs randomly.
    for n in names:
        tasks.put(n)
    for _ in range(jobs):
        tasks.put(None)
    procs = [ctx.Process(target=_walk_worker, args=(overlay_dir, hash_mode, mount_points, tasks, results),
                         daemon=True) for _ in range(jobs)]
    for p in procs:
        p.start()
    done = 0
    try:
        while done < jobs:
            try:
                msg = results.get(timeout=5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    yield "fatal", "walk workers exited unexpectedly", None
                    return
                continue
            if msg[0] == "done":
                done += 1
            else:
                yield msg
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


# --- metadata ---------------------------------------------------------------------------------------

def _state_signature(root: Path, image_dir: Path) -> dict[str, list[str]]:
    """Cheap listing used to tell whether the daemon changed the store while we collected."""
    sig: dict[str, list[str]] = {}
    for key, path in (("overlay2", root / "overlay2"), ("layerdb", image_dir / "layerdb" / "sha256"),
                      ("mounts", image_dir / "layerdb" / "mounts"), ("containers", root / "containers"),
                      ("images", image_dir / "imagedb" / "content" / "sha256")):
        try:
            sig[key] = sorted(os.fsdecode(n) for n in os.listdir(path))
        except OSError:
            sig[key] = []
    return sig


def _sig_changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    out = {}
    for k in before:
        a, b = set(before[k]), set(after.get(k, []))
        if a != b:
            out[k] = {"appeared": len(b - a), "vanished": len(a - b)}
    return out


def collect(opts: CollectOptions, progress: Progress | None = None) -> CollectResult:
    """Write one complete snapshot of the data root and return where it is."""
    progress = progress or _NoProgress()
    if opts.hash_mode not in HASH_MODES:
        raise UsageError(f"--hash {opts.hash_mode}", "unknown hash mode", "use none, partial or full")
    t0 = time.time()
    daemon_json = Path(opts.daemon_json)
    root, root_source = find_data_root(opts.root, daemon_json)
    layout = detect_layout(root, root_source, daemon_json)
    daemons = find_daemons(root, daemon_json)
    host = socket.gethostname()
    out = Path(opts.out) if opts.out else _default_out(Path(opts.series_dir), host, t0)
    jobs = opts.jobs if opts.jobs > 0 else default_jobs()
    writer = SnapshotWriter(out)
    try:
        manifest = _collect_into(writer, opts, root, root_source, layout, daemons, host, jobs, t0, progress)
        path = writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
    return CollectResult(path, manifest)


def _default_out(series: Path, host: str, t0: float) -> Path:
    stamp = datetime.fromtimestamp(t0, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = series / host / stamp
    n = 1
    cand = base
    while cand.exists():
        cand = base.with_name(f"{stamp}-{n}")
        n += 1
    return cand


def _collect_into(writer: SnapshotWriter, opts: CollectOptions, root: Path, root_source: str, layout: Any,
                  daemons: list[Any], host: str, jobs: int, t0: float, progress: Progress) -> dict[str, Any]:
    durations: dict[str, float] = {}
    errors: Rows = []
    image_dir = root / "image" / (layout.active_driver or "overlay2")
    image_rel = f"image/{layout.active_driver or 'overlay2'}"
    sig_before = _state_signature(root, image_dir)
    pids_before = sorted(d.pid for d in daemons)

    t = time.time()
    mi_rows, e, mount_points = read_mountinfo(root)
    errors += e
    writer.write_rows(MOUNTINFO, mi_rows)
    chains, e = read_chains(image_dir, image_rel)
    errors += e
    mounts, e = read_mounts(image_dir, image_rel)
    errors += e
    wsets, e = read_write_sets(image_dir, image_rel)
    errors += e
    tags, e = read_tags(image_dir, image_rel)
    errors += e
    images, e = read_images(image_dir, image_rel, tags)
    errors += e
    containers, e = read_containers(root)
    errors += e
    records, e = read_records(root)
    errors += e
    bk_keys, e = read_snapshot_keys(root)
    errors += e
    leases, e = read_leases(root, "buildkit/containerdmeta.db", "leases")
    errors += e
    ctr_leases, e = read_meta_leases(root, layout.containerd_store)
    errors += e
    ctr_snaps, e = read_snapshotter(root, layout.containerd_store)
    errors += e
    residue, e = read_residue(root, layout.active_driver)
    errors += e
    for table, rows in ((BUILDKIT_RECORDS, records), (BUILDKIT_SNAPSHOTS, bk_keys),
                        (LEASES, leases + ctr_leases), (CONTAINERD_SNAPSHOTS, ctr_snaps), (RESIDUE, residue),
                        (LAYERDB, chains), (MOUNTS, mounts), (WRITE_SETS, wsets), (TAGS, tags),
                        (IMAGES, images), (CONTAINERS, containers)):
        writer.write_rows(table, rows)
    durations["metadata_s"] = round(time.time() - t, 3)

    t = time.time()
    overlay_dir = os.fsencode(str(root / "overlay2"))
    link_rows, e = read_links(overlay_dir)
    errors += e
    writer.write_rows(LINKS, link_rows)
    names, e = list_entries(overlay_dir)
    errors += e
    progress.start(len(names))
    results: dict[str, LayerResult] = {}
    walk_iter = (_walk_parallel(overlay_dir, names, opts.hash_mode, mount_points, jobs)
                 if jobs > 1 and len(names) > 1 else
                 _walk_inline(overlay_dir, names, opts.hash_mode, mount_points))
    for kind, payload, extra in walk_iter:
        if kind == "batch":
            writer.write_batch(FILES, payload)
        elif kind == "layer":
            results[payload.layer_id] = payload
            errors += extra
            progress.advance(payload.file_count, payload.allocated_bytes)
        else:
            raise RuntimeError(f"walk failed: {payload}")
    durations["walk_s"] = round(time.time() - t, 3)

    links_by_short = {r["short_id"]: r["target_layer_id"] for r in link_rows
                      if r["well_formed"] and not r["dangling"]}
    mounted_layers = {r["layer_id"] for r in mi_rows if r["layer_id"]}
    layer_rows: Rows = []
    for name in names:
        lid = show_bytes(name)[0]
        res = results.get(lid) or LayerResult(lid, walk_status="error")
        row = asdict(res)
        markers = row.pop("markers")
        lower_ids, unresolved = resolve_lower(res.lower, links_by_short)
        row.update({
            "name_class": "links" if lid == "l" else name_class(lid),
            "has_diff": markers.get("diff", False), "has_link": markers.get("link", False),
            "has_lower": markers.get("lower", False), "has_work": markers.get("work", False),
            "has_merged": markers.get("merged", False), "has_committed": markers.get("committed", False),
            "lower_ids": lower_ids, "lower_unresolved": unresolved, "mounted": lid in mounted_layers,
        })
        layer_rows.append(row)
    writer.write_rows(LAYERS, layer_rows)

    api_facts: dict[str, Any] = {}
    api_status = "skipped (--no-api)"
    if opts.api:
        t = time.time()
        api_status, api_facts = _collect_api(writer, opts, root, daemons, errors)
        durations["api_s"] = round(time.time() - t, 3)

    sig_after = _state_signature(root, image_dir)
    daemons_after = find_daemons(root, Path(opts.daemon_json))
    changes = _sig_changes(sig_before, sig_after)
    pids_after = sorted(d.pid for d in daemons_after)
    writer.write_rows(ERRORS, errors)
    t_end = time.time()
    durations["total_s"] = round(t_end - t0, 3)
    return {
        "tool": "snapper",
        "tool_version": __version__,
        "host": host,
        "data_root": str(root),
        "data_root_source": root_source,
        "layout": asdict(layout),
        "engine": api_facts,
        "api_status": api_status,
        "daemon": {
            "running": bool(daemons),
            "pids": pids_before,
            "running_at_end": bool(daemons_after),
            "pids_at_end": pids_after,
            "state_changed": bool(changes) or pids_before != pids_after,
            "changes": changes,
        },
        "started_utc": _utc(t0),
        "started_ns": int(t0 * 1e9),
        "finished_utc": _utc(t_end),
        "options": {"hash": opts.hash_mode, "jobs": jobs, "api": opts.api, "root": opts.root},
        "statvfs": _statvfs(root),
        "durations": durations,
        "overlay2_entries": len(names),
        "errors": len(errors),
    }


def _collect_api(writer: SnapshotWriter, opts: CollectOptions, root: Path, daemons: list[Any],
                 errors: Rows) -> tuple[str, dict[str, Any]]:
    candidates = [opts.socket] if opts.socket else api_socket_candidates(daemons)
    if not candidates:
        return "no daemon running on this data root", {}
    last = ""
    for sock in candidates:
        if not os.path.exists(sock):
            continue
        try:
            tables, facts, errs = collect_api(sock, str(root))
        except (OSError, ValueError) as e:
            last = f"{sock}: {e}"
            errors.append(error_row("api", sock, "request", e if isinstance(e, OSError) else None, str(e)))
            continue
        errors.extend(errs)
        if errs and not tables["api_images"] and facts.get("docker_root_dir") != str(root):
            last = f"{sock}: serves another data root"
            continue
        for table in (API_IMAGES, API_CONTAINERS, API_BUILD_CACHE, API_DF):
            writer.write_rows(table, tables[table.name])
        return f"ok ({sock})", facts
    return f"no answer ({last or 'no socket found'})", {}
