"""Named states of a real engine, shared by the integration tests.

Each function takes a started :class:`~tests.integration.engine.Engine`, drives it with the docker client
only (never by touching the data root), and returns a frozen dataclass that names what it created.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .engine import Engine, import_busybox

# Files that the "odd" container leaves in its upper dir (overlay2/<mount-id>/diff), relative to it.
ODD_DIR = "odd"
ODD_FIFO = "odd/fifo"
ODD_SYMLINK = "odd/shadow-link"  # -> /etc/shadow: a walker that follows it reads the host's file
ODD_SYMLINK_TARGET = "/etc/shadow"
ODD_HARDLINKS = ("odd/hard-a", "odd/hard-b")  # one inode, st_nlink == 2
ODD_SPARSE = "odd/sparse"  # 4 MiB + 4 KiB apparent size, one 4 KiB block written at the end
ODD_SPARSE_SIZE = 4 * 1024 * 1024 + 4096
ODD_BAD_NAME = b"odd/bad-\xff-name"  # not valid UTF-8
ODD_WHITEOUT = "bin/wget"  # a busybox applet from the image, deleted: overlay whiteout (char dev 0/0)

_ODD_SCRIPT = r"""set -e
mkdir /odd
mkfifo /odd/fifo
ln -s /etc/shadow /odd/shadow-link
echo same-inode > /odd/hard-a
ln /odd/hard-a /odd/hard-b
dd if=/dev/zero of=/odd/sparse bs=4096 count=1 seek=1024 2>/dev/null
echo not-utf8 > "$(printf '/odd/bad-\377-name')"
rm /bin/wget
"""

_LEGACY_DOCKERFILE = """FROM bb:base
RUN echo legacy-one > /one.txt
RUN dd if=/dev/zero of=/blob1 bs=1M count=1
ENV SNAPPER_STAGE=legacy
COPY payload.txt /payload.txt
"""

_LEGACY_CHILD_DOCKERFILE = """FROM legacy:1
RUN echo legacy-two > /two.txt
"""

_BUILDKIT_DOCKERFILE = """FROM bb:base
COPY f.txt /f.txt
RUN dd if=/dev/zero of=/bk1 bs=1M count=1
RUN echo buildkit > /s
"""


@dataclass(frozen=True)
class BusyState:
    """What :func:`healthy_busy` created. Image ids are ``sha256:<hex>``; container ids are full hex."""

    tags: dict[str, str]  # tag -> image id: bb:base, legacy:1, legacy:2, bk:1
    intermediate_images: tuple[str, ...]  # untagged images left by the legacy builder
    containers: dict[str, str]  # name -> container id: snp-running, snp-exited, snp-created, snp-odd
    states: dict[str, str]  # name -> expected State.Status: running, exited, created, exited

    @property
    def base_image(self) -> str:
        return self.tags["bb:base"]

    @property
    def odd_container(self) -> str:
        return self.containers["snp-odd"]


def _context(parent: Path, files: dict[str, str]) -> Path:
    ctx = Path(tempfile.mkdtemp(prefix="ctx-", dir=parent))
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def image_ids(engine: Engine, all_images: bool = True) -> set[str]:
    flags = ["-a"] if all_images else []
    out = engine.docker("image", "ls", *flags, "-q", "--no-trunc").stdout
    return set(out.split())


def upper_dir(engine: Engine, kind: str, ref: str) -> Path:
    """GraphDriver.Data.UpperDir of an image (its top layer) or container (its RW layer)."""
    return Path(engine.inspect(kind, ref)["GraphDriver"]["Data"]["UpperDir"])


def healthy_busy(engine: Engine) -> BusyState:
    """A healthy, busy engine: no leaks, but every kind of live object.

    - ``bb:base`` imported; ``legacy:1`` built with the legacy builder (RUN echo, RUN dd 1 MB, ENV, COPY),
      which leaves untagged intermediate images; ``legacy:2`` FROM ``legacy:1`` (shared lower layers);
      ``bk:1`` built with BuildKit (COPY, RUN dd, RUN echo), which leaves build cache records.
    - containers: ``snp-running`` (running ``sleep 3600``), ``snp-exited`` (exited 0), ``snp-created``
      (never started) and ``snp-odd`` (exited; its upper dir holds the ``ODD_*`` entries above).

    The running container gets ``--stop-timeout 1``: busybox ``sleep`` as PID 1 ignores SIGTERM, so a
    clean daemon stop would otherwise wait the default 10 s for it.
    """
    tags = {"bb:base": import_busybox(engine, "bb:base")}
    before = image_ids(engine)
    ctx = _context(engine.base, {"Dockerfile": _LEGACY_DOCKERFILE, "payload.txt": "payload\n"})
    tags["legacy:1"] = engine.build(ctx, "legacy:1", buildkit=False)
    ctx = _context(engine.base, {"Dockerfile": _LEGACY_CHILD_DOCKERFILE})
    tags["legacy:2"] = engine.build(ctx, "legacy:2", buildkit=False)
    intermediates = image_ids(engine) - before - set(tags.values())
    ctx = _context(engine.base, {"Dockerfile": _BUILDKIT_DOCKERFILE, "f.txt": "hello from buildkit\n"})
    tags["bk:1"] = engine.build(ctx, "bk:1", buildkit=True)

    net = ("--network", "none")
    running = engine.docker(
        "run", "-d", *net, "--stop-timeout", "1", "--name", "snp-running", "bb:base", "sleep", "3600"
    )
    exited = engine.docker("run", "-d", *net, "--name", "snp-exited", "legacy:2", "sh", "-c", "echo bye > /bye")
    created = engine.docker("create", *net, "--name", "snp-created", "bk:1")
    odd = engine.docker("run", "-d", *net, "--name", "snp-odd", "bb:base", "sh", "-c", _ODD_SCRIPT)
    containers = {
        "snp-running": running.stdout.strip(),
        "snp-exited": exited.stdout.strip(),
        "snp-created": created.stdout.strip(),
        "snp-odd": odd.stdout.strip(),
    }
    for name in ("snp-exited", "snp-odd"):
        code = engine.docker("wait", name, timeout=60).stdout.strip()
        if code != "0":
            logs = engine.docker("logs", name, check=False)
            raise AssertionError(f"{name} exited {code}: {logs.stdout}{logs.stderr}")
    states = {"snp-running": "running", "snp-exited": "exited", "snp-created": "created", "snp-odd": "exited"}
    return BusyState(tags=tags, intermediate_images=tuple(sorted(intermediates)), containers=containers,
                     states=states)  # fmt: skip
