"""Snapshots on object storage: ``snapper leaks s3://bucket/prefix/<snapshot>`` (or a series under a prefix).

Read through the lake's storage seam (``snapper.lake.open_lake``: ``pyarrow.fs``, endpoint and credentials from
``AWS_ENDPOINT_URL`` and the standard ``AWS_*`` variables): the snapshot's files (``manifest.json`` and its
Parquet tables) are copied into a private temporary dir of this process, removed when it exits, and the copy is
opened like any local snapshot, so every command and query runs unchanged. Nothing is written to the store.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from snapper.errors import SnapshotError

# typer's Path arguments collapse "s3://b/k" into "s3:/b/k": both spellings name the object store
_S3 = re.compile(r"^s3:/+")
_COPIED = (".json", ".parquet")
_cache: dict[str, Path] = {}


def is_remote(arg: str | Path) -> bool:
    return bool(_S3.match(str(arg)))


def url_of(arg: str | Path) -> str:
    return _S3.sub("s3://", str(arg), count=1)


def _tmp_root() -> Path:
    if "" not in _cache:
        d = Path(tempfile.mkdtemp(prefix="snapper-s3-"))
        atexit.register(shutil.rmtree, d, True)
        _cache[""] = d
    return _cache[""]


def fetch(arg: str | Path) -> Path:
    """A local copy of the snapshot or series dir at an s3:// URL (copied once per process)."""
    from snapper import lake

    url = url_of(arg).rstrip("/")
    if url in _cache:
        return _cache[url]
    store = lake.open_lake(url)
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise SnapshotError(url, f"cannot list it ({str(exc).splitlines()[0]})",
                            "check the URL, AWS_ENDPOINT_URL and the credentials") from exc
    files = [i for i in infos if i.type == pafs.FileType.File and i.path.endswith(_COPIED)
             and not any(part.startswith(".") for part in i.path[len(store.root):].split("/"))]
    if not files:
        raise SnapshotError(url, "no snapshot there (no manifest.json or tables under it)",
                            "pass the URL of a snapshot dir or of a prefix holding snapshots")
    dest = _tmp_root() / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rsplit("/", 1)[-1]
    for i in files:
        local = dest / i.path[len(store.root):].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with store.fs.open_input_stream(i.path) as src, open(local, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as exc:
            raise SnapshotError(f"s3://{i.path}", f"cannot read it ({str(exc).splitlines()[0]})",
                                "check the credentials and retry") from exc
        os.chmod(local, 0o600)
    _cache[url] = dest
    return dest


__all__ = ["fetch", "is_remote", "url_of"]
