"""Processes that hold a path under the data root: open fds, cwd and root of every process (/proc/*/).

A dir some process still has open (a ``docker-untar`` chrooted into a layer being extracted, a containerd
writer, a shell someone left in it) is in use whatever the metadata says. Reading /proc changes nothing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from snapper.metadata import Rows, clean_text

_LINKS = ("cwd", "root")


def _comm(pid: str) -> str | None:
    try:
        return clean_text(Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip())
    except OSError:
        return None


def _targets(pid: str) -> list[tuple[str, str]]:
    """(how, target) of a process's cwd, root and fds; a process that exits meanwhile gives what was read."""
    out: list[tuple[str, str]] = []
    for name in _LINKS:
        with contextlib.suppress(OSError):
            out.append((name, os.readlink(f"/proc/{pid}/{name}")))
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            out.append(("fd", os.readlink(f"/proc/{pid}/fd/{fd}")))
        except OSError:
            continue
    return out


def read_holders(root: Path, self_pid: int | None = None) -> Rows:
    """One row per (process, how, path) under ``root``; ``layer_id`` when the path is inside overlay2/<id>.
    The collecting process itself (``self_pid``, default this process) is skipped."""
    me = str(self_pid if self_pid is not None else os.getpid())
    prefix = str(root).rstrip("/") + "/"
    overlay = prefix + "overlay2/"
    rows: Rows = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    except OSError:
        return rows
    for pid in pids:
        hits = [(how, t) for how, t in _targets(pid) if t.startswith(prefix) and not t.endswith(" (deleted)")]
        if not hits:
            continue
        comm = _comm(pid)
        for how, target in sorted(set(hits)):
            layer = target[len(overlay):].split("/", 1)[0] if target.startswith(overlay) else None
            rows.append({"pid": int(pid), "comm": comm, "how": how, "path": clean_text(target[len(prefix):]),
                         "layer_id": clean_text(layer) if layer else None})
    return rows
