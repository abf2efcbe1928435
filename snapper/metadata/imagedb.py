"""image/<driver>/imagedb (image configs) and repositories.json (tags).

The image ID is the sha256 of the config file's bytes; ``rootfs.diff_ids`` yields the chain ids of all of
the image's layers (moby ``daemon/internal/image/{store.go,fs.go}``). ``imagedb/metadata/sha256/<id>/parent``
is written by the legacy builder for intermediate images.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from snapper.metadata import Rows, clean_text, text_or_none
from snapper.metadata.files import read_bytes, read_optional
from snapper.metadata.layerdb import DIGEST, HEX64, chain_ids
from snapper.walk import error_row


def read_tags(image_dir: Path, rel: str) -> tuple[Rows, Rows]:
    """repositories.json -> one row per reference."""
    path = image_dir / "repositories.json"
    obj = f"{rel}/repositories.json"
    try:
        data = json.loads(read_bytes(path))
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [error_row("tags", obj, "read", e)]
    except (ValueError, UnicodeDecodeError) as e:
        return [], [error_row("tags", obj, "parse", e, f"not valid JSON: {e}")]
    except RecursionError:  # json.loads recurses per nesting level: "[[[[..." deeper than the stack
        return [], [error_row("tags", obj, "parse", None, "not valid JSON: nested too deeply")]
    repos = data.get("Repositories") if isinstance(data, dict) else None
    if not isinstance(repos, dict):
        return [], [error_row("tags", obj, "parse", None, "no Repositories object")]
    rows: Rows = []
    errors: Rows = []
    for repo, refs in sorted(repos.items()):
        if not isinstance(refs, dict):
            errors.append(error_row("tags", obj, "parse", None, f"repository {repo!r} is not an object"))
            continue
        for ref, image_id in sorted(refs.items()):
            if isinstance(image_id, str):
                rows.append({"repository": clean_text(repo), "ref": clean_text(ref), "image_id": clean_text(image_id)})
            else:
                errors.append(error_row("tags", obj, "parse", None, f"reference {ref!r} has no image id"))
    return rows, errors


def _image_row(path: Path, name: str, tags: dict[str, list[str]], image_dir: Path, rel: str,
               errors: Rows) -> dict[str, Any]:
    image_id = "sha256:" + name
    obj = f"{rel}/imagedb/content/sha256/{name}"
    row: dict[str, Any] = {"image_id": image_id, "digest_ok": None, "created": None, "diff_ids": None,
                           "chain_ids": None, "top_chain_id": None, "parent": None, "last_updated": None,
                           "tags": tags.get(image_id, []), "mtime_ns": None, "problem": None}
    try:
        row["mtime_ns"] = os.lstat(path).st_mtime_ns
        raw = read_bytes(path)
    except OSError as e:
        errors.append(error_row("images", obj, "read", e))
        row["problem"] = f"unreadable: {e.strerror or e}"
        return row
    row["digest_ok"] = hashlib.sha256(raw).hexdigest() == name
    meta = image_dir / "imagedb" / "metadata" / "sha256" / name
    try:
        row["parent"] = read_optional(meta / "parent") or None
        row["last_updated"] = read_optional(meta / "lastUpdated")
    except OSError as e:
        errors.append(error_row("images", f"{rel}/imagedb/metadata/sha256/{name}", "read", e))
    try:
        cfg = json.loads(raw)
        if not isinstance(cfg, dict):
            raise ValueError("config is not a JSON object")
        rootfs = cfg.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if diff_ids is None:
            diff_ids = []
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) and DIGEST.match(d) for d in diff_ids):
            raise ValueError("rootfs.diff_ids is not a list of sha256 digests")
        row["created"] = text_or_none(cfg.get("created"))
        row["diff_ids"] = diff_ids
        chains = chain_ids(diff_ids)
        row["chain_ids"] = chains
        row["top_chain_id"] = chains[-1] if chains else None
    except (ValueError, UnicodeDecodeError) as e:
        row["problem"] = f"corrupt config: {e}"
        errors.append(error_row("images", obj, "parse", e, row["problem"]))
    except RecursionError:
        row["problem"] = "corrupt config: JSON nested too deeply"
        errors.append(error_row("images", obj, "parse", None, row["problem"]))
    if row["digest_ok"] is False and row["problem"] is None:
        row["problem"] = "sha256 of the config does not match its name"
        errors.append(error_row("images", obj, "parse", None, row["problem"]))
    return row


def read_images(image_dir: Path, rel: str, tag_rows: Rows) -> tuple[Rows, Rows]:
    """imagedb/content/sha256/*: one row per config, with chain ids and tags."""
    tags: dict[str, list[str]] = {}
    for t in tag_rows:
        tags.setdefault(t["image_id"], []).append(t["ref"])
    rows: Rows = []
    errors: Rows = []
    base = image_dir / "imagedb" / "content" / "sha256"
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return rows, errors
    except OSError as e:
        return rows, [error_row("images", f"{rel}/imagedb/content/sha256", "scandir", e)]
    for name in names:
        if not HEX64.match(name):
            errors.append(error_row("images", f"{rel}/imagedb/content/sha256/{clean_text(name)}", "parse", None,
                                    "name is not an image id"))
            continue
        rows.append(_image_row(base / name, name, tags, image_dir, rel, errors))
    return rows, errors
