"""/proc/self/mountinfo: mounts at or under the data root (proc(5) format, octal escapes decoded)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from snapper.metadata import Rows, int64
from snapper.walk import error_row

_ESCAPE = re.compile(rb"\\([0-3][0-7]{2})")  # one byte: \000..\377
_ID = re.compile(rb"^[0-9]+\Z")


def unescape(field: bytes) -> bytes:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def parse_line(line: bytes) -> dict[str, Any] | None:
    parts = line.split(b" ")
    try:
        sep = parts.index(b"-", 6)
    except ValueError:
        return None
    if len(parts) < sep + 3:
        return None
    super_opts = parts[sep + 3] if len(parts) > sep + 3 else b""
    upper = None
    for opt in super_opts.split(b","):
        if opt.startswith(b"upperdir="):
            upper = unescape(opt[len(b"upperdir="):]).decode("utf-8", "backslashreplace")
    if not (_ID.match(parts[0]) and _ID.match(parts[1])):
        return None
    mid, pid = int64(int(parts[0][:20])), int64(int(parts[1][:20]))
    if mid is None or pid is None:
        return None
    return {
        "mount_id": mid,
        "parent_id": pid,
        "major_minor": parts[2].decode("ascii", "replace"),
        "root": unescape(parts[3]).decode("utf-8", "backslashreplace"),
        "mount_point_raw": unescape(parts[4]),
        "options": parts[5].decode("utf-8", "backslashreplace"),
        "fstype": parts[sep + 1].decode("utf-8", "backslashreplace"),
        "source": unescape(parts[sep + 2]).decode("utf-8", "backslashreplace"),
        "super_options": super_opts.decode("utf-8", "backslashreplace"),
        "upperdir": upper,
    }


def _layer_of(path: str, overlay_dir: str) -> str | None:
    prefix = overlay_dir.rstrip("/") + "/"
    if path.startswith(prefix):
        rest = path[len(prefix):]
        return rest.split("/", 1)[0] or None
    return None


def read_mountinfo(root: Path, source: str = "/proc/self/mountinfo") -> tuple[Rows, Rows, frozenset[bytes]]:
    """Rows for mounts at or under ``root`` and the set of their mount points (bytes, for the walk)."""
    rows: Rows = []
    points: set[bytes] = set()
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        return rows, [error_row("mountinfo", source, "read", e)], frozenset()
    root_b = os.fsencode(str(root)).rstrip(b"/")
    overlay_dir = str(root) + "/overlay2"
    errors: Rows = []
    for line in data.splitlines():
        rec = parse_line(line)
        if rec is None:
            errors.append(error_row("mountinfo", source, "parse", None, "malformed mountinfo line"))
            continue
        mp: bytes = rec.pop("mount_point_raw")
        if mp != root_b and not mp.startswith(root_b + b"/"):
            continue
        points.add(mp)
        mp_text = mp.decode("utf-8", "backslashreplace")
        rel = mp[len(root_b) + 1:].decode("utf-8", "backslashreplace") if mp != root_b else "."
        layer = _layer_of(mp_text, overlay_dir)
        if layer is None and rec["upperdir"]:
            layer = _layer_of(rec["upperdir"], overlay_dir)
        rec.update({"mount_point": mp_text, "rel_path": rel, "layer_id": layer})
        rows.append(rec)
    rows.sort(key=lambda r: (r["mount_point"], r["mount_id"]))
    return rows, errors, frozenset(points)
