"""The walk's worker processes: the worker side (:func:`worker_main`, started as ``python -I -S``) and the
parent side (:class:`WalkPool`) that feeds them tasks and turns their frames into ``files`` batches.

A worker loads nothing but this module and :mod:`snapper.walk` (about 10 MB): the parent-side imports
(subprocess, selectors, pyarrow via :mod:`snapper.filerows`) happen inside the parent's functions.
Frames are an 8-byte length plus ``marshal`` data: ("t", task) parent -> worker; ("b", rows), ("g", dirs
given away), ("d", done), ("x", a bug's message) worker -> parent.
"""

from __future__ import annotations

import marshal
import os
import sys
from array import array

from snapper.walk import TYPE_CHECKING, LayerResult, TreeWalker, show_bytes

if TYPE_CHECKING:
    import subprocess
    from collections import deque
    from collections.abc import Iterator
    from typing import Any

    import pyarrow as pa

    from snapper.metadata import Rows
    from snapper.walk import RawBatch


def write_frame(fd: int, obj: Any) -> None:
    """One frame: 8-byte length + ``marshal`` data (builtin, so a worker need not import pickle; arrays
    travel as bytes)."""
    data = marshal.dumps(obj)
    done = os.writev(fd, [len(data).to_bytes(8, "little"), data]) - 8
    view = memoryview(data)[max(done, 0):]
    if done < 0:  # not even the header went out: send the rest of it first
        view = memoryview(len(data).to_bytes(8, "little") + data)[done + 8:]
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int) -> Any:
    """The next frame from ``fd``; None at end of file."""
    head = _read_exact(fd, 8)
    if head is None:
        return None
    body = _read_exact(fd, int.from_bytes(head, "little"))
    if body is None:
        return None
    return marshal.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _wire(raw: RawBatch) -> RawBatch:
    """A RawBatch with its arrays as bytes, for marshal."""
    return tuple(x.tobytes() if isinstance(x, array) else x for x in raw)


def worker_main() -> None:
    """A walk worker: tasks come on stdin, frames go to stdout (see collect._WalkPool). Started with
    ``python -I -S`` so that it loads nothing but this module (about 10 MB); it exits when its parent goes
    away (stdin ends, or writing to stdout fails)."""
    import mmap

    cfg = read_frame(0)
    if cfg is None:
        return
    overlay_dir, hash_mode, mount_points, batch_rows, flag_fd, slot = cfg
    flags = mmap.mmap(flag_fd, 4096)
    out = sys.stdout.fileno()
    tid = 0

    def sink(raw: RawBatch) -> None:
        write_frame(out, ("b", tid, _wire(raw)))

    walker = TreeWalker(overlay_dir, "overlay2", hash_mode, mount_points, sink, batch_rows)

    def asked() -> bool:
        return bool(flags[slot])

    def give(dirs: list[tuple[str, int]]) -> None:
        flags[slot] = 0
        write_frame(out, ("g", tid, walker.root_dev, dirs))

    walker.should_donate = asked
    walker.donate_to = give
    try:
        while (msg := read_frame(0)) is not None:
            _, tid, name, root_dev, dirs = msg
            walker.errors = []
            if dirs is None:
                res, root_dev = walker.walk_layer(name)
                write_frame(out, ("d", tid, res.as_dict(), root_dev, walker.errors))
            else:
                walker.walk_dirs(name, root_dev, dirs)
                write_frame(out, ("d", tid, None, root_dev, walker.errors))
            flags[slot] = 0
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the parent is gone or the user interrupted: nothing to report to
    except BaseException as e:  # a bug: tell the parent instead of leaving it to guess
        import contextlib

        with contextlib.suppress(OSError):
            write_frame(out, ("x", tid, f"{type(e).__name__}: {e}", None, None))
        raise


# --- the parent side ----------------------------------------------------------------------------------------

class _Layer:
    """A layer being walked, possibly in several tasks: its totals come from every task's rows."""

    def __init__(self, layer_id: str) -> None:
        from snapper.filerows import LayerTotals

        self.res = LayerResult(layer_id)
        self.totals = LayerTotals()
        self.errors: Rows = []
        self.pending = 0


class WalkPool:
    """``jobs`` walk worker processes (``python -I -S``, only snapper.walk loaded) fed tasks (at most two
    queued each) through their stdin; rows come back as RawBatch frames on their stdout. A task is a whole
    overlay2 entry or subtrees of one: when workers are idle and no task is queued, the longest-running worker is asked
    (a flag in a shared memfd page, checked once per directory) to give away half of the dirs it has not
    listed yet, so one huge layer keeps every worker busy. Memory stays bounded: a worker blocks on its pipe
    when the parent is behind. Workers exit when the parent goes away (end of stdin, or EPIPE)."""

    def __init__(self, overlay_dir: bytes, hash_mode: str, mount_points: frozenset[bytes], jobs: int,
                 batch_rows: int = 8192) -> None:
        import contextlib
        import fcntl
        import mmap
        import subprocess
        from pathlib import Path

        import snapper

        self.memfd = os.memfd_create("snapper-walk-flags")
        os.ftruncate(self.memfd, mmap.PAGESIZE)
        self.flags = mmap.mmap(self.memfd, mmap.PAGESIZE)
        pkg_parent = str(Path(snapper.__file__).resolve().parent.parent)
        code = (f"import sys; sys.path[:0] = {[pkg_parent, *sys.path]!r}; "
                "from snapper.walkpool import worker_main; worker_main()")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stats: dict[str, int] = {"jobs": jobs, "tasks": 0, "subtree_tasks": 0}
        try:
            for slot in range(jobs):
                p = subprocess.Popen([sys.executable, "-I", "-S", "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, pass_fds=(self.memfd,))
                self.procs.append(p)
                assert p.stdin is not None and p.stdout is not None
                with contextlib.suppress(OSError):  # fewer wake-ups with a bigger pipe (up to pipe-max-size)
                    fcntl.fcntl(p.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
                write_frame(p.stdin.fileno(), (overlay_dir, hash_mode, mount_points, batch_rows, self.memfd, slot))
        except BaseException:
            self.close()
            raise

    def run(self, names: list[bytes],
            side: Iterator[pa.RecordBatch] | None = None) -> Iterator[tuple[str, Any, Any]]:
        """Yields ("batch", RecordBatch, None) and ("layer", LayerResult, errors) as layers complete;
        batches from ``side`` (rows copied from a base) are yielded whenever no worker has anything."""
        import selectors
        import time
        from collections import deque

        from snapper.filerows import to_record_batch

        tasks: deque[tuple[int, bytes, int, list[tuple[str, int]] | None]] = deque()
        layers: dict[bytes, _Layer] = {}
        task_layer: dict[int, bytes] = {}
        for tid, name in enumerate(names):
            tasks.append((tid, name, 0, None))
            task_layer[tid] = name
            layers[name] = _Layer(show_bytes(name)[0])
            layers[name].pending = 1
        next_tid = len(names)
        self.stats = {"jobs": len(self.procs), "tasks": len(names), "subtree_tasks": 0}
        workers = range(len(self.procs))
        inflight: dict[int, deque[float]] = {w: deque() for w in workers}  # start times of assigned tasks
        asked: set[int] = set()
        bufs = {w: bytearray() for w in workers}
        sel = selectors.DefaultSelector()
        for w, p in enumerate(self.procs):
            assert p.stdout is not None
            os.set_blocking(p.stdout.fileno(), False)
            sel.register(p.stdout.fileno(), selectors.EVENT_READ, w)
        left = len(names)
        try:
            while left:
                # Keep every worker at two tasks while there are plenty (it starts the next one without
                # waiting for this loop), one when they run short (so no task waits behind another).
                depth = 2 if len(tasks) > len(self.procs) else 1
                for w in workers:
                    while tasks and len(inflight[w]) < depth:
                        tid, name, root_dev, dirs = tasks.popleft()
                        inflight[w].append(time.monotonic())
                        stdin = self.procs[w].stdin
                        assert stdin is not None
                        write_frame(stdin.fileno(), ("t", tid, name, root_dev, dirs))
                idle = sum(1 for w in workers if not inflight[w])
                if idle and not tasks and not asked:
                    busy = [w for w in workers if inflight[w]]
                    if busy:  # the longest-running task is likely the biggest: ask it to share
                        w = min(busy, key=lambda k: inflight[k][0])
                        self.flags[w] = 1
                        asked.add(w)
                events = sel.select(timeout=0 if side is not None else 5)
                if not events and side is not None:
                    rb = next(side, None)
                    if rb is None:
                        side = None
                    else:
                        yield "batch", rb, None
                    continue
                for key, _ in events:
                    w = key.data
                    try:
                        chunk = os.read(key.fd, 1 << 20)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise RuntimeError(f"walk worker {self.procs[w].pid} exited unexpectedly "
                                           f"(status {self.procs[w].poll()})")
                    buf = bufs[w]
                    buf += chunk
                    for msg in _frames(buf):
                        kind, tid = msg[0], msg[1]
                        if kind == "x":
                            raise RuntimeError(f"walk worker {self.procs[w].pid} failed: {msg[2]}")
                        lay = layers[task_layer[tid]]
                        if kind == "b":
                            raw = msg[2]
                            lay.totals.add(raw)
                            yield "batch", to_record_batch(raw), None
                        elif kind == "g":  # a donation: split it among the idle workers
                            asked.discard(w)
                            dirs = msg[3]
                            parts = max(1, min(idle, len(dirs)))
                            for k in range(parts):
                                tasks.append((next_tid, task_layer[tid], msg[2], dirs[k::parts]))
                                task_layer[next_tid] = task_layer[tid]
                                next_tid += 1
                                lay.pending += 1
                                self.stats["subtree_tasks"] += 1
                        elif kind == "d":
                            asked.discard(w)
                            inflight[w].popleft()
                            if inflight[w]:
                                inflight[w][0] = time.monotonic()
                            if msg[2] is not None:
                                lay.res = LayerResult(**msg[2])
                            lay.errors += msg[4]
                            lay.pending -= 1
                            if lay.pending == 0:
                                left -= 1
                                res = lay.totals.result(lay.res)
                                res.walk_errors = len(lay.errors)
                                if res.walk_errors and res.walk_status == "ok":
                                    res.walk_status = "partial"
                                del layers[task_layer[tid]]
                                yield "layer", res, lay.errors
        finally:
            sel.close()
        for rb in side or ():
            yield "batch", rb, None

    def close(self) -> None:
        """Stop the workers: end of tasks on stdin, and no reader on stdout (a worker blocked writing a
        batch gets EPIPE and exits at once); killed after 5 s."""
        import contextlib
        import subprocess
        import time

        for p in self.procs:
            for pipe in (p.stdout, p.stdin):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.flags.close()
        os.close(self.memfd)


def _frames(buf: bytearray) -> Iterator[Any]:
    """Complete frames at the start of ``buf`` (consumed from it)."""
    while len(buf) >= 8:
        n = int.from_bytes(buf[:8], "little")
        if len(buf) < 8 + n:
            return
        msg = marshal.loads(memoryview(buf)[8:8 + n])
        del buf[:8 + n]
        yield msg


def _walk_inline(overlay_dir: bytes, names: list[bytes], hash_mode: str,
                 mount_points: frozenset[bytes]) -> Iterator[tuple[str, Any, Any]]:
    from snapper.filerows import LayerWalker

    out: list[pa.RecordBatch] = []
    walker = LayerWalker(overlay_dir, "overlay2", hash_mode, mount_points, out.append, batch_rows=16384)
    for name in names:
        res = walker.walk(name)
        walker.flush()
        while out:
            yield "batch", out.pop(0), None
        yield "layer", res, walker.errors
        walker.errors = []


def walk_layers(overlay_dir: bytes, names: list[bytes], hash_mode: str, mount_points: frozenset[bytes], jobs: int,
          side: Iterator[pa.RecordBatch], stats: dict[str, int]) -> Iterator[tuple[str, Any, Any]]:
    """Walk the entries ``names`` of ``overlay_dir``: natively (threads, :mod:`snapper.nwalk`) when the
    extension is built, else in ``jobs`` worker processes (or in this one)."""
    from snapper.nwalk import native_module, walk_layers_native

    mod = native_module()
    if mod is not None and names:
        yield from walk_layers_native(mod, overlay_dir, names, hash_mode, mount_points, side, stats)
        return
    if jobs <= 1 or not names:
        stats.update(jobs=1, tasks=len(names), subtree_tasks=0)
        for rb in side:
            yield "batch", rb, None
        yield from _walk_inline(overlay_dir, names, hash_mode, mount_points)
        return
    pool = WalkPool(overlay_dir, hash_mode, mount_points, jobs)
    try:
        yield from pool.run(names, side)
    finally:
        pool.close()
        stats.update(pool.stats)
