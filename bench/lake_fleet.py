"""Benchmark of the fleet lake (issue 16): `lake query` over HOSTS x DAYS daily snapshots, and push times.

The lake is generated from real ones: the real sample snapshots (snapper/demo/sample, tests/data/series/s3,
s4, tests/data/ctr_sample) are pushed once with `snapper.lake.push`; each of their lake files is then copied
to every host and day, with the snapshot id and collect time rewritten (host and date are the path).

    python3 bench/lake_fleet.py --hosts 100 --days 30 [--keep DIR] [--spark] [--compact]
                                                        # --compact: the queries again after `lake compact`
    python3 bench/lake_fleet.py --push-files 1000000   # push time and bytes of a 1M-entry snapshot
                                                        # (bench/bench_queries.py's generator), +- --files
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snapper import lake
from snapper.snapshot import open_snapshot

TOP = Path(__file__).resolve().parent.parent
SEEDS = ["snapper/demo/sample", "tests/data/series/s3", "tests/data/series/s4", "tests/data/ctr_sample"]
TABLES = ("leaks", "reconciliation", "errors", "prefixes", "snapshots")


def generate(root: Path, hosts: int, days: int) -> tuple[lake.Lake, float]:
    seed_lake = lake.open_lake(str(root / "seed"))
    snaps = [open_snapshot(TOP / s) for s in SEEDS]
    t0 = time.perf_counter()
    pushed = lake.push(seed_lake, snaps)
    push_s = time.perf_counter() - t0
    seeds = [{t: pq.read_table(next(Path(seed_lake.path(t)).glob(f"host=*/date=*/{r.snapshot}.parquet")))
              for t in TABLES} for r in pushed]
    out = lake.open_lake(str(root / "lake"))
    lake.check_version(out, create=True)
    start = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    for h in range(hosts):
        for d in range(days):
            when = start + dt.timedelta(days=d)
            date, sid = when.strftime("%Y-%m-%d"), when.strftime("%Y%m%dT%H%M%SZ")
            seed = seeds[(h + d) % len(seeds)]
            for t in TABLES:
                table = seed[t].set_column(0, "snapshot", pa.array([sid] * seed[t].num_rows, pa.string()))
                if t == "snapshots":
                    ns = int(when.timestamp()) * 10**9
                    table = table.set_column(table.schema.get_field_index("started_ns"), "started_ns",
                                             pa.array([ns], pa.int64()))
                    table = table.set_column(table.schema.get_field_index("started_utc"), "started_utc",
                                             pa.array([when.strftime("%Y-%m-%dT%H:%M:%S.000000Z")]))
                path = Path(lake.file_path(out, t, f"host-{h:03d}", date, sid))
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path, compression="zstd")
    return out, push_s


def timed(fn: object, reps: int = 3) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
        rows = res.num_rows
    return best, rows


def push_bench(root: Path, n: int) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_queries", TOP / "bench" / "bench_queries.py")
    assert spec and spec.loader
    bq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bq)
    t0 = time.perf_counter()
    snaps = bq.make_series(root / "host", n, 1)
    print(f"generated a {n}-entry snapshot in {time.perf_counter() - t0:.1f} s")
    snap = open_snapshot(snaps[-1])
    for files in (False, True):
        lk = lake.open_lake(str(root / f"lake-{files}"))
        t0 = time.perf_counter()
        res = lake.push(lk, [snap], files)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        lake.push(lk, [snap], files)
        again = time.perf_counter() - t0
        print(f"push {'--files' if files else '(no --files)'}: {first:.2f} s, "
              f"{sum(w.bytes for w in res[0].files) / 1e6:.2f} MB written "
              f"({', '.join(f'{w.table} {w.bytes}' for w in res[0].files)}); same push again: {again:.2f} s")


def queries(lk: lake.Lake, spark: bool) -> None:
    for name, params in (("leaks", {}), ("leaks", {"host": "host-042"}), ("leak_bytes", {}),
                         ("mechanisms", {}), ("top_prefixes", {}), ("engine_upgrade", {})):
        s, n = timed(lambda name=name, params=params: lake.run(lk, name, params))
        print(f"duckdb lake query {name} {params or ''}: {s:.2f} s (best of 3, new connection each), {n} rows")
    if spark:
        for name in ("leaks", "leak_bytes", "mechanisms"):
            s, n = timed(lambda name=name: lake.run_spark(lk, name), reps=2)
            print(f"spark local[*] lake query {name}: {s:.2f} s (best of 2, session warm after the first), "
                  f"{n} rows")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--keep", type=Path)
    ap.add_argument("--spark", action="store_true")
    ap.add_argument("--compact", action="store_true", help="then compact the lake and run the queries again")
    ap.add_argument("--push-files", type=int, help="only the push benchmark, on a snapshot of N entries")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="snapper-lake-bench-"))
    try:
        if a.push_files:
            push_bench(root, a.push_files)
            return
        t0 = time.perf_counter()
        lk, push_s = generate(root, a.hosts, a.days)
        files = sum(1 for _ in (root / "lake").rglob("*.parquet"))
        size = sum(p.stat().st_size for p in (root / "lake").rglob("*.parquet"))
        print(f"push of {len(SEEDS)} real snapshots: {push_s:.2f} s ({push_s / len(SEEDS):.2f} s each)")
        print(f"lake: {a.hosts} hosts x {a.days} days = {a.hosts * a.days} snapshots, {files} files, "
              f"{size / 1e6:.1f} MB, generated in {time.perf_counter() - t0:.1f} s")
        queries(lk, a.spark)
        if a.compact:
            from snapper import lake_compact

            t0 = time.perf_counter()
            res = lake_compact.compact(lk, "9999-12-31")
            files = sum(1 for _ in (root / "lake").rglob("*.parquet"))
            size = sum(p.stat().st_size for p in (root / "lake").rglob("*.parquet"))
            print(f"lake compact: {res.merged_files} files merged into {len(res.groups)} in "
                  f"{time.perf_counter() - t0:.1f} s; lake now {files} files, {size / 1e6:.1f} MB")
            queries(lk, a.spark)
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
