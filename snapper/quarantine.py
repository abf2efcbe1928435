"""The reclaim quarantine: where ``snapper reclaim apply`` moves leaked dirs, with a journal that makes every
move recoverable.

Layout (all 0700, beside the data root so that every move is a rename on the same filesystem)::

    <parent of data root>/.snapper-quarantine/
        .lock                        flock: one reclaim at a time
        <plan id>/plan.json          the plan the moves came from
        <plan id>/journal.jsonl      JSON lines, fsync'd, append-only
        <plan id>/items/<layer id>/  dir (the overlay2 dir), l/<short> (its short links),
                                     layerdb/<chain dir> (a layer-store chain whose cache-id it is)

A *group* is everything moved for one entry. The journal gets ``begin`` (all its moves, src and dst) before
the first move, ``intent`` before each rename, ``done`` after it (the renamed paths' parents fsync'd first)
and ``end`` at the end. Killed at any point, the next apply or restore (:func:`recover`) finds the groups
without ``end``, tells from the disk which renames happened (src gone and dst there: done), and finishes the
group or, when finishing is no longer safe, moves back what was moved. Renames use RENAME_NOREPLACE: nothing
is ever overwritten.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapper.errors import QuarantineError

QUARANTINE_NAME = ".snapper-quarantine"
JOURNAL = "journal.jsonl"
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def candidates(data_root: Path) -> list[Path]:
    """Where a quarantine may be: beside the data root, else inside it. dockerd bind-mounts its data root onto
    itself (for mount propagation; a crashed daemon leaves that mount behind), and rename(2) never crosses a
    mount, even within one filesystem: then only a dir inside the data root can take the moves."""
    return [data_root.parent / QUARANTINE_NAME, data_root / QUARANTINE_NAME]


def mount_of(path: Path) -> str:
    """The mount point a path lives on (the longest mount point prefix in /proc/self/mountinfo; the last of
    mounts stacked on one point is the visible one)."""
    from snapper.metadata.mountinfo import parse_line

    target = os.path.realpath(path)
    best, best_len = "/", 0
    try:
        lines = Path("/proc/self/mountinfo").read_bytes().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split(b" ")
        if len(parts) < 5 or parse_line(line) is None:
            continue
        from snapper.metadata.mountinfo import unescape

        mp = os.fsdecode(unescape(parts[4]))
        if (target == mp or target.startswith(mp.rstrip("/") + "/")) and len(mp) >= best_len:
            best, best_len = mp, len(mp)
    return best


def choose_dir(data_root: Path) -> Path:
    """The default quarantine for a data root: an existing one, else the first candidate, on the mount of its
    overlay2/ and image/ (the dirs moves come from)."""
    need = {mount_of(data_root / "overlay2"), mount_of(data_root / "image")}
    for cand in [*existing_dirs(data_root), *candidates(data_root)]:
        if {mount_of(cand if cand.exists() else cand.parent)} == need:
            return cand
    raise QuarantineError(str(data_root), f"no quarantine dir possible on the mount of its overlay2/ and image/ "
                          f"({', '.join(sorted(need))})", "pass --quarantine DIR on that mount, outside overlay2/")


def existing_dirs(data_root: Path) -> list[Path]:
    return [c for c in candidates(data_root) if c.is_dir()]


def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # glibc < 2.28
        return None


_RENAMEAT2 = _renameat2()


def move_noreplace(src: str, dst: str) -> None:
    """rename(2) that fails with FileExistsError instead of replacing ``dst`` (renameat2 RENAME_NOREPLACE;
    where the filesystem lacks it, a check then rename: the quarantine is ours, restore targets are checked
    under the lock)."""
    if _RENAMEAT2 is not None:
        r = _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if r == 0:
            return
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(e, os.strerror(e), src, None, dst)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)


def fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdir_private(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
        fsync_dir(path.parent)


class Journal:
    """Append-only JSON lines, each fsync'd before ``append`` returns. A line torn by a crash (no newline at
    the end) is ignored when read and fenced off by the next append."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps({"t": time.time_ns(), **record}, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise QuarantineError(str(self.path), f"cannot read the journal ({e.strerror})", "check permissions") from e
        out = []
        for raw in data.split(b"\n")[:-1]:  # the part after the last newline is torn (or empty)
            with contextlib.suppress(ValueError):
                rec = json.loads(raw)
                if isinstance(rec, dict):
                    out.append(rec)
        return out


@dataclass(frozen=True)
class Move:
    kind: str  # overlay2-dir | overlay2-link | layerdb-chain
    src: str
    dst: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "src": self.src, "dst": self.dst}


@dataclass
class Group:
    gid: str
    action: str  # quarantine | restore
    layer_id: str
    moves: list[Move]
    info: dict[str, Any]
    done: set[int] = field(default_factory=set)
    ended: str | None = None  # done | undone
    t_begin: int = 0
    t_end: int = 0


@dataclass
class Item:
    """The state of one layer dir in a plan's quarantine, replayed from the journal."""

    layer_id: str
    state: str  # quarantined | restored | purging (killed mid-purge) | purged | open (a group without end)
    bytes: int
    mechanism: str | None
    quarantined_ns: int
    group: Group


class PlanQuarantine:
    """One plan's quarantine dir and journal."""

    def __init__(self, qdir: Path, plan_id: str) -> None:
        self.qdir = qdir
        self.plan_id = plan_id
        self.dir = qdir / plan_id
        self.journal = Journal(self.dir / JOURNAL)

    def item_dir(self, layer_id: str) -> Path:
        return self.dir / "items" / layer_id

    def create(self, data_root: Path, plan: dict[str, Any]) -> None:
        """Make the dirs (0700) and keep a copy of the plan; refuse a quarantine on another filesystem."""
        mkdir_private(self.qdir)
        mkdir_private(self.dir)
        mkdir_private(self.dir / "items")
        for d in (self.qdir, self.dir, self.dir / "items"):
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
                raise QuarantineError(str(d), "not a private dir of ours (a symlink, another owner or open to "
                                      "others)", "remove it or pass --quarantine DIR")
        need = {mount_of(data_root / "overlay2"), mount_of(data_root / "image")}
        if {mount_of(self.qdir)} != need:
            raise QuarantineError(str(self.qdir), f"not on the mount of {data_root}/overlay2 and image/ ({need}): "
                                  "moves must be renames", "pass --quarantine DIR on that mount")
        copy = self.dir / "plan.json"
        if not copy.exists():
            write_private(copy, json.dumps(plan, indent=1, sort_keys=True).encode())

    def groups(self) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for rec in self.journal.read():
            g = groups.get(str(rec.get("g")))
            ev = rec.get("ev")
            if ev == "begin":
                moves = [Move(m["kind"], m["src"], m["dst"]) for m in rec["moves"]]
                groups[rec["g"]] = Group(rec["g"], rec["action"], rec["layer_id"], moves, rec.get("info", {}),
                                         t_begin=int(rec["t"]))
            elif g is not None and ev == "done":
                g.done.add(int(rec["i"]))
            elif g is not None and ev == "end":
                g.ended, g.t_end = str(rec["result"]), int(rec["t"])
            elif g is not None and ev == "undo":
                g.info["undoing"] = True
            elif g is not None and ev in ("purge", "purged"):
                g.info[ev] = True
        return groups

    def items(self) -> dict[str, Item]:
        """Per layer id, what the last group that acted on it left."""
        out: dict[str, Item] = {}
        for g in self.groups().values():
            if g.ended == "undone":
                continue
            if g.action == "quarantine":
                state = ("open" if g.ended is None else "purged" if g.info.get("purged")
                         else "purging" if g.info.get("purge") else "quarantined")
                out[g.layer_id] = Item(g.layer_id, state, int(g.info.get("bytes") or 0), g.info.get("mechanism"),
                                       g.t_end or g.t_begin, g)
            elif g.layer_id in out:
                out[g.layer_id].state = "open" if g.ended is None else "restored"
                out[g.layer_id].group = g
        return out

    def _next_gid(self, action: str) -> str:
        return f"{action}-{len(self.groups()) + 1}"

    def run(self, action: str, layer_id: str, moves: list[Move], info: dict[str, Any],
            check: Callable[[Move], str | None] | None = None) -> str | None:
        """Journal and perform one group. ``check`` runs right before each rename and may veto it (returns a
        reason): then what this group moved so far is moved back and the reason returned."""
        gid = self._next_gid(action)
        self.journal.append({"ev": "begin", "g": gid, "action": action, "layer_id": layer_id,
                             "moves": [m.as_dict() for m in moves], "info": info})
        group = Group(gid, action, layer_id, moves, info)
        return self._finish(group, check)

    def _finish(self, g: Group, check: Callable[[Move], str | None] | None) -> str | None:
        for i, m in enumerate(g.moves):
            if i in g.done:
                continue
            reason = check(m) if check is not None else None
            if reason is None:
                try:
                    self._move(g, i)
                    continue
                except OSError as e:
                    reason = f"{m.src}: {e.strerror or e}"
            self._undo(g)
            return reason
        self.journal.append({"ev": "end", "g": g.gid, "result": "done"})
        g.ended = "done"
        return None

    def _move(self, g: Group, i: int) -> None:
        m = g.moves[i]
        self.journal.append({"ev": "intent", "g": g.gid, "i": i})
        move_noreplace(m.src, m.dst)
        fsync_dir(os.path.dirname(m.src))
        fsync_dir(os.path.dirname(m.dst))
        self.journal.append({"ev": "done", "g": g.gid, "i": i})
        g.done.add(i)

    def _undo(self, g: Group) -> None:
        self.journal.append({"ev": "undo", "g": g.gid})
        for i in sorted(g.done, reverse=True):
            m = g.moves[i]
            move_noreplace(m.dst, m.src)
            fsync_dir(os.path.dirname(m.src))
        self.journal.append({"ev": "end", "g": g.gid, "result": "undone"})
        g.ended = "undone"

    def recover(self, can_finish: Callable[[Group], str | None]) -> list[str]:
        """Settle the groups a killed run left open: a rename whose dst exists and src does not happened.
        Restores are finished; quarantines finished when ``can_finish`` has no objection, else undone."""
        notes = []
        for g in self.groups().values():
            if g.ended is not None:
                continue
            g.done = set()
            for i, m in enumerate(g.moves):  # the disk says which renames happened (an undo may have begun)
                src, dst = os.path.lexists(m.src), os.path.lexists(m.dst)
                if dst and not src:
                    g.done.add(i)
                elif not src:
                    raise QuarantineError(m.src, f"journal {self.journal.path} group {g.gid}: neither it nor "
                                          f"{m.dst} exists", "inspect the journal; nothing was deleted by snapper")
                elif dst:
                    raise QuarantineError(m.src, f"journal {self.journal.path} group {g.gid}: both it and "
                                          f"{m.dst} exist", "inspect both; snapper never overwrites")
            if g.info.get("undoing"):
                self._undo(g)
                notes.append(f"{g.layer_id}: finished undoing the interrupted {g.action}")
                continue
            objection = can_finish(g) if g.action == "quarantine" else None
            if objection is None:
                reason = self._finish(g, None)
                notes.append(f"{g.layer_id}: finished the interrupted {g.action}" + (f" ({reason})" if reason else ""))
            else:
                self._undo(g)
                notes.append(f"{g.layer_id}: undid the interrupted {g.action} ({objection})")
        return notes

    def purge(self, item: Item) -> None:
        self.journal.append({"ev": "purge", "g": item.group.gid, "layer_id": item.layer_id})
        path = self.item_dir(item.layer_id)
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            shutil.rmtree(path)  # raise what is in the way this time
        fsync_dir(path.parent)
        self.journal.append({"ev": "purged", "g": item.group.gid, "layer_id": item.layer_id})


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (a temp file renamed over it), 0600, fsync'd."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent if str(path.parent) else ".")


@contextlib.contextmanager
def locked(qdir: Path) -> Iterator[None]:
    """One reclaim at a time on a quarantine (an flock: a killed run releases it)."""
    mkdir_private(qdir)
    fd = os.open(qdir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise QuarantineError(str(qdir), "another snapper reclaim is running on it",
                                  "wait for it to finish") from e
        yield
    finally:
        os.close(fd)


def plans(qdir: Path) -> list[PlanQuarantine]:
    try:
        names = sorted(p.name for p in qdir.iterdir() if p.is_dir() and (p / JOURNAL).exists())
    except FileNotFoundError:
        return []
    return [PlanQuarantine(qdir, n) for n in names]
