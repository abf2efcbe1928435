"""Find the Docker data root, detect its storage layout, and whether a daemon is running on it.

Everything here is read-only: daemon.json, the process table (/proc/*/cmdline) and directory listings.
Layout rules follow moby ``daemon/image_store_choice.go`` (see docs/docker-storage.md section 1.1).
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from snapper.errors import DataRootError, UsageError

DEFAULT_ROOT = Path("/var/lib/docker")
DAEMON_JSON = Path("/etc/docker/daemon.json")
GRAPH_DRIVERS = ("overlay2", "overlay", "aufs", "devicemapper", "btrfs", "zfs", "vfs", "fuse-overlayfs")
CONTAINERD_SNAPSHOTTER_DIR = "io.containerd.snapshotter.v1.overlayfs"
# What a data root holds when a daemon ever ran on it: the layer/image store of a graph driver (image/),
# a driver tree, or the containerd store (containerd/, rootfs/ of the containerd image store, or the snapshotter
# dir of a plain containerd root).
STORE_DIRS = ("image", *GRAPH_DRIVERS, "containerd", "rootfs", CONTAINERD_SNAPSHOTTER_DIR)
NEEDS_ROOT = "reading a Docker data root needs root (or CAP_DAC_READ_SEARCH): rerun with sudo"


@dataclass(frozen=True)
class DaemonProcess:
    pid: int
    exe: str
    data_root: str
    hosts: tuple[str, ...]
    storage_driver: str | None
    started_ns: int | None = None  # wall-clock start of the process (10 ms precision), None when unreadable


@dataclass(frozen=True)
class Layout:
    data_root: str
    root_source: str  # --root | daemon.json | default
    active_driver: str | None  # overlay2 when its tree is usable
    driver_trees: tuple[str, ...]  # graph driver dirs present (non-empty)
    containerd_store: bool  # containerd image store in use (or its tree present with no graph driver)
    containerd_roots: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    driver_evidence: str = ""  # why active_driver is the one in use

    @property
    def unclassified(self) -> str | None:
        """The active graph driver when snapper does not classify it (only overlay2 is), else None."""
        return unclassified_driver(self.active_driver, self.driver_trees, self.containerd_store)


CLASSIFIED_DRIVERS = ("overlay2",)


def unclassified_driver(active: object, trees: object, containerd_store: object) -> str | None:
    """The storage driver in use that snapper cannot classify: the active one if it is not overlay2; for a
    snapshot written before the active driver was decided from evidence (active null), the one other driver
    tree present when there was no overlay2 and no containerd store."""
    if isinstance(active, str):
        return None if active in CLASSIFIED_DRIVERS else active
    present = list(trees) if isinstance(trees, list | tuple) else []
    others = [t for t in present if t not in CLASSIFIED_DRIVERS]
    return others[0] if len(others) == 1 and not containerd_store and "overlay2" not in present else None


def read_daemon_json(path: Path = DAEMON_JSON) -> dict[str, object]:
    """daemon.json as a dict; {} when absent. A corrupt file is a clear error: it decides the data root."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise DataRootError(str(path), f"cannot read: {e.strerror}", "pass --root explicitly") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataRootError(str(path), f"not valid JSON ({e.msg} at line {e.lineno})",
                            "fix the file or pass --root explicitly") from e
    return data if isinstance(data, dict) else {}


def find_data_root(root: str | None, daemon_json: Path = DAEMON_JSON) -> tuple[Path, str]:
    """--root, else data-root (or legacy graph) from daemon.json, else /var/lib/docker."""
    if root:
        chosen, source = Path(root), "--root"
    else:
        cfg = read_daemon_json(daemon_json)
        configured = cfg.get("data-root") or cfg.get("graph")
        if isinstance(configured, str) and configured:
            chosen, source = Path(configured), f"data-root in {daemon_json}"
        else:
            chosen, source = DEFAULT_ROOT, "default"
    try:
        st = os.stat(chosen)
    except FileNotFoundError as e:
        raise DataRootError(str(chosen), f"data root does not exist ({source})",
                            "pass --root with the dockerd --data-root") from e
    except PermissionError as e:
        raise permission_denied(str(chosen)) from e
    if not stat.S_ISDIR(st.st_mode):
        raise DataRootError(str(chosen), "not a directory", "pass --root with the dockerd --data-root")
    return Path(os.path.realpath(chosen)), source


def permission_denied(path: str) -> DataRootError:
    """The one message for a data root this user may not read (a non-root user, a root dir of mode 0710)."""
    return DataRootError(path, "permission denied", NEEDS_ROOT)


def require_store(root: Path, source: str) -> None:
    """A data root must hold a store: a typo in ``--root`` (or an empty dir) must not become an empty
    snapshot that says nothing leaked. Listing the root is also the first read a non-root user fails."""
    try:
        with os.scandir(root) as it:
            present = {e.name for e in it if e.is_dir(follow_symlinks=False)}
    except PermissionError as e:
        raise permission_denied(str(root)) from e
    except OSError as e:
        raise DataRootError(str(root), f"cannot list the data root: {e.strerror}",
                            "pass --root with the dockerd --data-root") from e
    if not present.intersection(STORE_DIRS):
        looked = ", ".join(f"{d}/" for d in STORE_DIRS)
        raise DataRootError(str(root), f"no Docker store here ({source}; looked for {looked})",
                            "pass --root with the dockerd --data-root: docker info -f '{{.DockerRootDir}}'")
    _require_readable(root, [*present.intersection((*STORE_DIRS, "containers", "buildkit")),
                             *(f"image/{d}" for d in GRAPH_DRIVERS),
                             *(f"image/{d}/{sub}" for d in GRAPH_DRIVERS for sub in ("layerdb", "imagedb")),
                             f"containerd/daemon/{CONTAINERD_SNAPSHOTTER_DIR}"])


def _require_readable(root: Path, rels: list[str]) -> None:
    """The store dirs every reader lists: unreadable (EACCES) means the user lacks the rights, not a corrupt
    entry, so the collect stops instead of writing a snapshot whose metadata is silently empty."""
    for rel in sorted(rels):
        p = root / rel
        try:
            with os.scandir(p):
                pass
        except PermissionError as e:
            raise permission_denied(str(p)) from e
        except OSError:
            continue  # absent or not a dir: the readers record what is odd


def _nonempty_dir(p: Path) -> bool:
    try:
        with os.scandir(p) as it:
            return any(True for _ in it)
    except OSError:
        return False


def _config_applies(root: Path, source: str, daemon_json: Path) -> bool:
    """daemon.json speaks for this root when the root came from it (or is its data-root, or the default)."""
    if source != "--root":
        return True
    cfg = read_daemon_json(daemon_json)
    configured = cfg.get("data-root") or cfg.get("graph")
    target = configured if isinstance(configured, str) and configured else str(DEFAULT_ROOT)
    return os.path.realpath(target) == str(root)


def _image_stores(root: Path) -> list[str]:
    """Drivers whose image/<driver>/ holds a layer store and an image store, the newest repositories.json first
    (the daemon keeps its references there: the store it wrote last is the one in use)."""
    found = []
    for d in GRAPH_DRIVERS:
        base = root / "image" / d
        if (base / "layerdb").is_dir() and (base / "imagedb").is_dir():
            try:
                mtime = os.stat(base / "repositories.json").st_mtime_ns
            except OSError:
                mtime = 0
            found.append((-mtime, d))
    return [d for _, d in sorted(found)]


def decide_driver(root: Path, source: str, daemon_json: Path, daemons: list[DaemonProcess],
                  overlay2_used: bool) -> tuple[str | None, str]:
    """The storage driver in use and the evidence, strongest first: a running dockerd's --storage-driver, the
    storage-driver of daemon.json (when it speaks for this root), the image/<driver>/ holding layerdb and
    imagedb, a non-empty overlay2/. Never a guess from which tree is biggest."""
    for d in daemons:
        if d.storage_driver:
            return d.storage_driver, f"--storage-driver of the running dockerd (pid {d.pid})"
    if _config_applies(root, source, daemon_json):
        configured = read_daemon_json(daemon_json).get("storage-driver")
        if isinstance(configured, str) and configured:
            return configured, f"storage-driver in {daemon_json}"
    stores = _image_stores(root)
    if len(stores) == 1:
        return stores[0], f"image/{stores[0]}/ holds layerdb and imagedb"
    if stores:
        others = ", ".join(f"image/{d}/" for d in stores[1:])
        return stores[0], f"image/{stores[0]}/ holds the newest repositories.json (also: {others})"
    if overlay2_used:
        return "overlay2", "overlay2/ holds data"
    return None, ""


def detect_layout(root: Path, source: str, daemon_json: Path = DAEMON_JSON,
                  daemons: list[DaemonProcess] | None = None) -> Layout:
    require_store(root, source)
    notes: list[str] = []
    trees = tuple(d for d in GRAPH_DRIVERS if _nonempty_dir(root / d))
    cfg = read_daemon_json(daemon_json) if source != "--root" else {}
    features = cfg.get("features")
    c8d_flag = isinstance(features, dict) and features.get("containerd-snapshotter") is True
    c8d_roots = []
    for cand in (root / "containerd" / "daemon", Path("/var/lib/containerd")):
        if (cand / CONTAINERD_SNAPSHOTTER_DIR).is_dir():
            c8d_roots.append(str(cand))
    overlay2 = root / "overlay2"
    overlay2_used = overlay2.is_dir() and _nonempty_dir(overlay2)
    # With data in overlay2/ the daemon keeps the graph driver ("graphdriver-prior") unless told otherwise.
    containerd_store = c8d_flag or (not overlay2_used and (root / "rootfs").is_dir())
    decided, evidence = decide_driver(root, source, daemon_json,
                                      find_daemons(root, daemon_json) if daemons is None else daemons,
                                      overlay2_used)
    if c8d_flag or (decided == "overlay2" and not overlay2_used):
        decided, evidence = None, ""
    active = decided
    if active is None and not containerd_store and (root / CONTAINERD_SNAPSHOTTER_DIR).is_dir():
        notes.append("a containerd root (no dockerd data root): its snapshots and content are classified")
    elif active is None and not containerd_store:
        notes.append("no overlay2 tree under the data root: nothing to walk")
    elif active is not None and active not in CLASSIFIED_DRIVERS:
        notes.append(unclassified_message(active, evidence))
    for other in trees:
        if other != active and not (active is None and other == "overlay2"):
            notes.append(f"{other}/ holds data of another storage driver (dormant store)")
    return Layout(str(root), source, active, trees, containerd_store, tuple(c8d_roots), tuple(notes), evidence)


def unclassified_message(driver: str, evidence: str = "") -> str:
    how = f" ({evidence})" if evidence else ""
    return (f"the active storage driver is {driver}{how}: snapper classifies overlay2 only, so its layers are "
            "neither walked nor called leaked or dormant")


def process_start_ns(pid: int) -> int | None:
    """When process ``pid`` started, as wall-clock ns: /proc/<pid>/stat field 22 counts clock ticks since boot;
    boot is placed with CLOCK_REALTIME - CLOCK_BOOTTIME (not /proc/stat's btime, which has 1 s precision)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
        ticks = int(raw[raw.rindex(b")") + 2:].split()[19])
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    boot_ns = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return boot_ns + ticks * 1_000_000_000 // hz


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _flag_values(args: list[str], *names: str) -> list[str]:
    out: list[str] = []
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                out.append(args[i + 1])
            elif a.startswith(n + "="):
                out.append(a.split("=", 1)[1])
    return out


def find_daemons(root: Path, daemon_json: Path = DAEMON_JSON) -> list[DaemonProcess]:
    """dockerd processes whose data root is ``root`` (from their command line or daemon.json)."""
    found: list[DaemonProcess] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        args = _cmdline(pid)
        if not args or os.path.basename(args[0]) != "dockerd":
            continue
        roots = _flag_values(args, "--data-root", "-g", "--graph")
        cfg_files = _flag_values(args, "--config-file")
        if roots:
            droot = roots[-1]
        else:
            cfg = read_daemon_json(Path(cfg_files[-1]) if cfg_files else daemon_json)
            configured = cfg.get("data-root") or cfg.get("graph")
            droot = configured if isinstance(configured, str) and configured else str(DEFAULT_ROOT)
        try:
            same = os.path.realpath(droot) == str(root)
        except OSError:
            same = False
        if same:
            drivers = _flag_values(args, "--storage-driver", "-s")
            found.append(DaemonProcess(pid, args[0], droot, tuple(_flag_values(args, "-H", "--host")),
                                       drivers[-1] if drivers else None, process_start_ns(pid)))
    return found


def api_socket_candidates(daemons: list[DaemonProcess]) -> list[str]:
    """unix sockets the running daemons listen on; the default socket last."""
    out: list[str] = []
    for d in daemons:
        for h in d.hosts:
            if h.startswith("unix://"):
                out.append(h[len("unix://"):])
        if not d.hosts:
            out.append("/var/run/docker.sock")
    if daemons and "/var/run/docker.sock" not in out:
        out.append("/var/run/docker.sock")
    return out


def require_socket(path: str) -> None:
    """An API socket given by hand must be one: a typo would otherwise only show as "api no answer"."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"--socket {path}", f"no such socket ({e.strerror})",
                         "pass the unix socket dockerd listens on (its -H unix://PATH), or --no-api") from e
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"--socket {path}", "not a unix socket",
                         "pass the unix socket dockerd listens on (its -H unix://PATH), or --no-api")
