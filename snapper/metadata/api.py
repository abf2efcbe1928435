"""The engine API over its unix socket: a cross-check, never needed for a complete snapshot.

Only GET requests, and only those that change nothing: never ``/system/df``, which makes dockerd finish the
removal of a crashed BuildKit step's dir (seen on 20.10 and 26.1) and would destroy the evidence; the
reconciliation computes what `docker system df` shows from the metadata instead. The daemon's answer is
trusted only when ``/info`` reports the same data root.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote

from snapper.metadata import Rows, clean_text, int64, text_or_none
from snapper.walk import error_row

TIMEOUT = 30.0


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (timeout None: block, for a stream such as GET /events)."""

    def __init__(self, path: str, timeout: float | None) -> None:
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
        """The decoded JSON answer. Raises OSError (no answer, a cut or malformed HTTP answer, a status other
        than 200) or ValueError (not JSON): a daemon killed mid-answer gives http.client.IncompleteRead, which
        is no OSError, and collect only expects these two."""
        conn = UnixConnection(self.sock_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Host": "docker"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise OSError(0, f"HTTP {resp.status} for GET {path}")
        except http.client.HTTPException as e:
            raise OSError(0, f"GET {path}: bad or cut HTTP answer ({type(e).__name__}: {str(e)[:80]})") from e
        finally:
            conn.close()
        try:
            return json.loads(body)
        except RecursionError as e:
            raise ValueError(f"GET {path}: JSON nested too deeply") from e


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _objs(v: Any) -> list[dict[str, Any]]:
    """The dicts of a JSON list (anything else in an answer is ignored: the API is a cross-check)."""
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _strs(v: Any) -> list[str]:
    return [clean_text(x) for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _dir_of(path: str | None, overlay_dir: str) -> str | None:
    if not path or not isinstance(path, str):
        return None
    prefix = overlay_dir.rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix):].split("/", 1)[0]
    return None


def _lowers(lower: str | None, overlay_dir: str) -> list[str]:
    if not lower or not isinstance(lower, str):
        return []
    return [d for d in (_dir_of(p, overlay_dir) for p in lower.split(":")) if d]


def _int(v: Any) -> int | None:
    if isinstance(v, float) and v == v and abs(v) < 2.0**63:  # not NaN, not out of range
        v = int(v)
    return int64(v)


def collect_api(sock_path: str, data_root: str) -> tuple[dict[str, Rows], dict[str, Any], Rows]:
    """api_* tables, engine facts ({version, data root}) and errors. Raises OSError if the socket is dead."""
    api = EngineAPI(sock_path)
    version = _obj(api.get("/version"))
    info = _obj(api.get("/info"))
    facts = {"engine_version": text_or_none(version.get("Version")),
             "api_version": text_or_none(version.get("ApiVersion")),
             "docker_root_dir": text_or_none(info.get("DockerRootDir")), "driver": text_or_none(info.get("Driver")),
             "socket": sock_path}
    errors: Rows = []
    tables: dict[str, Rows] = {"api_images": [], "api_containers": [], "api_build_cache": [], "api_df": []}
    if info.get("DockerRootDir") != data_root:
        errors.append(error_row("api", sock_path, "request", None,
                                f"daemon on this socket uses data root {facts['docker_root_dir']}, not {data_root}"))
        return tables, facts, errors
    overlay_dir = data_root.rstrip("/") + "/overlay2"
    for img in _objs(api.get("/images/json?all=1")):
        iid = text_or_none(img.get("Id"))
        if iid is None:
            continue
        try:
            det = _obj(api.get(f"/images/{quote(iid, safe='')}/json"))
        except (OSError, ValueError) as e:
            errors.append(error_row("api", f"image {iid}", "request", e))
            det = {}
        gd = _obj(det.get("GraphDriver"))
        data = {k: text_or_none(v) for k, v in _obj(gd.get("Data")).items()}
        tables["api_images"].append({
            "image_id": iid, "tags": _strs(img.get("RepoTags")), "size": _int(img.get("Size")),
            "graph_driver": text_or_none(gd.get("Name")), "upper_dir": data.get("UpperDir"),
            "lower_dir": data.get("LowerDir"),
            "top_layer_id": _dir_of(data.get("UpperDir"), overlay_dir),
            "lower_layer_ids": _lowers(data.get("LowerDir"), overlay_dir),
        })
    for c in _objs(api.get("/containers/json?all=1")):
        cid = text_or_none(c.get("Id"))
        if cid is None:
            continue
        try:
            det = _obj(api.get(f"/containers/{quote(cid, safe='')}/json"))
        except (OSError, ValueError) as e:
            errors.append(error_row("api", f"container {cid}", "request", e))
            det = {}
        gd = _obj(det.get("GraphDriver"))
        data = {k: text_or_none(v) for k, v in _obj(gd.get("Data")).items()}
        lowers = _lowers(data.get("LowerDir"), overlay_dir)
        tables["api_containers"].append({
            "container_id": cid, "name": (text_or_none(det.get("Name")) or "").lstrip("/") or None,
            "image_id": text_or_none(det.get("Image")) or text_or_none(c.get("ImageID")),
            "state": text_or_none(_obj(det.get("State")).get("Status")),
            "upper_dir": data.get("UpperDir"), "lower_dir": data.get("LowerDir"),
            "mount_layer_id": _dir_of(data.get("UpperDir"), overlay_dir),
            "init_layer_id": lowers[0] if lowers and lowers[0].endswith("-init") else None,
            "size_rw": None,
        })
    return tables, facts, errors
