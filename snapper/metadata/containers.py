"""containers/<id>/config.v2.json: the container records (moby ``daemon/container/container.go``).

Only identity and state are kept. Environment variables, labels and command lines are never stored: a
snapshot is shared with people who should not see secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from snapper.metadata import Rows, clean_text, text_or_none
from snapper.metadata.files import read_bytes
from snapper.walk import error_row


def _state(st: dict[str, Any]) -> str:
    if st.get("Dead"):
        return "dead"
    if st.get("RemovalInProgress"):
        return "removing"
    if st.get("Restarting"):
        return "restarting"
    if st.get("Paused"):
        return "paused"
    if st.get("Running"):
        return "running"
    started = st.get("StartedAt")
    if isinstance(started, str) and started and not started.startswith("0001-01-01"):
        return "exited"
    return "created"


def read_containers(root: Path) -> tuple[Rows, Rows]:
    rows: Rows = []
    errors: Rows = []
    base = root / "containers"
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except FileNotFoundError:
        return rows, errors
    except OSError as e:
        return rows, [error_row("containers", "containers", "scandir", e)]
    for entry in entries:
        cid = clean_text(entry.name)
        obj = f"containers/{cid}/config.v2.json"
        row: dict[str, Any] = {"container_id": cid, "name": None, "image": None, "driver": None,
                               "state": None, "running": None, "dead": None, "removal_in_progress": None,
                               "created": None, "config_present": False, "mtime_ns": None, "problem": None}
        if not entry.is_dir(follow_symlinks=False):
            row["problem"] = "not a directory"
            errors.append(error_row("containers", f"containers/{cid}", "parse", None, row["problem"]))
            rows.append(row)
            continue
        path = Path(entry.path) / "config.v2.json"
        try:
            row["mtime_ns"] = os.lstat(path).st_mtime_ns
            raw = read_bytes(path)
            row["config_present"] = True
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                row["mtime_ns"] = entry.stat(follow_symlinks=False).st_mtime_ns
            row["problem"] = "config.v2.json missing"
            errors.append(error_row("containers", obj, "read", None, row["problem"]))
            rows.append(row)
            continue
        except OSError as e:
            row["problem"] = f"unreadable: {e.strerror or e}"
            errors.append(error_row("containers", obj, "read", e))
            rows.append(row)
            continue
        try:
            cfg = json.loads(raw)
            if not isinstance(cfg, dict):
                raise ValueError("not a JSON object")
            st_raw = cfg.get("State")
            st: dict[str, Any] = st_raw if isinstance(st_raw, dict) else {}
            name = cfg.get("Name")
            row.update({
                "name": clean_text(name.lstrip("/")) if isinstance(name, str) else None,
                "image": text_or_none(cfg.get("Image")),
                "driver": text_or_none(cfg.get("Driver")),
                "state": _state(st),
                "running": bool(st.get("Running")),
                "dead": bool(st.get("Dead")),
                "removal_in_progress": bool(st.get("RemovalInProgress")),
                "created": text_or_none(cfg.get("Created")),
            })
            if cfg.get("ID") not in (None, entry.name):
                row["problem"] = "ID in config.v2.json differs from the directory name"
                errors.append(error_row("containers", obj, "parse", None, row["problem"]))
        except (ValueError, UnicodeDecodeError) as e:
            row["problem"] = f"corrupt config.v2.json: {e}"
            errors.append(error_row("containers", obj, "parse", e, row["problem"]))
        except RecursionError:  # json.loads recurses per nesting level
            row["problem"] = "corrupt config.v2.json: JSON nested too deeply"
            errors.append(error_row("containers", obj, "parse", None, row["problem"]))
        rows.append(row)
    return rows, errors
