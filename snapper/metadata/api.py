"""The engine API over its unix socket: a cross-check, never needed for a complete snapshot.

Only GET requests. The daemon's answer is trusted only when ``/info`` reports the same data root.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote

from snapper.metadata import Rows
from snapper.walk import error_row

TIMEOUT = 30.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class EngineAPI:
    def __init__(self, sock_path: str, timeout: float = TIMEOUT) -> None:
        self.sock_path = sock_path
        self.timeout = timeout

    def get(self, path: str) -> Any:
        conn = _UnixConnection(self.sock_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(0, f"HTTP {resp.status} for GET {path}")
            return json.loads(body)
        finally:
            conn.close()


def _dir_of(path: str | None, overlay_dir: str) -> str | None:
    if not path:
        return None
    prefix = overlay_dir.rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix):].split("/", 1)[0]
    return None


def _lowers(lower: str | None, overlay_dir: str) -> list[str]:
    if not lower:
        return []
    return [d for d in (_dir_of(p, overlay_dir) for p in lower.split(":")) if d]


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def collect_api(sock_path: str, data_root: str) -> tuple[dict[str, Rows], dict[str, Any], Rows]:
    """api_* tables, engine facts ({version, data root}) and errors. Raises OSError if the socket is dead."""
    api = EngineAPI(sock_path)
    version = api.get("/version")
    info = api.get("/info")
    facts = {"engine_version": version.get("Version"), "api_version": version.get("ApiVersion"),
             "docker_root_dir": info.get("DockerRootDir"), "driver": info.get("Driver"), "socket": sock_path}
    errors: Rows = []
    tables: dict[str, Rows] = {"api_images": [], "api_containers": [], "api_build_cache": [], "api_df": []}
    if info.get("DockerRootDir") != data_root:
        errors.append(error_row("api", sock_path, "request", None,
                                f"daemon on this socket uses data root {info.get('DockerRootDir')}, not {data_root}"))
        return tables, facts, errors
    overlay_dir = data_root.rstrip("/") + "/overlay2"
    for img in api.get("/images/json?all=1"):
        iid = img.get("Id")
        try:
            det = api.get(f"/images/{quote(iid, safe='')}/json")
        except (OSError, ValueError) as e:
            errors.append(error_row("api", f"image {iid}", "request", e))
            det = {}
        gd = det.get("GraphDriver") or {}
        data = gd.get("Data") or {}
        tables["api_images"].append({
            "image_id": iid, "tags": img.get("RepoTags") or [], "size": _int(img.get("Size")),
            "graph_driver": gd.get("Name"), "upper_dir": data.get("UpperDir"), "lower_dir": data.get("LowerDir"),
            "top_layer_id": _dir_of(data.get("UpperDir"), overlay_dir),
            "lower_layer_ids": _lowers(data.get("LowerDir"), overlay_dir),
        })
    for c in api.get("/containers/json?all=1"):
        cid = c.get("Id")
        try:
            det = api.get(f"/containers/{quote(cid, safe='')}/json")
        except (OSError, ValueError) as e:
            errors.append(error_row("api", f"container {cid}", "request", e))
            det = {}
        gd = det.get("GraphDriver") or {}
        data = gd.get("Data") or {}
        lowers = _lowers(data.get("LowerDir"), overlay_dir)
        tables["api_containers"].append({
            "container_id": cid, "name": (det.get("Name") or "").lstrip("/") or None,
            "image_id": det.get("Image") or c.get("ImageID"), "state": (det.get("State") or {}).get("Status"),
            "upper_dir": data.get("UpperDir"), "lower_dir": data.get("LowerDir"),
            "mount_layer_id": _dir_of(data.get("UpperDir"), overlay_dir),
            "init_layer_id": lowers[0] if lowers and lowers[0].endswith("-init") else None,
            "size_rw": None,
        })
    df = api.get("/system/df")
    tables["api_df"] = _df_rows(df)
    sizes = {c.get("Id"): _int(c.get("SizeRw")) for c in df.get("Containers") or []}
    for row in tables["api_containers"]:
        row["size_rw"] = sizes.get(row["container_id"])
    for b in df.get("BuildCache") or []:
        parents = b.get("Parents") or ([b["Parent"]] if b.get("Parent") else [])
        tables["api_build_cache"].append({
            "id": b.get("ID"), "type": b.get("Type"), "description": b.get("Description"),
            "size": _int(b.get("Size")), "in_use": bool(b.get("InUse")), "shared": bool(b.get("Shared")),
            "created_at": b.get("CreatedAt"), "last_used_at": b.get("LastUsedAt"), "parents": parents,
        })
    return tables, facts, errors


def _df_rows(df: dict[str, Any]) -> Rows:
    """`docker system df` figures computed as the CLI (<= 28) does from the same response."""
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []
    cache = df.get("BuildCache") or []
    img_unused = sum(_int(i.get("Size")) or 0 for i in images if not i.get("Containers"))
    vol_size = [(_int((v.get("UsageData") or {}).get("Size")) or 0, (v.get("UsageData") or {}).get("RefCount"))
                for v in volumes]
    return [
        {"kind": "images", "total_count": len(images), "active": sum(1 for i in images if i.get("Containers")),
         "size": _int(df.get("LayersSize")) or 0, "reclaimable": img_unused},
        {"kind": "containers", "total_count": len(containers),
         "active": sum(1 for c in containers if c.get("State") == "running"),
         "size": sum(_int(c.get("SizeRw")) or 0 for c in containers),
         "reclaimable": sum(_int(c.get("SizeRw")) or 0 for c in containers if c.get("State") != "running")},
        {"kind": "volumes", "total_count": len(volumes), "active": sum(1 for _, r in vol_size if r),
         "size": sum(max(s, 0) for s, _ in vol_size), "reclaimable": sum(max(s, 0) for s, r in vol_size if not r)},
        {"kind": "build_cache", "total_count": len(cache), "active": sum(1 for b in cache if b.get("InUse")),
         "size": sum(_int(b.get("Size")) or 0 for b in cache if not b.get("Shared")),
         "reclaimable": sum(_int(b.get("Size")) or 0 for b in cache if not b.get("InUse") and not b.get("Shared"))},
    ]
