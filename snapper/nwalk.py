"""The native walk: the inner loop of the layer walk in C (``snapper._nwalk``, an optional extension built by
setup.py), on a pool of threads that keep many ``fstatat`` calls in flight with the GIL released.

Python still lists each layer dir itself (:meth:`snapper.walk.TreeWalker.walk_layer`: its ``.`` row, the
markers, ``link`` and ``lower``) and hands the subdirs it found (``diff/``, ``work/``, ...) to the threads, which
list everything below with the same guarantees (see the header of ``_nwalk.c``). Their rows come back as
column buffers in the RawBatch layout of the Python walk, so both walks share :func:`to_record_batch` and
:class:`LayerTotals`: the rows are the same (tests/test_nwalk.py compares them), only their order differs.

Without the extension (no compiler at install time) or with ``SNAPPER_NATIVE=0`` the pure-Python walk
(:mod:`snapper.walkpool`) is used; :func:`fallback_reason` says why, for the CLI to print.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from snapper.walk import LayerResult, TreeWalker, digest_fd, show_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow as pa

    from snapper.filerows import LayerTotals
    from snapper.walk import RawBatch

ENV = "SNAPPER_NATIVE"
THREADS_ENV = "SNAPPER_WALK_THREADS"
# Measured in bench/NOTES.md ("Native walk: thread depth"): 8 threads in flight keep a cold cache busy;
# past that the gain is within noise and a warm walk only pays for more context switches.
DEFAULT_THREADS = 8
BATCH_ROWS = 16384
MAX_FDS = 512  # parent dir fds kept open across the threads; past it subdirs are opened from the layer's top
PROC_FD: bool | None = None  # read xattrs through /proc/self/fd (None: when it is there)


def native_module() -> Any | None:
    """``snapper._nwalk`` when it is built and not switched off with ``SNAPPER_NATIVE=0``, else None."""
    if os.environ.get(ENV, "1") == "0":
        return None
    try:
        return importlib.import_module("snapper._nwalk")
    except ImportError:
        return None


def fallback_reason() -> str | None:
    """None when the native walk is used; otherwise one line saying why not."""
    if os.environ.get(ENV, "1") == "0":
        return f"{ENV}=0: using the pure-Python walk"
    try:
        importlib.import_module("snapper._nwalk")
    except ImportError:
        return ("the native walk (snapper._nwalk) is not built: using the pure-Python walk, 2-4x slower "
                "(reinstall snapper where a C compiler and Python's headers are present)")
    return None


def default_threads() -> int:
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "")))
    except ValueError:
        return DEFAULT_THREADS


class _Layer:
    def __init__(self, name: bytes, res: LayerResult, totals: LayerTotals, errors: list[dict[str, Any]],
                 root_dev: int) -> None:
        self.name = name
        self.res = res
        self.totals = totals
        self.errors = errors
        self.root_dev = root_dev


def walk_layers_native(mod: Any, overlay_dir: bytes, names: list[bytes], hash_mode: str,
                       mount_points: frozenset[bytes], side: Iterator[pa.RecordBatch], stats: dict[str, int],
                       threads: int = 0, rel_prefix: str = "overlay2") -> Iterator[tuple[str, Any, Any]]:
    """What :func:`snapper.walkpool.walk_layers` yields — ("batch", RecordBatch, None) and ("layer",
    LayerResult, errors rows) once a layer's batches are all out — from the native walk."""
    from snapper.filerows import LayerTotals, to_record_batch

    threads = threads or default_threads()
    stats.update(jobs=threads, tasks=len(names), subtree_tasks=0)
    for rb in side:
        yield "batch", rb, None
    cb = None if hash_mode == "none" else (lambda fd, size: digest_fd(fd, size, hash_mode))
    top_rows: list[RawBatch] = []
    tree = TreeWalker(overlay_dir, rel_prefix, hash_mode, mount_points, top_rows.append, BATCH_ROWS)
    if PROC_FD is not None:
        tree.proc_fd = PROC_FD
    handed: list[tuple[list[tuple[str, int]], int]] = []
    tree.handoff = lambda dirs, ino: handed.append((dirs, ino))
    layers: dict[int, _Layer] = {}
    walker = mod.Walker(threads, cb, sorted(mount_points), BATCH_ROWS, int(tree.proc_fd), MAX_FDS)

    def event(ev: tuple[Any, ...]) -> Iterator[tuple[str, Any, Any]]:
        lay = layers[ev[1]]
        if ev[0] == "b":
            (_, _, n, blob, offs, cols, opaque, mounts, whiteouts, links, hashes, apparent, allocated,
             linked) = ev
            raw = (lay.res.layer_id, n, blob, offs, *cols, lay.root_dev, opaque, mounts, whiteouts,
                   [(r, show_bytes(t)[0]) for r, t in links], hashes, apparent, allocated, linked)
            lay.totals.add(raw)
            yield "batch", to_record_batch(raw), None
            return
        for rel, op, eno, msg in ev[2]:
            obj = show_bytes(os.path.join(lay.name, rel))[0]
            lay.errors.append({"source": "walk", "object": f"{rel_prefix}/{obj}", "op": op, "errno": eno,
                               "message": msg or os.strerror(eno or 0)})
        del layers[ev[1]]
        yield "layer", _finish(lay), lay.errors

    try:
        for tid, name in enumerate(names):
            tree.errors = []
            handed.clear()
            res, root_dev = tree.walk_layer(name)
            lay = _Layer(name, res, LayerTotals(), tree.errors, root_dev)
            for raw in top_rows:
                lay.totals.add(raw)
                yield "batch", to_record_batch(raw), None
            top_rows.clear()
            if handed:
                dirs, ino = handed[0]
                layers[tid] = lay
                walker.add(tid, tree.top, root_dev, ino, [(os.fsencode(rel), i) for rel, i in dirs])
            else:
                yield "layer", _finish(lay), lay.errors
            while (ev := walker.next(False)) is not None:
                yield from event(ev)
        walker.close_input()
        while (ev := walker.next(True)) is not None:
            yield from event(ev)
    finally:
        walker.close()


def _finish(lay: _Layer) -> LayerResult:
    res = lay.totals.result(lay.res)
    res.walk_errors = len(lay.errors)
    if res.walk_errors and res.walk_status == "ok":
        res.walk_status = "partial"
    return res
