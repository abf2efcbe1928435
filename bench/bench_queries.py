"""Benchmark of the diff and history queries on large synthetic snapshot series (issue 4 targets:
diff of two 1M-file snapshots <= 2 s, history over 24 snapshots of 1M files <= 10 s).

The snapshots are written with snapper's own SnapshotWriter and schema, shaped like a busy build server:
~1,000 layer dirs of ~1,000 files (site-packages-like paths), images and layerdb chains owning most dirs,
containers, and every hour 1 % new dirs of which a third leak (no owner). Nothing is collected from disk:
this measures DuckDB over Parquet, the collector has its own benchmark (bench/run.py).

    python3 bench/bench_queries.py --files 1000000 --snapshots 24 [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snapper import catalog, series
from snapper.schema import FILES, IMAGES, LAYERDB, LAYERS, TABLES
from snapper.snapshot import SnapshotWriter, connect, find_snapshots

PKGS = ["numpy", "scipy", "sklearn", "pandas", "torch", "matplotlib", "requests", "urllib3", "yaml", "jinja2"]
HOUR_NS = 3600 * 10**9


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def layer_files(layer: str, n: int, seed: int, t_ns: int) -> pa.RecordBatch:
    """n file rows of one layer dir (vectorised where it matters)."""
    rng = random.Random(seed)
    pkg = PKGS[seed % len(PKGS)]
    paths = ["."] + ["diff"] + [f"diff/opt/conda/lib/python3.11/site-packages/{pkg}/m{seed}/f{i:05d}.py"
                                for i in range(n - 2)]
    k = len(paths)
    sizes = [rng.randrange(100, 40000) for _ in range(k)]
    cols: dict[str, Any] = {
        "layer_id": pa.array([layer] * k).dictionary_encode(),
        "path": pa.array(paths),
        "path_raw": pa.nulls(k, pa.binary()),
        "type": pa.array(["d", "d"] + ["f"] * (k - 2)).dictionary_encode(),
        "size": pa.array(sizes, pa.int64()),
        "allocated": pa.array([(s + 4095) // 4096 * 4096 for s in sizes], pa.int64()),
        "inode": pa.array(range(seed * 10**6, seed * 10**6 + k), pa.int64()),
        "dev": pa.array([2049] * k, pa.int64()),
        "nlink": pa.array([1] * k, pa.uint32()),
        "mode": pa.array([0o40755, 0o40755] + [0o100644] * (k - 2), pa.uint32()),
        "uid": pa.array([0] * k, pa.uint32()),
        "gid": pa.array([0] * k, pa.uint32()),
        "mtime_ns": pa.array([t_ns] * k, pa.int64()),
        "ctime_ns": pa.array([t_ns] * k, pa.int64()),
        "whiteout": pa.array([False] * k),
        "opaque": pa.array([False] * k),
        "mount_point": pa.array([False] * k),
        "link_target": pa.nulls(k, pa.string()),
        "hash": pa.nulls(k, pa.binary(16)),
    }
    return pa.RecordBatch.from_arrays([cols[f.name] for f in FILES.schema], schema=FILES.schema)


def make_series(dest: Path, files: int, snapshots: int, per_layer: int = 1000) -> list[Path]:
    rng = random.Random(42)
    t0 = 1_790_000_000 * 10**9
    n_layers = max(2, files // per_layer)
    live: list[tuple[str, int, int]] = [(_hex(rng), i, t0 - HOUR_NS * 48) for i in range(n_layers)]
    leaked: list[tuple[str, int, int]] = []
    out = []
    seed_next = n_layers
    for s in range(snapshots):
        t = t0 + s * HOUR_NS
        if s:
            for _ in range(max(1, n_layers // 100)):  # 1 % new dirs an hour, a third of them leak
                entry = (_hex(rng), seed_next, t - HOUR_NS // 2)
                seed_next += 1
                (leaked if seed_next % 3 == 0 else live).append(entry)
        path = dest / f"s{s:02d}"
        w = SnapshotWriter(path)
        for lid, seed, created in live + leaked:
            w.write_batch(FILES, layer_files(lid, per_layer, seed, created))
        layer_rows = []
        for lid, seed, created in live + leaked:
            layer_rows.append({"layer_id": lid, "name_class": "hex64", "entry_type": "d", "has_diff": True,
                               "has_link": True, "has_lower": False, "has_work": False, "has_merged": False,
                               "has_committed": False, "link_id": None, "lower": None, "lower_ids": None,
                               "lower_unresolved": 0, "mounted": False, "file_count": per_layer,
                               "apparent_bytes": per_layer * 20000, "allocated_bytes": per_layer * 20480,
                               "dir_inode": seed, "dir_mtime_ns": created, "dir_ctime_ns": created,
                               "diff_mtime_ns": created, "diff_ctime_ns": created, "link_mtime_ns": created,
                               "link_ctime_ns": created, "walk_status": "ok", "walk_errors": 0})
        w.write_rows(LAYERS, layer_rows)
        chains = []
        for lid, seed, _created in live:
            diff = "sha256:" + hashlib.sha256(f"d{seed}".encode()).hexdigest()
            chains.append({"dir_name": diff[7:], "chain_id": diff, "diff_id": diff, "parent": None,
                           "cache_id": lid, "size": 1, "removing": False, "has_tar_split": True,
                           "mtime_ns": t, "problem": None})
        w.write_rows(LAYERDB, chains)
        images = []
        for i in range(0, len(chains), 10):  # one image per 10 base layers (single-layer images)
            ids = [c["chain_id"] for c in chains[i:i + 10]]
            for c in ids:
                images.append({"image_id": "sha256:" + hashlib.sha256(c.encode()).hexdigest(), "digest_ok": True,
                               "created": "2026-01-01T00:00:00Z", "diff_ids": [c], "chain_ids": [c],
                               "top_chain_id": c, "parent": None, "last_updated": None,
                               "tags": [f"ml-{i // 10}:latest"] if c == ids[0] else [], "mtime_ns": t,
                               "problem": None})
        w.write_rows(IMAGES, images)
        for t_ in TABLES:
            if t_.name not in ("files", "layers", "layerdb", "images"):
                w.write_rows(t_, [])
        w.finish({"host": socket.gethostname(), "data_root": "/var/lib/docker", "started_ns": t,
                  "started_utc": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t / 1e9)),
                  "daemon": {"running": True}, "statvfs": {"used_bytes": 10**12 + s * 10**10,
                                                           "total_bytes": 3 * 10**12}})
        out.append(path)
    return out


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000, help="file rows per snapshot")
    ap.add_argument("--snapshots", type=int, default=24)
    ap.add_argument("--keep", help="write the series here and keep it")
    args = ap.parse_args()
    dest = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="snapper-bq-"))
    try:
        gen_s, snaps = timed(lambda: make_series(dest / "host", args.files, args.snapshots))
        size = sum(f.stat().st_size for p in snaps for f in p.iterdir())
        results: dict[str, Any] = {"files_per_snapshot": args.files, "snapshots": args.snapshots,
                                   "generate_s": round(gen_s, 1), "parquet_bytes_per_snapshot": size // len(snaps)}
        results["diff_s"], d = timed(lambda: series.diff(snaps[-2], snaps[-1], 3600))
        results["diff_newly_leaked"] = d.newly_leaked.num_rows
        found = find_snapshots([dest / "host"])

        def history_query() -> pa.Table:
            con = connect(found)
            catalog.bind_views(con)
            return catalog.run(con, "history", {"grace_seconds": 3600})

        results["history_query_s"], h = timed(history_query)
        results["never_reachable"] = sum(1 for r in h.column("never_reachable").to_pylist() if r)
        results["history_full_s"], _ = timed(lambda: series.history([dest / "host"], 3600))
        results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
