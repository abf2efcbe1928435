"""Prometheus textfile-collector metrics from a snapshot (node_exporter --collector.textfile.directory).

Written atomically (a temp file in the same dir, fsync, rename), so the exporter never reads half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from snapper import verdict
from snapper.errors import OutputError
from snapper.mechanisms import NAMES
from snapper.snapshot import Snapshot, open_snapshot, output_mode

_HELP = {
    "snapper_overlay2_bytes": ("gauge", "Allocated bytes under overlay2, each inode once."),
    "snapper_bytes": ("gauge", "Allocated bytes of overlay2 dirs by verdict."),
    "snapper_dirs": ("gauge", "overlay2 dirs by verdict."),
    "snapper_leaked_bytes": ("gauge", "Allocated bytes of leaked overlay2 dirs by mechanism."),
    "snapper_leaked_dirs": ("gauge", "Leaked overlay2 dirs by mechanism."),
    "snapper_docker_system_df_bytes": ("gauge", "What docker system df reports (images+containers+build cache)."),
    "snapper_filesystem_used_bytes": ("gauge", "Used bytes of the data root's filesystem."),
    "snapper_filesystem_size_bytes": ("gauge", "Size of the data root's filesystem."),
    "snapper_collect_duration_seconds": ("gauge", "Wall time of the collect."),
    "snapper_collect_errors": ("gauge", "Per-entry errors recorded by the collect."),
    "snapper_collect_timestamp_seconds": ("gauge", "When the collect started (unix time)."),
    "snapper_daemon_running": ("gauge", "1 if a dockerd ran on the data root during the collect."),
}
MECHANISMS = NAMES


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, value: float | int, labels: dict[str, str]) -> str:
    lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{lab}}} {value}"


def render(snap: Snapshot, grace_s: int = verdict.DEFAULT_GRACE_S) -> str:
    m = snap.manifest
    base = {"host": str(m.get("host", "")), "data_root": str(m.get("data_root", ""))}
    rep = verdict.report(snap, 0, grace_s)
    rec = {r["item"]: r for r in rep.reconciliation.to_pylist()}
    samples: dict[str, list[str]] = {k: [] for k in _HELP}
    samples["snapper_overlay2_bytes"].append(_line("snapper_overlay2_bytes", rec["overlay2 on disk"]["bytes"] or 0,
                                                   base))
    for v in ("live", "leaked", "in-flight", "unknown"):
        samples["snapper_bytes"].append(_line("snapper_bytes", rec[v]["bytes"] or 0, {**base, "verdict": v}))
        samples["snapper_dirs"].append(_line("snapper_dirs", rec[v]["dirs"] or 0, {**base, "verdict": v}))
    by_mech: dict[str, tuple[int, int]] = dict.fromkeys(MECHANISMS, (0, 0))
    for r in rep.leaks.to_pylist():
        b, n = by_mech.get(r["mechanism"], (0, 0))
        by_mech[r["mechanism"]] = (b + (r["bytes"] or 0), n + 1)
    for mech, (b, n) in sorted(by_mech.items()):
        samples["snapper_leaked_bytes"].append(_line("snapper_leaked_bytes", b, {**base, "mechanism": mech}))
        samples["snapper_leaked_dirs"].append(_line("snapper_leaked_dirs", n, {**base, "mechanism": mech}))
    if rec["docker system df (computed)"]["bytes"] is not None:
        samples["snapper_docker_system_df_bytes"].append(
            _line("snapper_docker_system_df_bytes", rec["docker system df (computed)"]["bytes"], base))
    st = m.get("statvfs", {})
    samples["snapper_filesystem_used_bytes"].append(_line("snapper_filesystem_used_bytes", st.get("used_bytes", 0),
                                                          base))
    samples["snapper_filesystem_size_bytes"].append(_line("snapper_filesystem_size_bytes", st.get("total_bytes", 0),
                                                          base))
    samples["snapper_collect_duration_seconds"].append(
        _line("snapper_collect_duration_seconds", m.get("durations", {}).get("total_s", 0), base))
    samples["snapper_collect_errors"].append(_line("snapper_collect_errors", m.get("errors", 0), base))
    samples["snapper_collect_timestamp_seconds"].append(
        _line("snapper_collect_timestamp_seconds", round(int(m.get("started_ns", 0)) / 1e9, 3), base))
    samples["snapper_daemon_running"].append(
        _line("snapper_daemon_running", int(bool(m.get("daemon", {}).get("running"))), base))
    out = []
    for name, (typ, help_) in _HELP.items():
        if samples[name]:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {typ}", *samples[name]]
    return "\n".join(out) + "\n"


def write(snapshot: str | Path | Snapshot, path: str | Path, grace_s: int = verdict.DEFAULT_GRACE_S) -> Path:
    snap = snapshot if isinstance(snapshot, Snapshot) else open_snapshot(snapshot)
    text = render(snap, grace_s)
    target = Path(path)
    fd, tmp = -1, ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.write(fd, text.encode())
        mode, gid = output_mode(target)
        os.fchmod(fd, mode)
        if gid >= 0:
            os.fchown(fd, -1, gid)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, target)
    except OSError as e:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise OutputError(str(target), f"cannot write metrics: {e.strerror or e}",
                          "check the directory exists, is writable and has space") from e
    return target
