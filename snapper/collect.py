"""One collection -> one snapshot: every layer store's file manifests (``snapper.stores``: overlay2, containerd)
plus every piece of Docker and containerd metadata, read-only.

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
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

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
from snapper.errors import UsageError
from snapper.fileswriter import _SnapshotWriter
from snapper.metadata import Rows
from snapper.metadata.api import collect_api
from snapper.metadata.buildkit import read_leases, read_records, read_residue, read_snapshot_keys
from snapper.metadata.containers import read_containers
from snapper.metadata.holders import read_holders
from snapper.metadata.imagedb import read_images, read_tags
from snapper.metadata.layerdb import read_chains, read_mounts, read_write_sets
from snapper.metadata.mountinfo import read_mountinfo
from snapper.schema import (
    API_BUILD_CACHE,
    API_CONTAINERS,
    API_DF,
    API_IMAGES,
    BUILDKIT_RECORDS,
    BUILDKIT_SNAPSHOTS,
    CONTAINERS,
    ERRORS,
    HOLDERS,
    IMAGES,
    LAYERDB,
    LEASES,
    MOUNTINFO,
    MOUNTS,
    RESIDUE,
    TAGS,
    WRITE_SETS,
)
from snapper.snapshot import SnapshotWriter
from snapper.stores import CollectContext, Progress, stores
from snapper.walk import HASH_MODES, error_row


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


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _statvfs(path: Path) -> dict[str, int]:
    st = os.statvfs(path)
    return {"total_bytes": st.f_blocks * st.f_frsize, "used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
            "avail_bytes": st.f_bavail * st.f_frsize, "total_inodes": st.f_files,
            "used_inodes": st.f_files - st.f_ffree}


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
    residue, e = read_residue(root, layout.active_driver)
    errors += e
    writer.write_rows(HOLDERS, read_holders(root))
    for table, rows in ((BUILDKIT_RECORDS, records), (BUILDKIT_SNAPSHOTS, bk_keys),
                        (LEASES, leases), (RESIDUE, residue),
                        (LAYERDB, chains), (MOUNTS, mounts), (WRITE_SETS, wsets), (TAGS, tags),
                        (IMAGES, images), (CONTAINERS, containers)):
        writer.write_rows(table, rows)
    durations["metadata_s"] = round(time.time() - t, 3)

    facts: dict[str, Any] = {}
    ctx = CollectContext(writer=writer, root=root, layout=layout, daemons=daemons,
                         daemon_started_ns=_daemon_start(daemons)["started_ns"], hash_mode=opts.hash_mode, jobs=jobs,
                         progress=progress, mount_points=mount_points,
                         mounted_layers={r["layer_id"] for r in mi_rows if r["layer_id"]}, chains=chains,
                         base=base, base_reason=base_reason, containerd_roots=opts.containerd_roots, errors=errors,
                         durations=durations)
    for store in stores():
        facts.update(store.collect(ctx))

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
        "statvfs": _statvfs(root),
        "durations": durations,
        **facts,
        "errors": len(errors),
    }


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
