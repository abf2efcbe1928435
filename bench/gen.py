"""Deterministic generator of realistic Docker data roots (overlay2 + a minimal image store) for benchmarks.

``python3 bench/gen.py --entries 1000000 --out /tmp/bench-snp-1m`` writes ``/tmp/bench-snp-1m/root``, a
data root that ``snapper collect --root`` accepts, and ``gen.json`` (what was planned, per layer dir).

Shape (moby ``daemon/graphdriver/overlay2/overlay.go``; layer store as in tests/synthetic.py):

- ``overlay2/<64-hex>`` image layers, ``<64-hex>-init`` + ``<64-hex>`` container layers, ``<25-char>`` BuildKit
  layers, each with ``diff/``, ``link`` and an ``l/<26 base32>`` short link; children have ``lower`` and
  ``work/``; parents carry ``committed``. Mounted-before dirs (container layers) have ``work/work``;
- contents like real images: a Debian-like base (merged-/usr symlinks, dpkg info, docs, locales), conda
  ``opt/conda/lib/python3.11/site-packages/<pkg>/<mod>.py`` + ``__pycache__`` + ``dist-info`` with the conda
  ``pkgs/`` cache hard-linked into the env, ``node_modules``, small app and config layers; container upper
  dirs with logs, whiteouts (char 0/0, via ``os.mknod``), opaque dirs, a FIFO, a sparse file and an odd name;
- hard links inside layers (conda pkgs, perl) and across layers (a leaked ``cp -al`` copy of a layer);
- ``image/overlay2/{layerdb/sha256,layerdb/mounts,imagedb/content/sha256,repositories.json}`` and
  ``containers/<id>/config.v2.json``, so verdicts are meaningful: every image layer is live, and some dirs are
  leaked on purpose (no layerdb entry, a chain without image, an orphan BuildKit dir, the ``cp -al`` copy).

Everything that is planned comes from ``random.Random(seed)``: the same seed and size give the same names,
types, sizes, modes, link targets and file mtimes (inode numbers and ctimes differ, of course).
``--data sparse`` keeps every file size but allocates no data blocks (for trees too big to write).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

_HEX = "0123456789abcdef"
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_SYL = ("ka", "lo", "mi", "py", "ar", "te", "zu", "no", "re", "xi", "dat", "net", "ser", "ops", "lib", "core",
        "util", "io", "web", "ml", "np", "gr", "fl", "qu", "st", "vo", "tor", "ch", "an", "ex")
_EXT_MOD = (".py",) * 24 + (".pyi", ".json", ".txt", ".pxd", ".h", ".csv") * 2 + (".so",)
_LANGS = ("de", "fr", "es", "it", "ja", "pt_BR", "ru", "zh_CN", "pl", "nl", "sv", "cs")
ADDED_IMAGE_CREATED = "2025-12-01T00:00:00Z"  # the image add_layers makes (bench/run.py removes it again)
T0 = 1_760_000_000  # file mtimes (whole seconds, as layer tars carry them) are T0 + a planned offset
_BUF = random.Random(1234).randbytes(1 << 20)


@dataclass
class LayerPlan:
    dir_id: str
    role: str  # base, runtime, node, app, config, init, rw, buildkit, leaked-*
    entries: int = 0  # find -xdev count of the dir, filled in when written
    parent: str | None = None
    link_id: str | None = None
    lower: str | None = None
    chain_id: str | None = None
    diff_id: str | None = None
    committed: bool = False
    walkable_lower: list[str] = field(default_factory=list)


@dataclass
class GenSummary:
    root: str
    seed: int
    requested: int
    entries: int  # rows a collect must produce: sum of entries over every overlay2 entry (l/ included)
    data: str
    layers: list[LayerPlan]
    images: int
    containers: int
    digest: str  # sha256 over the planned listing (paths, types, sizes, modes, targets, mtimes)
    seconds: float = 0.0

    def by_role(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.layers:
            out[p.role] = out.get(p.role, 0) + 1
        return out


class Writer:
    """Creates entries under one dir, counts them and feeds a digest of what was planned."""

    def __init__(self, top: bytes, rng: random.Random, data: str, digest: hashlib._Hash) -> None:
        self.top = top
        self.rng = rng
        self.data = data
        self.digest = digest
        self.n = 0
        self.dirs: set[bytes] = {b""}
        self.files: set[bytes] = set()

    def _note(self, rel: bytes, kind: str, size: int = 0, extra: bytes = b"") -> None:
        self.n += 1
        self.digest.update(b"%s\0%s\0%d\0%s\n" % (rel, kind.encode(), size, extra))

    def mkdir(self, rel: bytes, mode: int = 0o755) -> None:
        if rel in self.dirs:
            return
        parent = rel.rpartition(b"/")[0]
        self.mkdir(parent)
        os.mkdir(os.path.join(self.top, rel), mode)
        self.dirs.add(rel)
        self._note(rel, "d", 0, b"%o" % mode)

    def file(self, rel: bytes, size: int, mtime: int, mode: int = 0o644) -> bool:
        if rel in self.files or rel in self.dirs:
            return False
        self.files.add(rel)
        self.mkdir(rel.rpartition(b"/")[0])
        p = os.path.join(self.top, rel)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            if size and self.data == "real":
                off = (len(rel) * 7919 + size) % (len(_BUF) - min(size, len(_BUF) // 2))
                left = size
                while left:
                    chunk = _BUF[off:off + min(left, len(_BUF) - off)]
                    os.write(fd, chunk)
                    left -= len(chunk)
                    off = 0
            elif size:
                os.ftruncate(fd, size)
            os.fchmod(fd, mode)  # not subject to the umask
        finally:
            os.close(fd)
        os.utime(p, ns=(mtime * 10**9, mtime * 10**9))
        self._note(rel, "f", size, b"%o %d" % (mode, mtime))
        return True

    def sparse(self, rel: bytes, size: int, mtime: int) -> bool:
        """A hole with one 4 KiB block of data at the end (apparent size >> allocated)."""
        if rel in self.files or rel in self.dirs:
            return False
        self.files.add(rel)
        self.mkdir(rel.rpartition(b"/")[0])
        p = os.path.join(self.top, rel)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, _BUF[:4096], size - 4096)
        finally:
            os.close(fd)
        os.utime(p, ns=(mtime * 10**9, mtime * 10**9))
        self._note(rel, "sparse", size)
        return True

    def symlink(self, rel: bytes, target: bytes) -> bool:
        if rel in self.files or rel in self.dirs:
            return False
        self.files.add(rel)
        self.mkdir(rel.rpartition(b"/")[0])
        os.symlink(target, os.path.join(self.top, rel))
        self._note(rel, "l", 0, target)
        return True

    def hardlink(self, rel: bytes, src_abs: bytes) -> bool:
        if rel in self.files or rel in self.dirs:
            return False
        self.files.add(rel)
        self.mkdir(rel.rpartition(b"/")[0])
        os.link(src_abs, os.path.join(self.top, rel), follow_symlinks=False)
        self._note(rel, "h", 0, src_abs[len(self.top):] if src_abs.startswith(self.top) else b"ext")
        return True

    def whiteout(self, rel: bytes) -> bool:
        if rel in self.files or rel in self.dirs:
            return False
        self.files.add(rel)
        self.mkdir(rel.rpartition(b"/")[0])
        os.mknod(os.path.join(self.top, rel), stat.S_IFCHR | 0o000, os.makedev(0, 0))
        self._note(rel, "c")
        return True

    def fifo(self, rel: bytes) -> bool:
        if rel in self.files or rel in self.dirs:
            return False
        self.files.add(rel)
        self.mkdir(rel.rpartition(b"/")[0])
        os.mkfifo(os.path.join(self.top, rel), 0o600)
        self._note(rel, "p")
        return True

    def opaque(self, rel: bytes) -> None:
        self.mkdir(rel)
        p = os.path.join(self.top, rel)
        try:
            os.setxattr(p, "trusted.overlay.opaque", b"y", follow_symlinks=False)
        except OSError:  # not root: what rootless overlay uses
            os.setxattr(p, "user.overlay.opaque", b"y", follow_symlinks=False)
        self.digest.update(b"opaque %s\n" % rel)


# --- contents --------------------------------------------------------------------------------------------------

def _word(rng: random.Random, parts: tuple[int, int] = (1, 3)) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(*parts)))


def _size(rng: random.Random, median: int, cap: int = 512 << 10) -> int:
    return min(cap, int(rng.lognormvariate(0, 0.9) * median))


def fill_debian(w: Writer, budget: int) -> None:
    rng, t = w.rng, T0 - 86400 * 400
    for d, target in ((b"bin", b"usr/bin"), (b"lib", b"usr/lib"), (b"sbin", b"usr/sbin"), (b"lib64", b"usr/lib64")):
        w.symlink(d, target)
    for name in (b"passwd", b"group", b"shadow", b"os-release", b"hostname", b"nsswitch.conf"):
        w.file(b"etc/" + name, rng.randint(10, 2000), t, 0o640 if name == b"shadow" else 0o644)
    w.file(b"usr/bin/perl", 350_000, t, 0o755)
    w.hardlink(b"usr/bin/perl5.36.0", os.path.join(w.top, b"usr/bin/perl"))
    while w.n < budget:
        pkg = _word(rng).encode()
        ver = b"%d.%d-%d" % (rng.randint(0, 9), rng.randint(0, 30), rng.randint(1, 5))
        mt = t + rng.randint(0, 86400)
        for _ in range(rng.randint(0, 3)):
            w.file(b"usr/bin/" + _word(rng).encode(), _size(rng, 30_000), mt, 0o755)
        if rng.random() < 0.5:
            so = b"usr/lib/x86_64-linux-gnu/lib%s.so" % pkg
            w.file(so + b"." + ver, _size(rng, 80_000), mt)
            w.symlink(so + b".1", os.path.basename(so) + b"." + ver)
        doc = b"usr/share/doc/" + pkg
        w.file(doc + b"/copyright", _size(rng, 3000), mt)
        w.file(doc + b"/changelog.Debian.gz", _size(rng, 2000), mt)
        if rng.random() < 0.4:
            w.file(b"usr/share/man/man1/%s.1.gz" % pkg, _size(rng, 2000), mt)
        for lang in rng.sample(_LANGS, rng.randint(0, 6)):
            w.file(b"usr/share/locale/%s/LC_MESSAGES/%s.mo" % (lang.encode(), pkg), _size(rng, 10_000), mt)
        w.file(b"var/lib/dpkg/info/%s.list" % pkg, _size(rng, 800), mt)
        w.file(b"var/lib/dpkg/info/%s.md5sums" % pkg, _size(rng, 900), mt)


def _py_package(w: Writer, base: bytes, pkg: bytes, mt: int, pkgs_dir: bytes | None) -> None:
    rng = w.rng
    mods = [b""]
    for _ in range(rng.randint(0, 6)):
        parent = rng.choice(mods)
        mods.append((parent + b"/" if parent else b"") + _word(rng, (1, 2)).encode())
    for m in mods:
        d = base + b"/" + pkg + (b"/" + m if m else b"")
        w.file(d + b"/__init__.py", 0 if rng.random() < 0.5 else _size(rng, 1500), mt)
        for _ in range(rng.randint(1, 14)):
            name = _word(rng, (1, 2)).encode()
            ext = rng.choice(_EXT_MOD).encode()
            size = _size(rng, 60_000 if ext == b".so" else 3000)
            rel = d + b"/" + name + ext
            if rel in w.files:
                continue
            if pkgs_dir is not None and rng.random() < 0.6:  # conda links its package cache into the env
                src = pkgs_dir + b"/" + pkg + b"/" + (m + b"/" if m else b"") + name + ext
                if w.file(src, size, mt):
                    w.hardlink(rel, os.path.join(w.top, src))
            else:
                w.file(rel, size, mt)
            if ext == b".py":
                w.file(d + b"/__pycache__/" + name + b".cpython-311.pyc", int(size * 1.3) + 200, mt + 1)
        if rng.random() < 0.15:
            w.file(d + b"/tests/test_" + _word(rng).encode() + b".py", _size(rng, 4000), mt)
    info = base + b"/" + pkg + b"-%d.%d.%d.dist-info" % (rng.randint(0, 5), rng.randint(0, 30), rng.randint(0, 9))
    for name, med in ((b"METADATA", 4000), (b"RECORD", 6000), (b"WHEEL", 100), (b"top_level.txt", 10),
                      (b"INSTALLER", 6)):
        w.file(info + b"/" + name, _size(rng, med), mt)


def fill_conda(w: Writer, budget: int) -> None:
    rng, t = w.rng, T0 - 86400 * 200
    w.file(b"opt/conda/bin/python3.11", 1_800_000, t, 0o755)
    w.symlink(b"opt/conda/bin/python3", b"python3.11")
    w.symlink(b"opt/conda/bin/python", b"python3.11")
    site = b"opt/conda/lib/python3.11/site-packages"
    while w.n < budget:
        pkg = _word(rng).encode() + (b"_" + _word(rng).encode() if rng.random() < 0.3 else b"")
        if os.path.exists(os.path.join(w.top, site, pkg)):
            continue
        mt = t + rng.randint(0, 3600)
        pkgs = b"opt/conda/pkgs/%s-%d.%d-py311_0" % (pkg, rng.randint(0, 5), rng.randint(0, 30)) \
            if rng.random() < 0.3 else None
        _py_package(w, site, pkg, mt, pkgs)
        if rng.random() < 0.2:
            w.file(b"opt/conda/bin/" + pkg, _size(rng, 300), mt, 0o755)


def fill_node(w: Writer, budget: int) -> None:
    rng, t = w.rng, T0 - 86400 * 100
    w.file(b"app/package.json", 1500, t)
    while w.n < budget:
        name = _word(rng).encode()
        base = b"app/node_modules/" + (b"@" + _word(rng, (1, 1)).encode() + b"/" if rng.random() < 0.2 else b"")
        d = base + name
        if d in w.dirs:
            continue
        mt = t + rng.randint(0, 600)
        for f, med in ((b"package.json", 1500), (b"README.md", 5000), (b"LICENSE", 1100), (b"index.js", 800)):
            w.file(d + b"/" + f, _size(rng, med), mt)
        for sub in rng.sample((b"lib", b"dist", b"src", b"types", b"esm"), rng.randint(0, 3)):
            for _ in range(rng.randint(1, 12)):
                w.file(d + b"/" + sub + b"/" + _word(rng, (1, 2)).encode() + b".js", _size(rng, 3000), mt)


def fill_app(w: Writer, budget: int) -> None:
    rng = w.rng
    t = T0 - 86400 * rng.randint(1, 90)
    while w.n < budget:
        d = b"app/" + rng.choice((b"src", b"static", b"templates", b"config", b"migrations")) + b"/" + \
            _word(rng, (1, 2)).encode()
        for _ in range(rng.randint(1, 8)):
            w.file(d + b"/" + _word(rng).encode() + rng.choice((b".py", b".html", b".css", b".png", b".sql")),
                   _size(rng, 3000), t + rng.randint(0, 100))


def fill_config(w: Writer, budget: int) -> None:
    rng = w.rng
    t = T0 - 86400 * rng.randint(1, 90)
    w.file(b"etc/" + _word(rng).encode() + b".conf", _size(rng, 500), t)
    w.whiteout(b"var/lib/apt/lists/" + _word(rng).encode() + b"_Packages")  # RUN rm -rf /var/lib/apt/lists/*
    if rng.random() < 0.5:
        w.opaque(b"var/cache/" + _word(rng).encode())  # RUN rm -rf DIR && mkdir DIR
    while w.n < budget:
        w.file(b"etc/" + _word(rng).encode() + b"/" + _word(rng).encode() + b".conf", _size(rng, 500), t)


def fill_init(w: Writer, budget: int) -> None:
    t = T0
    w.file(b".dockerenv", 0, t, 0o755)
    for d in (b"dev/pts", b"dev/shm", b"proc", b"sys"):
        w.mkdir(d)
    w.file(b"dev/console", 0, t, 0o755)
    w.symlink(b"etc/mtab", b"/proc/mounts")
    for f in (b"etc/hostname", b"etc/hosts", b"etc/resolv.conf"):
        w.file(f, 0, t, 0o755)


def fill_rw(w: Writer, budget: int) -> None:
    rng = w.rng
    t = T0 + rng.randint(0, 86400)
    w.file(b"var/log/app.log", _size(rng, 50_000), t)
    w.sparse(b"var/log/lastlog", 64 << 20, t)
    w.whiteout(b"etc/" + _word(rng).encode() + b".conf")
    w.opaque(b"var/cache/app")
    w.fifo(b"run/app.fifo")
    w.file(b"tmp/odd-\xff-name", 10, t)  # not UTF-8: snapper keeps the bytes in path_raw
    w.file(b"root/.bash_history", _size(rng, 300), t, 0o600)
    while w.n < budget:
        d = b"root/.cache/pip/http/" + bytes(rng.choice(_HEX.encode()) for _ in range(2))
        w.file(d + b"/" + bytes(rng.choice(_HEX.encode()) for _ in range(24)), _size(rng, 20_000), t)


FILL = {"base": fill_debian, "runtime": fill_conda, "node": fill_node, "app": fill_app, "config": fill_config,
        "init": fill_init, "rw": fill_rw, "buildkit": fill_app, "leaked-create": fill_app,
        "leaked-chain": fill_app, "leaked-buildkit": fill_app}


# --- the data root -----------------------------------------------------------------------------------------------

class Gen:
    def __init__(self, root: Path, seed: int, data: str) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.seed = seed
        self.data = data
        self.digest = hashlib.sha256()
        self.overlay = os.fsencode(str(root / "overlay2"))
        self.image = root / "image" / "overlay2"
        self.plans: list[LayerPlan] = []
        self.by_id: dict[str, LayerPlan] = {}
        for d in ("layerdb/sha256", "layerdb/mounts", "layerdb/tmp", "imagedb/content/sha256",
                  "imagedb/metadata/sha256"):
            (self.image / d).mkdir(parents=True, exist_ok=True)
        (root / "containers").mkdir(exist_ok=True)
        os.makedirs(os.path.join(self.overlay, b"l"), 0o700, exist_ok=True)
        os.chmod(self.overlay, 0o710)

    def ident(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def layer(self, role: str, budget: int, parent: LayerPlan | None, dir_id: str | None = None,
              mounted_before: bool = False) -> LayerPlan:
        """overlay2/<dir> as the driver creates it, then filled with about ``budget`` entries."""
        dir_id = dir_id or self.ident(_HEX, 64)
        plan = LayerPlan(dir_id, role, parent=parent.dir_id if parent else None)
        top = os.path.join(self.overlay, dir_id.encode())
        os.mkdir(top, 0o710)
        plan.link_id = self.ident(_B32, 26)
        os.symlink(f"../{dir_id}/diff", os.path.join(self.overlay, b"l", plan.link_id.encode()))
        n = 3  # the dir, diff/, link
        with open(os.path.join(top, b"link"), "wb") as f:
            f.write(plan.link_id.encode())
        if parent is not None:
            os.mkdir(os.path.join(top, b"work"), 0o700)
            n += 2
            if mounted_before:
                os.mkdir(os.path.join(top, b"work", b"work"), 0o000)
                n += 1
            parts = [f"l/{parent.link_id}"] + (parent.lower.split(":") if parent.lower else [])
            plan.lower = ":".join(parts)
            with open(os.path.join(top, b"lower"), "wb") as f:
                f.write(plan.lower.encode())
            if not parent.committed:
                open(os.path.join(self.overlay, parent.dir_id.encode(), b"committed"), "wb").close()
                parent.committed = True
                parent.entries += 1
        os.mkdir(os.path.join(top, b"diff"), 0o755)
        w = Writer(os.path.join(top, b"diff"), random.Random(self.rng.random()), self.data, self.digest)
        FILL[role](w, max(0, budget - n))
        plan.entries = n + w.n
        self.digest.update(f"layer {dir_id} {role} {plan.lower}\n".encode())
        self.plans.append(plan)
        self.by_id[dir_id] = plan
        return plan

    def chain(self, plan: LayerPlan, parent_chain: str | None, size: int) -> str:
        diff_id = "sha256:" + self.ident(_HEX, 64)
        cid = diff_id if parent_chain is None else \
            "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()
        d = self.image / "layerdb" / "sha256" / cid.split(":", 1)[1]
        d.mkdir()
        (d / "cache-id").write_text(plan.dir_id)
        (d / "diff").write_text(diff_id)
        if parent_chain is not None:
            (d / "parent").write_text(parent_chain)
        (d / "size").write_text(str(size))
        plan.chain_id, plan.diff_id = cid, diff_id
        return cid

    def image_config(self, layers: list[LayerPlan], tag: str | None, created: str = "2025-10-09T08:00:00Z") -> str:
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                          "config": {"Cmd": ["sh"]},
                          "rootfs": {"type": "layers", "diff_ids": [p.diff_id for p in layers]}},
                         separators=(",", ":")).encode()
        hexid = hashlib.sha256(cfg).hexdigest()
        (self.image / "imagedb" / "content" / "sha256" / hexid).write_bytes(cfg)
        self.digest.update(b"image " + hexid.encode() + b"\n")
        return "sha256:" + hexid

    def container(self, top: LayerPlan, image_id: str, budget: int, running: bool) -> str:
        cid, mount_id = self.ident(_HEX, 64), self.ident(_HEX, 64)
        init = self.layer("init", 12, top, f"{mount_id}-init", mounted_before=True)
        self.layer("rw", budget, init, mount_id, mounted_before=True)
        m = self.image / "layerdb" / "mounts" / cid
        m.mkdir()
        (m / "mount-id").write_text(mount_id)
        (m / "init-id").write_text(f"{mount_id}-init")
        (m / "parent").write_text(top.chain_id or "")
        d = self.root / "containers" / cid
        d.mkdir()
        state = {"Running": running, "Paused": False, "Restarting": False, "Dead": False, "Pid": 0,
                 "StartedAt": "2025-10-10T08:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"}
        (d / "config.v2.json").write_text(json.dumps({"ID": cid, "Name": f"/c{len(self.plans)}", "Image": image_id,
                                                      "Driver": "overlay2", "State": state,
                                                      "Created": "2025-10-10T07:59:59Z"}))
        return cid


def _budgets(total: int, rng: random.Random) -> dict[str, list[int]]:
    """Entries per layer role, heavy-tailed like a build server: a few huge runtime layers, many small ones."""
    f = total / 1_000_000
    return {
        "base": [int(12_000 * f)] * 3,
        "runtime": [int(x * f) for x in (200_000, 120_000, 80_000, 50_000)],
        "node": [int(40_000 * f)] * 2,
    }


def generate(out_root: Path, entries: int, seed: int = 0, data: str = "real") -> GenSummary:
    """Write a data root of about ``entries`` files rows (what a collect lists) under ``out_root``."""
    t = time.monotonic()
    if out_root.exists():
        raise FileExistsError(out_root)
    out_root.mkdir(parents=True)
    g = Gen(out_root, seed, data)
    rng = g.rng
    b = _budgets(entries, rng)
    images: list[tuple[list[LayerPlan], str]] = []
    bases = [g.layer("base", n, None) for n in b["base"]]
    base_chains = [g.chain(p, None, 1) for p in bases]
    runtimes: list[tuple[LayerPlan, int]] = []
    for i, n in enumerate(b["runtime"] + b["node"]):
        bi = i % len(bases)
        role = "runtime" if i < len(b["runtime"]) else "node"
        p = g.layer(role, n, bases[bi])
        g.chain(p, base_chains[bi], 1)
        runtimes.append((p, bi))
    # Images: a base, maybe a runtime, then app and config layers; each second image gets a container. The
    # loop stops when what is written plus the containers and leaks still to come reach the requested size.
    scale = max(entries, 20_000) / 1e6
    small = max(20, entries // 400)
    leaks_est = int(3.5 * small)

    def used() -> int:
        return sum(p.entries + 1 for p in g.plans)  # + its l/ link

    n_img = 0
    per_ctr = 45 + int(90 * max(scale, 0.3))
    while used() + (n_img // 2 + 1) * per_ctr + leaks_est < entries or n_img < 3:
        stack = [bases[rng.randrange(len(bases))]]
        if rng.random() < 0.8:
            rt, bi = runtimes[rng.randrange(len(runtimes))]
            stack = [bases[bi], rt]
        for _ in range(rng.randint(1, 4)):
            role = "config" if rng.random() < 0.4 else ("buildkit" if rng.random() < 0.2 else "app")
            budget = rng.randint(4, 30) if role == "config" else max(8, int(rng.lognormvariate(6.2, 1.0) * scale * 2))
            dir_id = g.ident(_B36, 25) if role == "buildkit" else None
            p = g.layer(role, budget, stack[-1], dir_id)
            g.chain(p, stack[-1].chain_id, budget)
            stack.append(p)
        img = g.image_config(stack, f"app{n_img}:latest")
        images.append((stack, img))
        n_img += 1
    # Containers on every second image: an init layer and a written-to upper dir each (a third running).
    n_ctr = max(2, len(images) // 2)
    for i in range(n_ctr):
        stack, img = images[i % len(images)]
        g.container(stack[-1], img, max(14, int(rng.lognormvariate(4.0, 1.0) * max(scale, 0.3))),
                    running=i % 3 == 0)
    # Leaks: an interrupted create (no layerdb), a chain no image uses, an orphan BuildKit dir, and a
    # `cp -al` copy of an app layer (hard links across layers, no owner).
    g.layer("leaked-create", small, stack[-1])
    orphan = g.layer("leaked-chain", small, bases[0])
    g.chain(orphan, base_chains[0], small)
    g.layer("leaked-buildkit", small // 2, stack[-1], g.ident(_B36, 25))
    _copy_al(g, min((p for p in g.plans if p.role == "app"), key=lambda p: abs(p.entries - small)))
    rest = entries - used() - 2  # the l/ dir itself and the filler's own link
    if rest > 8:  # top up with one more image layer so that the total lands on the requested size
        p = g.layer("app", rest, stack[-1])
        g.chain(p, stack[-1].chain_id, rest)
        stack.append(p)
        images.append((stack, g.image_config(stack, f"app{n_img}:latest")))
    (g.image / "repositories.json").write_text(json.dumps({"Repositories": {
        f"app{i}": {f"app{i}:latest": img} for i, (_, img) in enumerate(images)}}))
    links = len(os.listdir(os.path.join(g.overlay, b"l")))
    total = sum(p.entries for p in g.plans) + links + 1
    return GenSummary(str(out_root), seed, entries, total, data, g.plans, len(images), n_ctr,
                      g.digest.hexdigest(), round(time.monotonic() - t, 1))


def _copy_al(g: Gen, src: LayerPlan) -> LayerPlan:
    """A leaked hard-link copy of ``src``'s diff/ (what `cp -al` of a layer makes): every file shares its
    inode with the live layer, so per-layer totals must each count it while du of both counts it once."""
    dir_id = g.ident(_HEX, 64)
    plan = LayerPlan(dir_id, "leaked-copy")
    d_top = os.path.join(g.overlay, dir_id.encode())
    os.mkdir(d_top, 0o710)
    n = 1

    def copy(s_dir: bytes, d_dir: bytes) -> None:
        nonlocal n
        os.mkdir(d_dir, 0o755)
        n += 1
        with os.scandir(s_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                copy(e.path, os.path.join(d_dir, e.name))
            else:
                os.link(e.path, os.path.join(d_dir, e.name), follow_symlinks=False)
                n += 1

    copy(os.path.join(g.overlay, src.dir_id.encode(), b"diff"), os.path.join(d_top, b"diff"))
    plan.entries = n
    g.digest.update(f"copy {dir_id} {src.dir_id}\n".encode())
    g.plans.append(plan)
    return plan


def add_layers(root: Path, count: int, seed: int, budget: int) -> list[str]:
    """A new image: ``count`` new app layers of about ``budget`` entries each on top of an existing image
    layer, with layerdb chains and an image config (the incremental benchmark's new layer dirs)."""
    g = Gen(root, seed, "real")
    layerdb = g.image / "layerdb" / "sha256"
    by_cache: dict[str, Path] = {}
    for d in sorted(layerdb.iterdir()):
        by_cache[(d / "cache-id").read_text()] = d
    parent_id = sorted(k for k in by_cache if len(k) == 64)[0]
    pdir = root / "overlay2" / parent_id
    lower = (pdir / "lower").read_text() if (pdir / "lower").exists() else None
    parent = LayerPlan(parent_id, "app", link_id=(pdir / "link").read_text(), lower=lower,
                       committed=(pdir / "committed").exists(), chain_id="sha256:" + by_cache[parent_id].name)
    chain: list[LayerPlan] = []
    d: Path | None = by_cache[parent_id]
    while d is not None:  # the parent's diff ids, base first
        chain.insert(0, LayerPlan("", "", diff_id=(d / "diff").read_text()))
        d = layerdb / (d / "parent").read_text().split(":", 1)[1] if (d / "parent").exists() else None
    out = []
    for _ in range(count):
        p = g.layer("app", budget, parent)
        g.chain(p, parent.chain_id, budget)
        chain.append(p)
        parent = p
        out.append(p.dir_id)
    g.image_config(chain, None, ADDED_IMAGE_CREATED)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", choices=("real", "sparse"), default="real")
    ap.add_argument("--out", required=True, help="directory to create; the data root is OUT/root")
    a = ap.parse_args(argv)
    out = Path(a.out)
    s = generate(out / "root", a.entries, a.seed, a.data)
    (out / "gen.json").write_text(json.dumps(asdict(s), indent=1))
    print(f"{s.entries:,} entries in {len(s.layers)} layer dirs ({s.by_role()}), {s.images} images, "
          f"{s.containers} containers, {s.seconds} s -> {out / 'root'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
