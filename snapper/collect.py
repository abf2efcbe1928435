"""One collection -> one snapshot: overlay2 manifests plus every piece of Docker metadata, read-only.

The walk runs in small worker processes (``snapper.walkpool``: whole layers or subtrees of a big one per task)
that stream raw column buffers back through pipes; the parent turns them into Arrow batches and is the
only writer. With a base snapshot (``--base``, or the newest earlier one of the same data root in the
series), committed layers whose dir signature is unchanged are copied from it, not walked
(``snapper.incremental``). The collect runs at nice 19 and idle I/O priority unless ``nice=False``.
Metadata is read from files, so a stopped daemon is fine; the engine API, when it answers on the same data
root, adds ``api_*`` cross-check tables.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from snapper import __version__, incremental
from snapper.docker_root import (
    DAEMON_JSON,
    api_socket_candidates,
    detect_layout,
    find_daemons,
    find_data_root,
    permission_denied,
    require_socket,
)
from snapper.errors import SnapshotError, UsageError
from snapper.metadata import Rows
from snapper.metadata.api import collect_api
from snapper.metadata.buildkit import read_leases, read_records, read_residue, read_snapshot_keys
from snapper.metadata.containerd import (
    SNAPSHOTTER,
    find_containerd,
    read_content,
    read_meta,
    read_meta_leases,
    read_snapshotter,
    store_roots,
)
from snapper.metadata.containers import read_containers
from snapper.metadata.holders import read_holders
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
    CTR_DIRS,
    CTR_LABELS,
    CTR_LEASE_RESOURCES,
    CTR_OBJECTS,
    CTR_STORES,
    ERRORS,
    FILES,
    HOLDERS,
    IMAGES,
    LAYER_SIGNATURES,
    LAYERDB,
    LAYERS,
    LEASES,
    LINKS,
    MOUNTINFO,
    MOUNTS,
    RESIDUE,
    TAGS,
    WRITE_SETS,
    Table,
)
from snapper.snapshot import SnapshotWriter, _create_private
from snapper.walk import HASH_MODES, LayerResult, error_row, show_bytes
from snapper.walkpool import walk_layers


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
    base: str | None = None  # a snapshot to reuse unchanged committed layers from
    use_base: bool = True  # without --base: the newest earlier snapshot in series_dir/<host>
    nice: bool = True  # nice 19 and idle I/O priority for the collect and its walkers
    containerd_roots: tuple[str, ...] = ()  # more containerd roots to collect (--containerd-root)


@dataclass
class CollectResult:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def default_jobs() -> int:
    """Walk workers: 2 per core, at most 6. On a warm cache the walk is CPU-bound (one per core would do);
    on a cold one more walkers keep more I/O in flight: on 2 cores, 4 walkers were 20% faster than 2 and 6
    or 8 no faster than 4, while each adds ~15 MB (bench/RESULTS.md). 6 keeps the tree under 256 MB."""
    return max(2, min(6, 2 * (os.cpu_count() or 1)))


# --- low impact -------------------------------------------------------------------------------------------

_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31), "i686": (289, 290), "armv7l": (314, 315),
                    "ppc64le": (273, 274), "s390x": (282, 283), "riscv64": (30, 31)}  # (set, get)
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13


def _ioprio(value: int | None = None) -> int | None:
    """ioprio_get (value None) or ioprio_set of the calling thread (ioprio_set(2), no libc wrapper)."""
    nums = _IOPRIO_SYSCALLS.get(platform.machine())
    if nums is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if value is None:
        r = libc.syscall(nums[1], _IOPRIO_WHO_PROCESS, 0)
    else:
        r = libc.syscall(nums[0], _IOPRIO_WHO_PROCESS, 0, value)
    return None if r < 0 else int(r)


@contextlib.contextmanager
def low_priority(enabled: bool) -> Iterator[dict[str, Any]]:
    """Nice 19 and the idle I/O class for the calling thread while the block runs; walk workers started
    inside inherit both. Restored afterwards (raising the nice value back needs CAP_SYS_NICE: without it the
    thread stays at 19)."""
    if not enabled:
        yield {"nice": os.getpriority(os.PRIO_PROCESS, 0), "io_class": "unchanged"}
        return
    old_nice = os.getpriority(os.PRIO_PROCESS, 0)
    old_io = _ioprio()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    idle = old_io is not None and _ioprio(_IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT) is not None
    try:
        yield {"nice": os.getpriority(os.PRIO_PROCESS, 0), "io_class": "idle" if idle else "unchanged"}
    finally:
        if idle and old_io is not None:
            _ioprio(old_io)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, old_nice)


# --- files.parquet ----------------------------------------------------------------------------------------

# Measured on the bench tree (bench/RESULTS.md): dictionaries only where values repeat, delta encodings for
# the sorted-ish integers and for paths (siblings share prefixes): 16.0 -> 14.5 bytes per row, and a
# quarter less CPU than dictionary-encoding every column.
_FILES_PARQUET: dict[str, Any] = {
    "use_dictionary": ["layer_id", "type", "nlink", "mode", "uid", "gid", "dev", "link_target"],
    "column_encoding": {"path": "DELTA_BYTE_ARRAY", "inode": "DELTA_BINARY_PACKED",
                        "mtime_ns": "DELTA_BINARY_PACKED", "ctime_ns": "DELTA_BINARY_PACKED",
                        "size": "DELTA_BINARY_PACKED", "allocated": "DELTA_BINARY_PACKED"},
}


_FILES_ROW_GROUP = 65536  # encoding a row group costs ~190 bytes a row outside Arrow's pool: 64k rows ~12 MB
_FILES_ROW_GROUP_BYTES = 32 << 20  # or fewer rows when paths are long (10,000-deep dirs: 20 kB a path)


class _Closed:
    def close(self) -> None:
        pass


class _SnapshotWriter(SnapshotWriter):
    """The snapshot writer with files.parquet tuned for the table: its encodings, row groups of 64k rows,
    rows of committed (stable) dirs in row groups of their own, and row groups of a base snapshot copied in
    as bytes at the end (``snapper.incremental.splice``)."""

    def __init__(self, out: Path) -> None:
        super().__init__(out)
        self.files_pending: dict[bool, list[pa.RecordBatch]] = {True: [], False: []}
        self.files_rows = {True: 0, False: 0}
        self.files_bytes = {True: 0, False: 0}
        self.splice_from: tuple[Path, list[int]] | None = None

    def _writer(self, table: Table) -> pq.ParquetWriter:
        if table.name != FILES.name or table.name in self.writers:
            return super()._writer(table)
        path = self.tmp / f"{table.name}.parquet"
        _create_private(path)
        w = pq.ParquetWriter(str(path), table.schema, compression="zstd", compression_level=3, **_FILES_PARQUET)
        self.writers[table.name] = w
        return w

    def write_files(self, batch: pa.RecordBatch, stable: bool) -> None:
        self.files_pending[stable].append(batch)
        self.files_rows[stable] += batch.num_rows
        self.files_bytes[stable] += batch.nbytes
        if self.files_rows[stable] >= _FILES_ROW_GROUP or self.files_bytes[stable] >= _FILES_ROW_GROUP_BYTES:
            self._flush_files(stable)

    def _flush_files(self, stable: bool) -> None:
        batches, self.files_pending[stable], self.files_rows[stable] = self.files_pending[stable], [], 0
        self.files_bytes[stable] = 0
        self._write_batches(FILES, batches)

    def finish(self, manifest: dict[str, Any]) -> Path:
        for stable in (True, False):
            self._flush_files(stable)
        if self.splice_from is not None:
            self._writer(FILES).close()
            self.writers[FILES.name] = _Closed()
            path = self.tmp / f"{FILES.name}.parquet"
            spliced = self.tmp / f".{FILES.name}.spliced"
            try:
                self.rows[FILES.name] += incremental.splice(path, self.splice_from[0], self.splice_from[1], spliced)
                os.replace(spliced, path)
            except OSError as e:
                raise self._io(FILES.name, e) from e
        return super().finish(manifest)


def _reference_footer() -> bytes:
    """The footer of an empty files.parquet as _SnapshotWriter writes it (schema and key-value metadata)."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, FILES.schema, compression="zstd", compression_level=3, **_FILES_PARQUET).close()
    data: bytes = sink.getvalue().to_pybytes()
    n = int.from_bytes(data[-8:-4], "little")
    return data[-8 - n:-8]


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _statvfs(path: Path) -> dict[str, int]:
    st = os.statvfs(path)
    return {"total_bytes": st.f_blocks * st.f_frsize, "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "avail_bytes": st.f_bavail * st.f_frsize, "total_inodes": st.f_files,
            "used_inodes": st.f_files - st.f_ffree}


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


@contextlib.contextmanager
def _system_memory_pool() -> Iterator[None]:
    """Arrow buffers from malloc for the collect: mimalloc (pyarrow's default) kept ~50 MB of freed row
    groups mapped (measured: parent peak 196 -> 151 MB on 1M entries)."""
    old = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(old)


class _BackgroundWriter:
    """Writes files batches in a thread: Parquet encoding and compression release the GIL, so the walk's
    dispatch loop keeps the workers fed meanwhile. The queue is short: memory stays bounded."""

    def __init__(self, writer: _SnapshotWriter) -> None:
        self.writer = writer
        self.q: queue.Queue[tuple[pa.RecordBatch, bool] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="snapper-files-writer", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        rows = 0
        while (item := self.q.get()) is not None:
            rb, stable = item
            if self.error is None:
                try:
                    self.writer.write_files(rb, stable)
                except BaseException as e:  # handed to the main thread at the next put or at exit
                    self.error = e
            rows += rb.num_rows
            del rb, item
            if rows >= _FILES_ROW_GROUP:  # give freed row groups back to the OS (glibc keeps them otherwise)
                rows = 0
                _malloc_trim()

    def put(self, rb: pa.RecordBatch, stable: bool) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((rb, stable))

    def __exit__(self, *exc: object) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


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
    if opts.api and opts.socket:
        require_socket(opts.socket)
    t0 = time.time()
    daemon_json = Path(opts.daemon_json)
    root, root_source = find_data_root(opts.root, daemon_json)
    daemons = find_daemons(root, daemon_json)
    layout = detect_layout(root, root_source, daemon_json, daemons)
    host = socket.gethostname()
    out = Path(opts.out) if opts.out else _default_out(Path(opts.series_dir), host, t0)
    jobs = opts.jobs if opts.jobs > 0 else default_jobs()
    if opts.base is not None:
        base, base_reason = incremental.usable(Path(opts.base), root, opts.hash_mode)
    elif opts.use_base:
        base, base_reason = incremental.find_base(Path(opts.series_dir) / host, root, opts.hash_mode, int(t0 * 1e9))
    else:
        base, base_reason = None, "disabled (--no-base)"
    with low_priority(opts.nice) as priority, _system_memory_pool():
        writer = _SnapshotWriter(out)
        try:
            manifest = _collect_into(writer, opts, root, root_source, layout, daemons, host, jobs, t0, progress,
                                     base, base_reason)
            manifest["priority"] = priority
            path = writer.finish(manifest)
        except PermissionError as e:  # a reader that does not turn EACCES into an errors row: needs root
            writer.abort()
            raise permission_denied(str(e.filename or root)) from e
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


def _collect_into(writer: _SnapshotWriter, opts: CollectOptions, root: Path, root_source: str, layout: Any,
                  daemons: list[Any], host: str, jobs: int, t0: float, progress: Progress,
                  base: incremental.Base | None, base_reason: str) -> dict[str, Any]:
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
    stores = store_roots(root, layout.containerd_store, opts.containerd_roots)
    ctr_leases, e = read_meta_leases(stores)
    errors += e
    ctr_snaps, e = read_snapshotter(stores)
    errors += e
    ctr_dir_rows = _collect_containerd(writer, stores, root, daemons, errors)
    residue, e = read_residue(root, layout.active_driver)
    errors += e
    writer.write_rows(HOLDERS, read_holders(root))
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
    links_by_short = {r["short_id"]: r["target_layer_id"] for r in link_rows
                      if r["well_formed"] and not r["dangling"]}
    mounted_layers = {r["layer_id"] for r in mi_rows if r["layer_id"]}
    plan = incremental.plan(base, base_reason, overlay_dir, names, chains, links_by_short, mounted_layers)
    copied = [0, 0]  # rows decoded and written again, rows copied as bytes
    raw_groups: list[int] = []
    decode_groups: list[int] = []
    if plan.base is not None and plan.reused:
        try:
            raw_groups, decode_groups, copied[1] = incremental.reuse_groups(plan.base, set(plan.reused),
                                                                            _reference_footer())
        except (OSError, pa.ArrowException) as e:  # a damaged base: walk everything instead
            plan = incremental.plan(None, f"{plan.base.path}: files table unreadable ({e})", overlay_dir, names,
                                    chains, links_by_short, mounted_layers)
        if plan.base is not None and raw_groups:
            writer.splice_from = (plan.base.path / "files.parquet", raw_groups)
    reused = set(plan.reused)
    writer.write_rows(LAYER_SIGNATURES, [{"layer_id": k, "top_signature": v} for k, v in plan.signatures.items()])
    progress.start(len(names))
    results: dict[str, LayerResult] = dict(plan.reused)
    for res in plan.reused.values():
        progress.advance(res.file_count, res.allocated_bytes)

    def side() -> Iterator[pa.RecordBatch]:
        if plan.base is not None:
            try:
                for rb in incremental.copy_rows(plan.base, reused, decode_groups):
                    copied[0] += rb.num_rows
                    yield rb
            except (OSError, pa.ArrowException) as e:
                raise SnapshotError(str(plan.base.path), f"files table unreadable while copying rows ({e})",
                                    "collect again with --no-base") from e

    walk_stats: dict[str, int] = {}
    with _BackgroundWriter(writer) as files_out:
        for kind, payload, extra in walk_layers(overlay_dir, plan.walk, opts.hash_mode, mount_points, jobs, side(),
                                          walk_stats):
            if kind == "batch":
                files_out.put(payload, payload.column(0).dictionary[0].as_py() in plan.stable)
            elif kind == "layer":
                results[payload.layer_id] = payload
                errors += extra
                progress.advance(payload.file_count, payload.allocated_bytes)
            else:
                raise RuntimeError(f"walk failed: {payload}")
    durations["walk_s"] = round(time.time() - t, 3)
    t = time.time()
    ctr_dir_rows += _walk_snapshot_dirs(stores, opts.hash_mode, mount_points, jobs, files_writer=writer,
                                        errors=errors, progress=progress)
    writer.write_rows(CTR_DIRS, ctr_dir_rows)
    durations["containerd_walk_s"] = round(time.time() - t, 3)
    expected = sum(r.file_count for r in plan.reused.values())
    if plan.base is not None and sum(copied) != expected:
        raise RuntimeError(f"base {plan.base.path}: {sum(copied)} files rows to copy, its layers rows say "
                           f"{expected}")
    layer_rows: Rows = []
    for name in names:
        lid = show_bytes(name)[0]
        res = results.get(lid) or LayerResult(lid, walk_status="error")
        row = res.as_dict()
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
            **_daemon_start(daemons),
            "running_at_end": bool(daemons_after),
            "pids_at_end": pids_after,
            "state_changed": bool(changes) or pids_before != pids_after,
            "changes": changes,
        },
        "started_utc": _utc(t0),
        "started_ns": int(t0 * 1e9),
        "finished_utc": _utc(t_end),
        "options": {"hash": opts.hash_mode, "jobs": jobs, "api": opts.api, "root": opts.root},
        "incremental": plan.manifest(sum(copied), copied[1]),
        "walk": walk_stats,
        "statvfs": _statvfs(root),
        "durations": durations,
        "overlay2_entries": len(names),
        "containerd_stores": [label for _, label in stores],
        "errors": len(errors),
    }


def _collect_containerd(writer: SnapshotWriter, stores: list[tuple[Path, str]], root: Path,
                        daemons: list[Any], errors: Rows) -> Rows:
    """meta.db objects, labels and lease contents, the content store, and one ctr_stores row per store.
    A managed store (dockerd's own containerd) takes dockerd's start: its leases belong to dockerd's
    operations, which die with dockerd."""
    objects: Rows = []
    labels: Rows = []
    held: Rows = []
    content: Rows = []
    store_rows: Rows = []
    for path, label in stores:
        o, lb, h, e, meta_status = read_meta(path, label)
        objects += o
        labels += lb
        held += h
        errors += e
        c, e, content_status = read_content(path, label)
        content += c
        errors += e
        managed = label == "containerd/daemon"
        if managed:
            pid, started = None, _daemon_start(daemons)["started_ns"]
        else:
            pid, started = find_containerd(path)
        snap_db = path / SNAPSHOTTER / "metadata.db"
        snap_status = "missing" if not snap_db.exists() else next(
            (f"error: {r['message']}" for r in errors
             if r["source"] == "containerd_snapshots" and str(r["object"]).endswith(f"{SNAPSHOTTER}/metadata.db")
             and str(r["object"]).startswith(label if managed else str(path))), "ok")
        store_rows.append({"store": label, "path": str(path), "kind": "managed" if managed else "system",
                           "pid": pid, "started_ns": started, "meta_status": meta_status,
                           "snapshotter_status": snap_status, "content_status": content_status})
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


def _daemon_start(daemons: list[Any]) -> dict[str, Any]:
    """When the running daemon started: nothing it did can have changed a dir before that instant, so an
    older change was made by a daemon that is gone (the verdicts' in-flight rule). The earliest start of the
    dockerd processes on this root; null when no daemon runs or /proc cannot tell."""
    starts = [d.started_ns for d in daemons if d.started_ns is not None]
    if not starts:
        return {"started_ns": None, "started_utc": None}
    return {"started_ns": min(starts), "started_utc": _utc(min(starts) / 1e9)}


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
