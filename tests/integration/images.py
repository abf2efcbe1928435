"""Deterministic `docker save`-format image tarballs, for `docker load` with no registry.

Layers are plain tars of many small files, so loading and deleting take long enough to interrupt.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path


def _layer_tar(index: int, files: int, seed: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = f"{seed}-layer{index}"
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = 1577836800
        tar.addfile(info)
        per_dir = 1000
        for d in range((files + per_dir - 1) // per_dir):
            dname = f"{top}/d{d:04d}"
            info = tarfile.TarInfo(dname)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1577836800
            tar.addfile(info)
            for f in range(min(per_dir, files - d * per_dir)):
                data = f"{seed} {index} {d} {f}\n".encode()
                info = tarfile.TarInfo(f"{dname}/f{f:04d}.py")
                info.size = len(data)
                info.mode = 0o644
                info.mtime = 1577836800
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image_tar(dest: Path, tag: str, layer_files: Sequence[int], seed: str) -> list[str]:
    """Write a docker-save tarball with one layer per entry of ``layer_files``; return the diff ids."""
    layers = [_layer_tar(i, n, seed) for i, n in enumerate(layer_files)]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    config = {
        "architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }  # fmt: skip
    cfg_bytes = json.dumps(config, sort_keys=True).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    layer_paths = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = [{"Config": cfg_name, "RepoTags": [tag], "Layers": layer_paths}]
    with tarfile.open(dest, "w") as tar:
        for name, data in [(cfg_name, cfg_bytes), *zip(layer_paths, layers, strict=True),
                           ("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1577836800
            tar.addfile(info, io.BytesIO(data))
    return diff_ids
