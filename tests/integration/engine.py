"""A private, throw-away dockerd for integration tests (how to use it by hand: DEVELOPERS.md).

Each Engine owns a short directory $D = /tmp/snp-XXXXXX (unix socket paths are limited to ~100 bytes):
``root/`` data root, ``x/`` exec root, ``s.sock``, ``pid``, ``cfg/`` (DOCKER_CONFIG), ``dockerd.log``.
The test process makes itself a child subreaper, so that after ``kill -9`` of dockerd its containerd
and shims are re-parented to us (not to PID 1, which here reaps orphans only lazily) and are reaped at
once: dockerd 20.10 otherwise finds the zombie containerd's pid in /proc and waits for it to time out.

SNAPPER_DOCKERD picks the dockerd binary; SNAPPER_DOCKERD_PATH is prepended to the daemon's PATH (its
containerd, shim and docker-init; runc stays the system one). The client is always /usr/bin/docker.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

DOCKER_CLIENT = "/usr/bin/docker"  # the 20.10 client from docker.io; /usr/local/bin/docker lacks buildx
BUSYBOX = "/bin/busybox"  # from busybox-static
PR_SET_CHILD_SUBREAPER = 36
_ENGINE_PROCS = (b"dockerd", b"containerd")  # plus containerd-shim*


class EngineError(RuntimeError):
    """The private daemon could not be started, stopped or cleaned up."""


class DockerCommandError(subprocess.CalledProcessError):
    """A docker client command failed; unlike CalledProcessError, str() shows stderr."""

    def __str__(self) -> str:
        err = self.stderr if isinstance(self.stderr, str) else ""
        return f"{super().__str__()}\n{err[-4000:]}"


def become_subreaper() -> None:
    """Make this process adopt orphaned descendants (dockerd's containerd and shims) so it can reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, ppid) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # comm may contain spaces and parentheses
    return fields[0].decode(), int(fields[1])


def _cmdline(pid: int) -> list[bytes]:  # empty for zombies and vanished processes
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def _name(pid: int) -> bytes:
    argv = _cmdline(pid)
    return os.path.basename(argv[0]) if argv else b""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _with_descendants(pids: Iterable[int]) -> set[int]:
    """pids and every live process below them in the parent tree."""
    found = set(pids)
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st is not None:
            children.setdefault(st[1], []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:  # exists and is not a zombie
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def reap_zombies() -> None:
    """waitpid(pid, WNOHANG) on each zombie child of ours. Not waitpid(-1): that could steal the exit
    status of a child that the subprocess module (or a pytest plugin) is still waiting for."""
    me = os.getpid()
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[0] == "Z" and st[1] == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def unescape_mountinfo(field: bytes) -> str:
    r"""Undo /proc/*/mountinfo octal escapes (\040 space, \011 tab, \012 newline, \134 backslash)."""
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` in this process's mount namespace, in mountinfo order."""
    prefix = str(path).rstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_bytes().splitlines():
        mountpoint = unescape_mountinfo(line.split(b" ")[4])
        if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
            found.append(Path(mountpoint))
    return found


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a PT_INTERP program header (i.e. statically linked)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return False
    end = "<" if data[5] == 1 else ">"
    word, phoff_at, phent_at = {1: ("I", 0x1C, 0x2A), 2: ("Q", 0x20, 0x36)}[data[4]]  # ELFCLASS32/64
    (phoff,) = struct.unpack_from(end + word, data, phoff_at)
    phentsize, phnum = struct.unpack_from(end + "HH", data, phent_at)
    return all(struct.unpack_from(end + "I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def dockerd_path_env() -> dict[str, str]:
    """The daemon's environment: ours, with SNAPPER_DOCKERD_PATH prepended to PATH."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    extra = os.environ.get("SNAPPER_DOCKERD_PATH")
    if extra:
        env["PATH"] = f"{extra}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def find_dockerd(dockerd: str | None = None) -> str | None:
    """Absolute path of ``dockerd`` (default: $SNAPPER_DOCKERD, else ``dockerd`` on the daemon's PATH)."""
    name = dockerd or os.environ.get("SNAPPER_DOCKERD") or "dockerd"
    path = dockerd_path_env().get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(name, path=path)


def prerequisite_problems() -> list[str]:
    """Why a private daemon cannot run here (empty when it can). Used by conftest to skip or fail."""
    problems = []
    if os.geteuid() != 0:
        problems.append("integration tests need root (dockerd, overlay mounts)")
    if find_dockerd() is None:
        problems.append("no dockerd (apt-get install docker.io, or set SNAPPER_DOCKERD)")
    if not os.access(DOCKER_CLIENT, os.X_OK):
        problems.append(f"no docker client at {DOCKER_CLIENT} (apt-get install docker.io)")
    if not Path(BUSYBOX).is_file() or not is_static_elf(Path(BUSYBOX)):
        problems.append(f"no static busybox at {BUSYBOX} (apt-get install busybox-static)")
    if shutil.which("umount") is None:
        problems.append("no umount (apt-get install mount)")
    return problems


class Engine:
    """A private dockerd under a fresh /tmp/snp-XXXXXX directory. See the module docstring."""

    def __init__(
        self,
        dockerd: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        containerd_store: bool = False,
    ) -> None:
        found = find_dockerd(dockerd)
        if found is None:
            wanted = dockerd or os.environ.get("SNAPPER_DOCKERD") or "dockerd"
            raise EngineError(f"dockerd not found: {wanted}")
        self.dockerd: str = found
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.env: dict[str, str] = {**dockerd_path_env(), **(env or {})}
        self.base: Path = Path(tempfile.mkdtemp(prefix="snp-", dir="/tmp"))
        self.root: Path = self.base / "root"
        self.exec_root: Path = self.base / "x"
        self.sock: Path = self.base / "s.sock"
        self.pidfile: Path = self.base / "pid"
        self.log: Path = self.base / "dockerd.log"
        self.config_dir: Path = self.base / "cfg"
        # The containerd image store (containerd-snapshotter): a daemon config file turns it on; the data then
        # lives under root/containerd/daemon and no --storage-driver is given.
        self.containerd_store: bool = containerd_store
        self.daemon_json: Path = self.base / "daemon.json"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.cleanup()

    # -- daemon life cycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        store = ["--config-file", str(self.daemon_json)] if self.containerd_store else ["--storage-driver", "overlay2"]
        return [
            self.dockerd, "--data-root", str(self.root), "--exec-root", str(self.exec_root),
            "-H", f"unix://{self.sock}", "--pidfile", str(self.pidfile), *store,
            "--iptables=false", "--bridge=none", *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        """Start dockerd and wait until ``docker version`` answers; on failure raise with the log tail."""
        if self.running():
            raise EngineError(f"the engine in {self.base} is already running")
        become_subreaper()
        for d in (self.root, self.exec_root, self.config_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.containerd_store:
            self.daemon_json.write_text(json.dumps({"features": {"containerd-snapshotter": True}}))
        with self.log.open("ab") as log:
            log.write(f"--- snapper: {time.strftime('%FT%T')} {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.base, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise EngineError(f"dockerd exited with {self._proc.returncode}\n{self.log_tail()}")
            try:
                if self.docker("version", check=False, timeout=10).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise EngineError(f"dockerd did not answer within {timeout:g}s\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> None:
        """Clean stop: SIGTERM to the pid from the pid file and wait; SIGKILL if still there after timeout."""
        pid = self.pid()
        # Note containerd now: once it is a zombie its command line can no longer be read.
        helpers = [p for p in self.engine_pids() if _name(p) == b"containerd"]
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_gone([pid], timeout):
                os.kill(pid, signal.SIGKILL)
                self._wait_gone([pid], 10)
        # dockerd stops its containerd on the way out; give a straggler a moment, then force it.
        if helpers and not self._wait_gone(helpers, 15):
            self._kill_and_wait(helpers)
        self._reap()

    def kill9(self) -> None:
        """Simulate a daemon crash: SIGKILL dockerd, then its containerd and this engine's shims and their
        container processes; reap them all and wait until their pids are gone, so that a restart works."""
        pid = self.pid()
        # dockerd, containerd, shims and their descendants, read while the tree is intact: once dockerd is
        # gone, a BuildKit RUN step's container process is re-parented and could no longer be told apart.
        procs = _with_descendants(self.engine_pids())
        if pid is not None:
            os.kill(pid, signal.SIGKILL)  # dockerd first, as in a crash
        self._kill_and_wait(procs)
        stragglers = self.engine_pids() + self.pids_using_mounts()
        if stragglers:
            self._kill_and_wait(stragglers)

    def pids_using_mounts(self) -> list[int]:
        """Processes whose root or working directory is on a mount under base (a container's rootfs):
        what ``fuser -m`` would name, found by device number."""
        devs = set()
        for mp in mounts_under(self.base):
            with contextlib.suppress(OSError):
                devs.add(os.stat(mp).st_dev)
        # A bind mount (dockerd binds its overlay2 home) shares the device of the file system it comes from,
        # which is every other process's too: only devices of their own (overlay, tmpfs) tell anything.
        for shared in ("/", self.base):
            with contextlib.suppress(OSError):
                devs.discard(os.stat(shared).st_dev)
        found = []
        if devs:
            for pid in _pids():
                for link in ("root", "cwd"):
                    try:
                        dev = os.stat(f"/proc/{pid}/{link}").st_dev
                    except OSError:
                        continue
                    if dev in devs and pid != os.getpid() and _alive(pid):
                        found.append(pid)
                        break
        return found

    def pid(self) -> int | None:
        """The pid from the pid file if that process is alive and is this engine's dockerd."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        ours = _name(pid) == b"dockerd" and os.fsencode(self.sock) in b" ".join(_cmdline(pid))
        return pid if ours and _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def engine_pids(self) -> list[int]:
        """Live dockerd, containerd and containerd-shim processes whose command line names this engine."""
        marker = os.fsencode(self.base) + b"/"
        found = []
        for pid in _pids():
            name = _name(pid)
            if (
                (name in _ENGINE_PROCS or name.startswith(b"containerd-shim"))
                and pid != os.getpid()
                and _alive(pid)
                and any(marker in a for a in _cmdline(pid))
            ):
                found.append(pid)
        return found

    def cleanup(self) -> None:
        """Stop the daemon (clean if possible), kill leftovers, unmount everything under base, remove it."""
        if not self.base.exists():
            return
        try:
            if self.running():  # kill containers first: a clean stop waits 10 s for each that ignores TERM
                running = self.docker("ps", "-q", check=False, timeout=30).stdout.split()
                if running:
                    self.docker("kill", *running, check=False, timeout=60)
                self.stop(timeout=30)
        except (OSError, EngineError, subprocess.SubprocessError):
            pass
        self.kill9()
        self.unmount_all()
        if mounts_under(self.base):
            raise EngineError(f"mounts left under {self.base}: {mounts_under(self.base)}")
        shutil.rmtree(self.base)

    def unmount_all(self) -> None:
        """Unmount every mount under base, deepest first (umount, falling back to umount -l)."""
        for _ in range(20):
            mountpoints = sorted(set(mounts_under(self.base)), key=lambda p: len(p.parts), reverse=True)
            if not mountpoints:
                return
            for mp in mountpoints:
                if subprocess.run(["umount", mp], capture_output=True, timeout=60).returncode != 0:
                    subprocess.run(["umount", "-l", mp], capture_output=True, timeout=60)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no dockerd.log)"
        return "\n".join(text.splitlines()[-lines:])

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()  # let Popen reap dockerd itself, so it records the exit status
        reap_zombies()

    def _wait_gone(self, pids: Iterable[int], timeout: float) -> bool:
        pending = set(pids)
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            pending = {p for p in pending if Path(f"/proc/{p}").exists()}
            if not pending or time.monotonic() > deadline:
                return not pending
            time.sleep(0.05)

    def _kill_and_wait(self, pids: Iterable[int], timeout: float = 30) -> None:
        """SIGKILL pids and all their descendants (container processes under a shim), reap, wait."""
        victims = _with_descendants(pids)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not self._wait_gone(victims, timeout):
            left = {p: _stat(p) for p in victims if Path(f"/proc/{p}").exists()}
            raise EngineError(f"processes not gone after SIGKILL (state, ppid): {left}")

    # -- client --------------------------------------------------------------------------------------

    def client_env(self, buildkit: bool | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BUILDKIT_"))}
        env["DOCKER_HOST"] = f"unix://{self.sock}"
        env["DOCKER_CONFIG"] = str(self.config_dir)
        if buildkit is not None:
            env["DOCKER_BUILDKIT"] = "1" if buildkit else "0"
        return env

    def docker(
        self,
        *args: str,
        input: bytes | None = None,
        buildkit: bool | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``/usr/bin/docker -H unix://$D/s.sock ARGS``; output is decoded text (errors replaced)."""
        cmd = [DOCKER_CLIENT, "-H", f"unix://{self.sock}", *args]
        stdin: dict[str, Any] = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        raw = subprocess.run(
            cmd, capture_output=True, env=self.client_env(buildkit), cwd=self.base, timeout=timeout, **stdin
        )
        self._reap()
        out = raw.stdout.decode(errors="replace")
        err = raw.stderr.decode(errors="replace")
        if check and raw.returncode != 0:
            raise DockerCommandError(raw.returncode, cmd, out, err)
        return subprocess.CompletedProcess(cmd, raw.returncode, out, err)

    def build(self, context: Path, tag: str, buildkit: bool, extra: Sequence[str] = ()) -> str:
        """``docker build`` with the legacy builder or BuildKit (then with --network none); the image id."""
        iidfile = self.base / f"iid-{uuid.uuid4().hex}"
        net = ["--network", "none"] if buildkit else []
        args = ["build", "--iidfile", str(iidfile), "-t", tag, *net, *extra, str(context)]
        self.docker(*args, buildkit=buildkit)
        try:
            return iidfile.read_text().strip()
        finally:
            iidfile.unlink()

    def inspect(self, kind: str, ref: str) -> dict[str, Any]:
        """``docker KIND inspect REF`` (kind: image, container, volume, network) as one dict."""
        data = json.loads(self.docker(kind, "inspect", ref).stdout)
        if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
            raise EngineError(f"unexpected inspect output for {kind} {ref}: {data!r:.200}")
        return data[0]

    def info(self) -> dict[str, Any]:
        info = json.loads(self.docker("info", "--format", "{{json .}}").stdout)
        assert isinstance(info, dict)
        return info

    def version(self) -> str:
        """The server (daemon) version, e.g. ``20.10.24+dfsg1``."""
        return self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()


class EngineFactory(Protocol):
    """Type of the ``fresh_engine`` fixture: makes (and by default starts) an Engine cleaned up after the test."""

    def __call__(
        self,
        start: bool = True,
        extra_args: Sequence[str] = (),
        dockerd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Engine: ...


def make_busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: bin/busybox (static) with every applet symlinked to it."""
    busybox = Path(BUSYBOX)
    if not is_static_elf(busybox):
        raise EngineError(f"{busybox} is missing or not statically linked (apt-get install busybox-static)")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        link = dest / "bin" / applet
        if applet != "busybox" and not link.is_symlink():
            link.symlink_to("busybox")
    return dest


def import_busybox(engine: Engine, tag: str = "bb:base") -> str:
    """``docker import`` a busybox rootfs as ``tag`` (with CMD ["sh"]); returns the image id."""
    rootfs = make_busybox_rootfs(engine.base / "bb-rootfs")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(rootfs)), recursive=False)
    out = engine.docker("import", "--change", 'CMD ["sh"]', "-", tag, input=buf.getvalue()).stdout
    return out.strip()
