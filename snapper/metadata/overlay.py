"""overlay2/ itself: the entries to walk, the short links in l/, and lower-chain resolution.

Layout (moby ``daemon/graphdriver/overlay2/overlay.go``): ``l/<26 base32>`` -> ``../<dir>/diff``; a layer's
``lower`` file lists ``l/<short>`` entries, nearest parent first.
"""

from __future__ import annotations

import os
import re
from typing import Any

from snapper.metadata import Rows
from snapper.walk import error_row, show_bytes

_TARGET = re.compile(r"^\.\./([^/]+)/diff$")


def list_entries(overlay_dir: bytes) -> tuple[list[bytes], Rows]:
    """Names directly under overlay2/ as bytes (lossless), sorted."""
    try:
        return sorted(os.listdir(overlay_dir)), []
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [error_row("walk", "overlay2", "scandir", e)]


def read_links(overlay_dir: bytes) -> tuple[Rows, Rows]:
    """overlay2/l/*: one row per entry; dangling means ``../<dir>/diff`` does not exist."""
    rows: Rows = []
    errors: Rows = []
    ldir = os.path.join(overlay_dir, b"l")
    try:
        names = sorted(os.listdir(ldir))
    except FileNotFoundError:
        return rows, errors
    except OSError as e:
        return rows, [error_row("links", "overlay2/l", "scandir", e)]
    for name in names:
        short = show_bytes(name)[0]
        path = os.path.join(ldir, name)
        row: dict[str, Any] = {"short_id": short, "target": None, "target_layer_id": None,
                               "well_formed": False, "dangling": None, "is_symlink": False}
        try:
            target_b = os.readlink(path)
        except OSError as e:
            if e.errno != 22:  # EINVAL: not a symlink
                errors.append(error_row("links", f"overlay2/l/{short}", "readlink", e))
            rows.append(row)
            continue
        row["is_symlink"] = True
        target = show_bytes(target_b)[0]
        row["target"] = target
        m = _TARGET.match(target)
        if m:
            row["well_formed"] = True
            row["target_layer_id"] = m.group(1)
            # Resolve by hand inside overlay2/ instead of following the link: never leave the tree.
            row["dangling"] = not os.path.isdir(os.path.join(overlay_dir, os.fsencode(m.group(1)), b"diff")) \
                or os.path.islink(os.path.join(overlay_dir, os.fsencode(m.group(1))))
        else:
            row["dangling"] = True
        rows.append(row)
    return rows, errors


def resolve_lower(lower: str | None, links: dict[str, str]) -> tuple[list[str | None] | None, int]:
    """``l/A:l/B`` -> [layer of A, layer of B] via the links table; unresolved entries are None."""
    if lower is None:
        return None, 0
    out: list[str | None] = []
    missing = 0
    for part in lower.split(":"):
        short = part[2:] if part.startswith("l/") else part
        layer = links.get(short)
        if layer is None:
            missing += 1
        out.append(layer)
    return out, missing
