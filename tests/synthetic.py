"""Small fake Docker data roots shaped exactly like real ones (graphdriver store, overlay2), for unit tests.

The layout follows docs/docker-storage.md sections 1-4 (moby ``daemon/graphdriver/overlay2/overlay.go``,
``daemon/internal/layer/filestore.go``, ``daemon/internal/image/fs.go``):

- ``overlay2/<dir>/{diff/,link,lower,work/,committed}`` with ``<dir>`` a random 64-hex cache-id or mount-id,
  ``<mount-id>-init`` for container init layers, 25-char ``[0-9a-z]`` BuildKit ids, and
  ``overlay2/l/<26 base32> -> ../<dir>/diff`` short links; modes 0710 (dir), 0755 (diff), 0700 (work, l);
- ``image/overlay2/layerdb/sha256/<chain>/{cache-id,diff,parent,size,tar-split.json.gz}``, a
  ``<chain>-<rand64>-removing`` leftover, ``layerdb/mounts/<cid>/{mount-id,init-id,parent}`` and
  ``layerdb/tmp/write-set-<n>``;
- ``imagedb/content/sha256/<id>``: config JSON whose sha256 is its name, ``rootfs.diff_ids`` consistent with
  the layerdb chain ids (chain(0) = diff(0); chain(n) = sha256("<chain(n-1)> <diff(n)>"));
  ``imagedb/metadata/sha256/<id>/{parent,lastUpdated}``; ``repositories.json``;
- ``containers/<cid>/config.v2.json`` with ``State`` and an ``Env`` holding :data:`SECRET`, which must never
  reach a snapshot.

Nothing here needs a Docker daemon. Every id is drawn from a seeded RNG, so a root is reproducible.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SECRET = "s3cr3t-Pa55w0rd-4f1e9b7c"  # appears in config.v2.json Env and Labels only
LABEL_SECRET = "label-secret-77aa31"

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """OCI identity.ChainID step, both arguments and the result as ``sha256:<hex>``."""
    if parent_chain is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()


@dataclass
class Layer:
    """One overlay2 directory."""

    dir_id: str
    path: Path
    link_id: str | None
    lower: str | None = None  # content of the lower file
    parent: Layer | None = None

    @property
    def diff(self) -> Path:
        return self.path / "diff"


@dataclass
class Image:
    image_id: str  # sha256:<hex>
    config: bytes
    diff_ids: list[str]
    chain_ids: list[str]
    layers: list[Layer]
    tags: list[str] = field(default_factory=list)
    parent: str | None = None

    @property
    def top(self) -> Layer:
        return self.layers[-1]


@dataclass
class Container:
    cid: str
    name: str
    mount: Layer
    init: Layer
    image: Image
    state: str


@dataclass
class Standard:
    """What :func:`build_standard` created, for assertions."""

    root: Path
    images: dict[str, Image]
    containers: dict[str, Container]
    layers: dict[str, Layer]  # by role
    removing_dir: str  # layerdb/sha256/<chain>-<rand>-removing
    removing_chain: str
    removing_cache_id: str
    buildkit_mount: str  # layerdb/mounts/<25-char>
    dangling_short: str  # l/<short> whose target dir is gone
    missing_short: str  # referenced by a lower file, absent from l/
    broken_cid: str  # corrupt config.v2.json
    ghost_cid: str  # containers/<cid>/ without config.v2.json
    upper: Layer  # the running container's RW layer, with the odd files below
    odd: dict[str, bytes] = field(default_factory=dict)  # role -> path relative to upper.diff


class SyntheticRoot:
    """Builds a data root step by step; ids come from a seeded RNG."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.overlay = root / "overlay2"
        self.image_dir = root / "image" / "overlay2"
        self.layerdb = self.image_dir / "layerdb"
        self.repos: dict[str, dict[str, str]] = {}
        self.overlay.mkdir(parents=True, mode=0o710, exist_ok=True)
        (self.overlay / "l").mkdir(mode=0o700, exist_ok=True)
        for d in (self.layerdb / "sha256", self.layerdb / "mounts", self.layerdb / "tmp",
                  self.image_dir / "imagedb" / "content" / "sha256",
                  self.image_dir / "imagedb" / "metadata" / "sha256", root / "containers"):
            d.mkdir(parents=True, exist_ok=True)

    # --- ids -----------------------------------------------------------------------------------------

    def hex64(self) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(64))

    def buildkit_id(self) -> str:
        return "".join(self.rng.choice(_BASE36) for _ in range(25))

    def short_id(self) -> str:
        return "".join(self.rng.choice(_BASE32) for _ in range(26))

    def digest(self, seed_bytes: bytes | None = None) -> str:
        data = seed_bytes if seed_bytes is not None else self.rng.randbytes(32)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    # --- overlay2 --------------------------------------------------------------------------------------

    def add_layer(self, dir_id: str | None = None, parent: Layer | None = None, *, with_link: bool = True,
                  lower_extra: str | None = None) -> Layer:
        """overlay2/<dir> as the driver's ``create`` makes it: diff/, l/ link, link; with a parent also
        work/, lower and ``committed`` in the parent."""
        dir_id = dir_id or self.hex64()
        path = self.overlay / dir_id
        path.mkdir(mode=0o710)
        os.chmod(path, 0o710)
        (path / "diff").mkdir(mode=0o755)
        link_id = None
        if with_link:
            link_id = self.short_id()
            os.symlink(f"../{dir_id}/diff", self.overlay / "l" / link_id)
            _write(path / "link", link_id.encode(), 0o644)
        lower = None
        if parent is not None:
            (path / "work").mkdir(mode=0o700)
            if not (parent.path / "committed").exists():
                _write(parent.path / "committed", b"", 0o600)
            parts = [f"l/{parent.link_id}"] + (parent.lower.split(":") if parent.lower else [])
            if lower_extra:
                parts.append(lower_extra)
            lower = ":".join(parts)
            _write(path / "lower", lower.encode(), 0o644)
        return Layer(dir_id, path, link_id, lower, parent)

    def write(self, layer: Layer, rel: str | bytes, data: bytes = b"", mode: int = 0o644) -> Path:
        p = os.path.join(os.fsencode(layer.diff), os.fsencode(rel))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        _write(Path(os.fsdecode(p)), data, mode)
        return Path(os.fsdecode(p))

    def add_bulk(self, layer: Layer, n_files: int, per_dir: int = 1000, data: bytes = b"") -> None:
        """Many small files (for timing-sensitive tests)."""
        for i in range(n_files):
            d = os.path.join(os.fsencode(layer.diff), b"bulk", b"d%04d" % (i // per_dir))
            if i % per_dir == 0:
                os.makedirs(d, exist_ok=True)
            fd = os.open(os.path.join(d, b"f%06d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            if data:
                os.write(fd, data)
            os.close(fd)

    # --- layer store -------------------------------------------------------------------------------------

    def add_chain(self, parent_chain: str | None, diff_id: str, cache_id: str, size: int,
                  dir_name: str | None = None) -> str:
        cid = chain_id(parent_chain, diff_id)
        d = self.layerdb / "sha256" / (dir_name or cid.split(":", 1)[1])
        d.mkdir()
        _write(d / "cache-id", cache_id.encode(), 0o644)
        _write(d / "diff", diff_id.encode(), 0o644)
        if parent_chain is not None:
            _write(d / "parent", parent_chain.encode(), 0o644)
        _write(d / "size", str(size).encode(), 0o644)
        _write(d / "tar-split.json.gz", gzip.compress(b'{"type":2,"payload":null}\n', mtime=0), 0o644)
        return cid

    def add_image(self, contents: list[dict[str, bytes]], tags: tuple[str, ...] = (), *,
                  parent: Image | None = None, reuse: Image | None = None, top_buildkit: bool = False,
                  created: str = "2026-11-01T10:00:00Z") -> Image:
        """An image whose layer i holds contents[i]. ``reuse`` shares the first layers of another image
        (same diff ids -> same chains -> same cache dirs)."""
        diff_ids: list[str] = []
        chains: list[str] = []
        layers: list[Layer] = []
        prev: Layer | None = None
        for i, files in enumerate(contents):
            diff_id = _diff_id(files)
            if reuse is not None and reuse.diff_ids[:i] == diff_ids and reuse.diff_ids[i:i + 1] == [diff_id]:
                diff_ids.append(diff_id)
                chains.append(reuse.chain_ids[i])
                prev = reuse.layers[i]
                layers.append(prev)
                continue
            last = i == len(contents) - 1
            layer = self.add_layer(self.buildkit_id() if (last and top_buildkit) else None, prev)
            for rel, data in files.items():
                self.write(layer, rel, data)
            cid = self.add_chain(chains[-1] if chains else None, diff_id, layer.dir_id,
                                 sum(len(v) for v in files.values()))
            diff_ids.append(diff_id)
            chains.append(cid)
            layers.append(layer)
            prev = layer
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "created": created,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(diff_ids))],
        }, separators=(",", ":")).encode()
        hexid = hashlib.sha256(config).hexdigest()
        _write(self.image_dir / "imagedb" / "content" / "sha256" / hexid, config, 0o600)
        meta = self.image_dir / "imagedb" / "metadata" / "sha256" / hexid
        meta.mkdir()
        _write(meta / "lastUpdated", created.encode(), 0o600)
        if parent is not None:
            _write(meta / "parent", parent.image_id.encode(), 0o600)
        img = Image("sha256:" + hexid, config, diff_ids, chains, layers, list(tags),
                    parent.image_id if parent else None)
        for t in tags:
            repo = t.rsplit(":", 1)[0]
            self.repos.setdefault(repo, {})[t] = img.image_id
        self.write_repositories()
        return img

    def write_repositories(self) -> None:
        data = json.dumps({"Repositories": self.repos}).encode()
        p = self.image_dir / "repositories.json"
        p.unlink(missing_ok=True)
        _write(p, data, 0o600)

    def add_container(self, image: Image, name: str, state: str = "running") -> Container:
        """init layer + RW layer on the image top, layerdb/mounts/<cid>/, containers/<cid>/config.v2.json."""
        cid = self.hex64()
        mount_id = self.hex64()
        init = self.add_layer(f"{mount_id}-init", image.top)
        self.write(init, "etc/hosts", b"")
        self.write(init, "etc/resolv.conf", b"")
        mount = self.add_layer(mount_id, init)
        if state == "running":
            (mount.path / "merged").mkdir(mode=0o755)
        m = self.layerdb / "mounts" / cid
        m.mkdir()
        _write(m / "mount-id", mount_id.encode(), 0o644)
        _write(m / "init-id", f"{mount_id}-init".encode(), 0o644)
        _write(m / "parent", image.chain_ids[-1].encode(), 0o644)
        self.write_config(cid, name, image.image_id, state)
        return Container(cid, name, mount, init, image, state)

    def write_config(self, cid: str, name: str, image_id: str, state: str) -> None:
        running = state == "running"
        st = {"Running": running, "Paused": False, "Restarting": False, "OOMKilled": False,
              "RemovalInProgress": False, "Dead": state == "dead", "Pid": 4242 if running else 0,
              "ExitCode": 0, "Error": "",
              "StartedAt": "0001-01-01T00:00:00Z" if state == "created" else "2026-11-02T08:00:00.123Z",
              "FinishedAt": "0001-01-01T00:00:00Z", "Health": None}
        cfg = {
            "StreamConfig": {}, "State": st, "ID": cid, "Created": "2026-11-02T07:59:59.5Z", "Managed": False,
            "Path": "sh", "Args": ["-c", f"echo {SECRET}"],
            "Config": {"Hostname": cid[:12], "Env": ["PATH=/usr/bin:/bin", f"DB_PASSWORD={SECRET}"],
                       "Cmd": ["sh", "-c", "sleep 1d"], "Image": "app:1.0",
                       "Labels": {"com.example.token": LABEL_SECRET}},
            "Image": image_id, "NetworkSettings": {}, "LogPath": "", "Name": f"/{name}", "Driver": "overlay2",
            "OS": "linux", "MountPoints": {}, "RestartCount": 0,
        }
        d = self.root / "containers" / cid
        d.mkdir(exist_ok=True)
        (d / "checkpoints").mkdir(exist_ok=True)
        _write(d / "config.v2.json", json.dumps(cfg).encode(), 0o600)
        _write(d / "hostconfig.json", b'{"NetworkMode":"default"}', 0o600)
        _write(d / "hostname", cid[:12].encode() + b"\n", 0o644)

    def add_removing(self, parent_chain: str | None) -> tuple[str, str, str]:
        """An interrupted delete (20.10+): ``<chain>-<rand64>-removing`` and a half-removed overlay2 dir
        (only part of diff/ left, l/ link and link file already gone). Returns (dir name, chain, cache id)."""
        diff_id = self.digest()
        cid = chain_id(parent_chain, diff_id)
        layer = self.add_layer(with_link=False)
        self.write(layer, "usr/lib/leftover.so", b"\x7fELF" + b"\0" * 60)
        name = f"{cid.split(':', 1)[1]}-{self.hex64()}-removing"
        self.add_chain(parent_chain, diff_id, layer.dir_id, 64, dir_name=name)
        return name, cid, layer.dir_id

    def add_buildkit_mount(self, image: Image) -> str:
        """A BuildKit transient RW layer: layerdb/mounts/<25-char> with a 64-hex mount-id and no init-id."""
        name = self.buildkit_id()
        rw = self.add_layer(None, image.top)
        m = self.layerdb / "mounts" / name
        m.mkdir()
        _write(m / "mount-id", rw.dir_id.encode(), 0o644)
        _write(m / "parent", image.chain_ids[-1].encode(), 0o644)
        return name

    def add_write_set(self, name: str = "write-set-123") -> Path:
        d = self.layerdb / "tmp" / name
        d.mkdir()
        _write(d / "size", b"4096", 0o644)
        _write(d / "tar-split.json.gz", gzip.compress(b"{}", mtime=0), 0o644)
        return d


def _diff_id(files: dict[str, bytes]) -> str:
    """Stands in for the digest of the layer tar: deterministic in the layer's files."""
    return "sha256:" + hashlib.sha256(json.dumps(sorted((k, v.hex()) for k, v in files.items())).encode()).hexdigest()


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


# --- odd file shapes (the running container's upper dir) ---------------------------------------------------

NON_UTF8 = b"bad-\xff\xfe-name"
NEWLINE = b"new\nline"
LONG_NAME = b"L" * 255
SPARSE_SIZE = 4 * 1024 * 1024 + 4096


def add_odd_files(sr: SyntheticRoot, layer: Layer) -> dict[str, bytes]:
    """FIFO, symlink to /etc/shadow, whiteout, opaque dir, sparse file, hard links, odd names. Returns
    role -> path relative to diff/ (bytes)."""
    diff = os.fsencode(layer.diff)
    odd = {
        "dir": b"odd",
        "fifo": b"odd/fifo",
        "shadow": b"odd/shadow-link",
        "whiteout": b"odd/deleted-file",
        "opaque": b"odd/opaque-dir",
        "opaque_child": b"odd/opaque-dir/kept",
        "sparse": b"odd/sparse",
        "hard_a": b"odd/hard-a",
        "hard_b": b"odd/hard-b",
        "non_utf8": b"odd/" + NON_UTF8,
        "non_utf8_dir_child": b"odd/" + NON_UTF8 + b".d/child",
        "newline": b"odd/" + NEWLINE,
        "long": b"odd/" + LONG_NAME,
        "long_dir_child": b"odd/" + LONG_NAME[:-2] + b".d/" + LONG_NAME,
    }

    def p(role: str) -> bytes:
        return os.path.join(diff, odd[role])

    os.makedirs(p("dir"))
    os.mkfifo(p("fifo"), 0o644)
    os.symlink(b"/etc/shadow", p("shadow"))
    os.mknod(p("whiteout"), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mkdir(p("opaque"))
    os.setxattr(p("opaque"), "trusted.overlay.opaque", b"y")
    _write(Path(os.fsdecode(p("opaque_child"))), b"kept\n", 0o644)
    fd = os.open(p("sparse"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.pwrite(fd, b"x" * 4096, SPARSE_SIZE - 4096)
    os.close(fd)
    _write(Path(os.fsdecode(p("hard_a"))), b"same-inode\n" * 1000, 0o644)
    os.link(p("hard_a"), p("hard_b"))
    for role in ("non_utf8", "newline", "long"):
        _write(Path(os.fsdecode(p(role))), role.encode() * 10, 0o644)
    for role in ("non_utf8_dir_child", "long_dir_child"):
        os.makedirs(os.path.dirname(p(role)))
        _write(Path(os.fsdecode(p(role))), b"child\n", 0o644)
    return odd


def build_standard(root: Path, seed: int = 0, odd: bool = True) -> Standard:
    """The standard synthetic root: three images (one shares its base layer), a running, an exited, a
    dead, a corrupt and a config-less container, a BuildKit transient mount and build-cache dir, a leaked
    dir, an interrupted delete (-removing), a write-set, a dangling l/ link and an unresolvable lower."""
    root.mkdir(parents=True, exist_ok=True)
    sr = SyntheticRoot(root, seed)
    base_files = {"bin/sh": b"#!busybox\n" * 50, "etc/os-release": b"NAME=synthetic\n"}
    app = sr.add_image([base_files, {"usr/lib/libapp.so": b"\x7fELF" + bytes(range(256)) * 40},
                        {"app/main.py": b"print('hi')\n", "app/data.bin": sr.rng.randbytes(300_000)}],
                       ["app:1.0", "app:latest"], top_buildkit=True)
    base = sr.add_image([base_files], ["base:1"], reuse=app, created="2026-10-01T00:00:00Z")
    child = sr.add_image([base_files, {"tmp/step": b"intermediate\n"}], [], parent=base, reuse=app,
                         created="2026-10-02T00:00:00Z")
    web = sr.add_container(app, "web", "running")
    job = sr.add_container(base, "job", "exited")
    dead = sr.add_container(child, "zombie", "dead")
    odd_paths = add_odd_files(sr, web.mount) if odd else {}
    sr.write(web.mount, "var/log/app.log", b"log line\n" * 100)

    # A container whose config.v2.json is corrupt, and one whose config is missing.
    broken = sr.add_container(base, "broken", "exited")
    cfg = root / "containers" / broken.cid / "config.v2.json"
    cfg.unlink()
    _write(cfg, b'{"ID": "' + broken.cid.encode() + b'", "State": {"Running": tru', 0o600)
    ghost_cid = sr.hex64()
    (root / "containers" / ghost_cid / "checkpoints").mkdir(parents=True)

    bk_mount = sr.add_buildkit_mount(app)
    buildcache = sr.add_layer(sr.buildkit_id(), app.layers[1])  # BuildKit snapshot (build cache)
    sr.write(buildcache, "root/.cache/pip/wheel", b"w" * 5000)
    leaked = sr.add_layer()  # interrupted registration: complete-looking dir, no owner
    sr.write(leaked, "usr/share/doc/leak.txt", b"leak\n" * 200)
    sr.add_write_set("write-set-123")
    removing_dir, removing_chain, removing_cache = sr.add_removing(app.chain_ids[0])

    # l/<short> -> ../<gone>/diff: the target dir was removed but the link was not.
    dangling = sr.short_id()
    os.symlink(f"../{sr.hex64()}/diff", sr.overlay / "l" / dangling)
    # A layer whose lower names a short id that has no l/ entry.
    missing = sr.short_id()
    unresolved = sr.add_layer(None, app.layers[0], lower_extra=f"l/{missing}")
    # Something the overlay2 driver never creates.
    _write(sr.overlay / "stray.txt", b"not a layer\n", 0o644)

    return Standard(
        root=root,
        images={"app": app, "base": base, "child": child},
        containers={"web": web, "job": job, "zombie": dead, "broken": broken},
        layers={"buildcache": buildcache, "leaked": leaked, "unresolved": unresolved},
        removing_dir=removing_dir, removing_chain=removing_chain, removing_cache_id=removing_cache,
        buildkit_mount=bk_mount, dangling_short=dangling, missing_short=missing, broken_cid=broken.cid,
        ghost_cid=ghost_cid, upper=web.mount, odd=odd_paths,
    )


# --- mounts (root only) ------------------------------------------------------------------------------------

@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    """``mount ARGS TARGET`` for the duration of the block; always unmounted (lazily if busy)."""
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` (to prove a test left none behind)."""
    prefix = os.fsencode(str(path))
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ")[4]
            if mp == prefix or mp.startswith(prefix + b"/"):
                out.append(os.fsdecode(mp))
    return out


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


# --- hostile shapes ---------------------------------------------------------------------------------------

def make_chain(top: Path, depth: int, name: bytes = b"d") -> None:
    """top/name/name/... (depth levels) and a file ``leaf`` at the bottom, made through dir fds: the path can
    be far longer than PATH_MAX."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open(b"leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def make_comb(top: Path, depth: int, siblings: int = 3) -> None:
    """A chain top/d/d/... where every level also has ``siblings`` empty dirs: whatever the readdir order,
    most levels keep a sibling waiting while the walk goes down (a parent fd each, past any fd budget)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            for i in range(siblings):
                os.mkdir(f"s{i}", dir_fd=fd)
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


# --- races -------------------------------------------------------------------------------------------------

def resolved(path: Any, dir_fd: int | None = None) -> bytes:
    """The absolute path an os call names: ``path`` alone, an fd, or ``path`` relative to ``dir_fd`` (the
    walk names everything relative to directory fds)."""
    if isinstance(path, int):
        return os.fsencode(os.readlink(f"/proc/self/fd/{path}"))
    if dir_fd is not None:
        return os.path.join(os.fsencode(os.readlink(f"/proc/self/fd/{dir_fd}")), os.fsencode(path))
    return os.fsencode(path)


class _Wrapped:
    """What os.scandir returns, wrapping a real iterator: yields ``entries`` (captured earlier) when given, else
    the real ones; when the walk closes it, the real iterator is closed (entries of an fd-based scandir lstat
    through its duplicated fd, so it stays open until then) and ``action`` runs."""

    def __init__(self, it: Any, entries: list[os.DirEntry[Any]] | None = None,
                 action: Callable[[], None] | None = None) -> None:
        self._real = it
        self._it = iter(entries) if entries is not None else iter(it)
        self._action = action

    def __iter__(self) -> _Wrapped:
        return self

    def __next__(self) -> os.DirEntry[Any]:
        return next(self._it)

    def __enter__(self) -> _Wrapped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._real.close()
        if self._action is not None:
            action, self._action = self._action, None
            action()


def delete_between_scandir_and_stat(monkeypatch: pytest.MonkeyPatch, directory: Path, victim: Path) -> None:
    """Wrap os.scandir so that ``victim`` is deleted after ``directory`` was listed, before its entries
    are lstat'ed: the race a walk meets on a live data root."""
    real = os.scandir
    target = os.fsencode(str(directory))

    def scandir(path: Any = ".") -> Any:
        it = real(path)
        if resolved(path) != target:
            return it
        entries = list(it)
        os.unlink(victim)
        return _Wrapped(it, entries)

    monkeypatch.setattr(os, "scandir", scandir)


def after_listing(monkeypatch: pytest.MonkeyPatch, directory: Path, action: Callable[[], None]) -> None:
    """Run ``action`` right after the walk has listed ``directory`` (between the lstat of a subdir and its
    open: where a swap is a TOCTOU race)."""
    real = os.scandir
    target = os.fsencode(str(directory))

    def scandir(path: Any = ".") -> Any:
        it = real(path)
        return _Wrapped(it, action=action) if resolved(path) == target else it

    monkeypatch.setattr(os, "scandir", scandir)


# --- what du and find say -------------------------------------------------------------------------------------

def du_allocated(*paths: Path) -> int:
    """``du -sxc -B1``: allocated bytes, each inode once across all arguments, same filesystem only."""
    out = subprocess.run(["du", "-sxc", "-B1", *map(str, paths)], check=True, capture_output=True).stdout
    return int(out.splitlines()[-1].split()[0])


def du_apparent(path: Path) -> int:
    out = subprocess.run(["du", "-sx", "-b", str(path)], check=True, capture_output=True).stdout
    return int(out.split()[0])


def find_count(path: Path) -> int:
    """``find DIR -xdev | wc -l``, NUL-separated so that names with newlines count once."""
    out = subprocess.run(["find", str(path), "-xdev", "-print0"], check=True, capture_output=True).stdout
    return out.count(b"\0")
