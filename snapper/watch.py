"""``snapper watch``: a small recorder of the daemon's life, its event stream and the client operations in flight.

Why: a leaked dir says *how* it leaked (the mechanism), not *which* crash left it. The engine's event stream
(``GET /events``, which changes nothing) only reports operations that finished, so the recorder also notes
each daemon start (pid, start time, version), each loss (clean stop when the pid file was removed, else
death) with the docker client commands running at that moment (``docker load -i x.tar``: read from
/proc/<pid>/cmdline, subcommand and subject only, never option values such as build args, env or secrets).

Output: ``DIR/events/events-<UTC start, to the minute>-<recorder pid>.parquet`` (schema ``WATCH_EVENTS``),
rewritten whole through a temp file and ``os.replace`` at most every ``flush_s`` seconds and at SIGTERM/SIGINT,
so a reader (or a SIGKILL of the recorder) never sees a torn file; a new file every ``rotate_s`` (10 min), which
bounds the rows rewritten at each flush. Costs: one /proc listing per ``poll_s`` (cmdline read only for new
pids), one idle socket read.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from snapper.docker_root import _cmdline, process_start_ns
from snapper.errors import UsageError
from snapper.metadata.api import EngineAPI, UnixConnection
from snapper.schema import WATCH_EVENTS

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_PIDFILE = "/var/run/docker.pid"
Row = dict[str, Any]

# docker CLI: global options that take a value, and subcommand options that take one (their values are skipped,
# never recorded)
_GLOBAL_VALUE = {"-H", "--host", "--config", "-c", "--context", "-l", "--log-level", "--tlscacert", "--tlscert",
                 "--tlskey"}
_VALUE_OPTS = {"-i", "--input", "-o", "--output", "-t", "--tag", "-f", "--file", "--network", "--name", "-e",
               "--env", "--env-file", "--build-arg", "--secret", "--ssh", "--label", "-l", "--change", "-c",
               "--platform", "-m", "--message", "-a", "--author", "-v", "--volume", "-p", "--publish", "--filter",
               "--format", "--iidfile", "--target", "--cache-from", "--cache-to", "--progress", "--keep-storage",
               "--until", "-u", "--user", "-w", "--workdir", "--entrypoint", "--memory", "--cpus", "--mount",
               "--builder", "--pull", "--add-host", "--dns", "--hostname", "--restart", "--ulimit", "--shm-size"}
# (first words) -> operation; the longest match wins
_OPS: dict[tuple[str, ...], str] = {
    ("load",): "load", ("image", "load"): "load", ("pull",): "pull", ("image", "pull"): "pull",
    ("import",): "import", ("image", "import"): "import", ("build",): "build", ("image", "build"): "build",
    ("buildx", "build"): "build", ("builder", "build"): "build", ("commit",): "commit",
    ("container", "commit"): "commit", ("create",): "create", ("run",): "create", ("container", "create"): "create",
    ("container", "run"): "create", ("rmi",): "rmi", ("image", "rm"): "rmi", ("image", "remove"): "rmi",
    ("image", "prune"): "prune", ("system", "prune"): "prune", ("container", "prune"): "prune",
    ("builder", "prune"): "builder-prune", ("buildx", "prune"): "builder-prune", ("export",): "export",
    ("container", "export"): "export", ("rm",): "rm", ("container", "rm"): "rm",
}
# what names the operation's subject: an option's value, else the first positional argument
_SUBJECT_OPT = {"load": ("-i", "--input"), "build": ("-t", "--tag")}


def parse_client(argv: list[str], sock: str, default_sock: str = DEFAULT_SOCKET) -> tuple[str, str] | None:
    """(operation, subject) of a docker CLI command line talking to ``sock``; None for anything else.

    A command without ``-H`` talks to the default socket (DOCKER_HOST is not read: a process's environment
    may hold secrets). The subject is the option value or positional argument that names an image, file or
    tag; other option values are skipped unread.
    """
    if not argv or os.path.basename(argv[0]) not in ("docker", "docker-buildx"):
        return None
    hosts: list[str] = []
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a in _GLOBAL_VALUE and i + 1 < len(argv):
            if a in ("-H", "--host"):
                hosts.append(argv[i + 1])
            i += 2
            continue
        if a.startswith(("-H=", "--host=")):
            hosts.append(a.split("=", 1)[1])
        i += 1
    target = hosts[-1].removeprefix("unix://") if hosts else default_sock
    if os.path.realpath(target) != os.path.realpath(sock):
        return None
    words = argv[i:]
    op = None
    for n in (2, 1):
        op = _OPS.get(tuple(words[:n]))
        if op:
            words = words[n:]
            break
    if op is None:
        return None
    subject, positional = "", []
    j = 0
    while j < len(words):
        w = words[j]
        name = w.split("=", 1)[0]
        if w.startswith("-") and name in _VALUE_OPTS:
            value = w.split("=", 1)[1] if "=" in w else (words[j + 1] if j + 1 < len(words) else "")
            if not subject and name in _SUBJECT_OPT.get(op, ()):
                subject = value
            j += 1 if "=" in w else 2
            continue
        if not w.startswith("-"):
            positional.append(w)
        j += 1
    if not subject and positional and op not in ("build",):
        subject = positional[-1] if op == "commit" else positional[0]
    return op, subject[:200]


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive_dockerd(pid: int | None) -> bool:
    """A live (not zombie) process named dockerd."""
    if pid is None:
        return False
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    name = raw[raw.find(b"(") + 1:raw.rfind(b")")]
    state = raw[raw.rfind(b")") + 2:raw.rfind(b")") + 3]
    return name == b"dockerd" and state not in (b"Z", b"X")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def event_row(ev: dict[str, Any]) -> Row:
    """An engine event as a row: actor id and the name/image attributes only (labels may be anything)."""
    raw_actor = ev.get("Actor")
    actor: dict[str, Any] = raw_actor if isinstance(raw_actor, dict) else {}
    raw_attrs = actor.get("Attributes")
    attrs: dict[str, Any] = raw_attrs if isinstance(raw_attrs, dict) else {}
    kept = {k: str(attrs[k])[:200] for k in ("name", "image") if k in attrs}
    t = ev.get("timeNano")
    return {"time_ns": int(t) if isinstance(t, int) else time.time_ns(), "kind": "engine-event",
            "type": str(ev.get("Type") or ""), "action": str(ev.get("Action") or ev.get("status") or "")[:100],
            "subject": str(actor.get("ID") or ev.get("id") or "")[:200],
            "detail": json.dumps(kept, sort_keys=True) if kept else None}


@dataclass
class Recorder:
    sock: str
    out: Path
    pidfile: Path
    poll_s: float = 0.5
    flush_s: float = 10.0
    rotate_s: int = 600
    clock: Callable[[], int] = time.time_ns
    _rows: list[Row] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _file_key: str = ""
    _dirty: bool = False

    def add(self, **row: Any) -> None:
        row.setdefault("time_ns", self.clock())
        with self._lock:
            self._rows.append(row)
            self._dirty = True

    # --- output ----------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Rewrite the current file from its rows (temp file + os.replace); start a new file after rotate_s."""
        with self._lock:
            if not self._dirty:
                return
            rows = list(self._rows)
            self._dirty = False
        key = time.strftime("%Y%m%dT%H%M", time.gmtime(rows[0]["time_ns"] / 1e9 if rows else time.time()))
        key = self._file_key or key
        self._file_key = key
        d = self.out / "events"
        d.mkdir(parents=True, exist_ok=True)
        target = d / f"events-{key}-{os.getpid()}.parquet"
        tmp = d / f".{target.name}.tmp"
        cols = {n: [r.get(n) for r in rows] for n in WATCH_EVENTS.column_names}
        table = pa.table(cols, schema=WATCH_EVENTS.schema)
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        if rows and (self.clock() - rows[0]["time_ns"]) // 1_000_000_000 >= self.rotate_s:
            with self._lock:  # rotate: the rows written stay in that file; the next file starts empty
                self._rows = self._rows[len(rows):]
                self._file_key = ""

    # --- the event stream (its own thread: a blocking read) --------------------------------------------

    def _stream(self) -> None:
        while not self._stop.is_set():
            conn = UnixConnection(self.sock, None)
            try:
                conn.request("GET", f"/events?since={time.time():.3f}", headers={"Host": "docker"})
                resp = conn.getresponse()
                while not self._stop.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    with contextlib.suppress(ValueError):
                        ev = json.loads(line)
                        if isinstance(ev, dict):
                            self.add(**event_row(ev))
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            self._wake.set()  # the stream broke: look at the daemon now
            self._stop.wait(1.0)

    # --- the main loop -----------------------------------------------------------------------------------

    def _clients(self, seen: dict[int, tuple[int | None, tuple[str, str] | None]],
                 ended: dict[int, tuple[int, str]]) -> None:
        """Client commands that appeared or ended since the last poll (cmdline read once per new pid)."""
        try:
            pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        except OSError:
            return
        for pid in sorted(pids - set(seen)):
            info = parse_client(_cmdline(pid), self.sock) if _comm(pid).startswith("docker") else None
            seen[pid] = (process_start_ns(pid) if info else None, info)
            if info:
                self.add(kind="client-start", pid=pid, action=info[0], subject=info[1])
        for pid in sorted(set(seen) - pids):
            _, info = seen.pop(pid)
            if info:
                self.add(kind="client-end", pid=pid, action=info[0], subject=info[1])
                ended[pid] = (self.clock(), f"{info[0]} {info[1]}".strip())

    def run(self, until: Callable[[], bool] | None = None) -> None:
        threading.Thread(target=self._stream, name="snapper-watch-events", daemon=True).start()
        self.add(kind="recorder-start", pid=os.getpid(), detail=f"socket {self.sock}, pid file {self.pidfile}")
        daemon: tuple[int, int | None] | None = None  # (pid, start) of the daemon being watched
        versioned = False
        last_alive = 0
        seen: dict[int, tuple[int | None, tuple[str, str] | None]] = {}
        ended: dict[int, tuple[int, str]] = {}  # clients that ended since the daemon was last seen alive
        last_flush = time.monotonic()
        while not self._stop.is_set() and not (until and until()):
            self._clients(seen, ended)
            pid = _read_pid(self.pidfile)
            alive = _alive_dockerd(pid)
            now = self.clock()
            if daemon is not None and (not alive or pid != daemon[0]):
                # a client cut off by the death exits at once, maybe before this poll: those that ended since
                # the daemon was last seen alive count as in flight
                flight = sorted({f"{op} {subj}".strip() for _, op_s in seen.values() if op_s for op, subj in [op_s]}
                                | {what for t, what in ended.values() if t >= last_alive})
                replaced = alive and pid != daemon[0]
                self.add(kind="daemon-stop" if not self.pidfile.exists() else "daemon-death", pid=daemon[0],
                         daemon_started_ns=daemon[1], last_alive_ns=last_alive, in_flight=flight,
                         detail=f"replaced by pid {pid} between two polls: stop or death unknown" if replaced
                         else None)
                daemon, versioned = None, False
            if alive:
                ended.clear()
            if alive and pid is not None:
                last_alive = now
                if daemon is None:
                    daemon = (pid, process_start_ns(pid))
                if not versioned:
                    with contextlib.suppress(OSError, ValueError):
                        v = EngineAPI(self.sock, timeout=2.0).get("/version")
                        self.add(kind="daemon-start", pid=pid, daemon_started_ns=daemon[1],
                                 version=str(v.get("Version")) if isinstance(v, dict) else None)
                        versioned = True
            if time.monotonic() - last_flush >= self.flush_s:
                self.flush()
                last_flush = time.monotonic()
            self._wake.wait(self.poll_s)
            self._wake.clear()
        self._stop.set()  # ends the stream thread too
        self.add(kind="recorder-stop", pid=os.getpid())
        self.flush()

    def stop(self, *_: object) -> None:
        self._stop.set()
        self._wake.set()


def watch(sock: str = DEFAULT_SOCKET, out: str | Path = ".", pidfile: str | None = None,
          poll_s: float = 0.5, flush_s: float = 10.0) -> None:
    """Run the recorder until SIGTERM or SIGINT (then the last rows are flushed)."""
    if not 0.05 <= poll_s <= 60:
        raise UsageError(f"--poll {poll_s}", "out of range", "use 0.05 to 60 seconds")
    pid_path = Path(pidfile) if pidfile else Path(DEFAULT_PIDFILE)
    rec = Recorder(sock, Path(out), pid_path, poll_s=poll_s, flush_s=min(flush_s, 10.0))
    signal.signal(signal.SIGTERM, rec.stop)
    signal.signal(signal.SIGINT, rec.stop)
    rec.run()


def read_events(out: str | Path) -> pa.Table:
    """Every row ``snapper watch`` wrote under ``out`` (the dir given to --out, or its events/ dir), by time.
    Temp files are skipped; an unreadable file is skipped (a recorder killed before its first rename leaves
    only a temp file)."""
    base = Path(out)
    d = base / "events" if (base / "events").is_dir() else base
    tables = []
    for p in sorted(d.glob("events-*.parquet")):
        with contextlib.suppress(OSError, pa.ArrowException):
            tables.append(pq.read_table(p, schema=WATCH_EVENTS.schema))
    if not tables:
        return WATCH_EVENTS.schema.empty_table()
    return pa.concat_tables(tables).sort_by([("time_ns", "ascending"), ("kind", "ascending")])
