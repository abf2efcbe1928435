"""snapper collect against du -sx on one generated tree, alternating, warm and cold; writes bench/RESULTS.md.

Each round runs, in rotating order: ``du -sx``, snapper with the native walk (the default when snapper._nwalk
is built), snapper with the pure-Python walk (``SNAPPER_NATIVE=0``), and, when installed, ``gdu -npsx`` and
``fd -u --one-file-system`` (Debian: ``apt-get install gdu fd-find``), so every ratio comes from one run.

    python3 bench/run.py --entries 1000000            # the figures in bench/RESULTS.md
    python3 bench/run.py --entries 20000 --quick      # a smoke run (one round, no cold cache, no sweep)
    python3 bench/run.py --entries 5000000 --data sparse --only memory --rounds 2   # peak RSS at 5M
    python3 bench/run.py --rebuild                    # RESULTS.md again from bench/out/*.json (+ NOTES.md)

Every collect runs with ``--no-api --no-base --no-nice`` (same priority as du) unless stated. Cold runs
drop the page cache first (``sync; echo 3 > /proc/sys/vm/drop_caches``, root only). Wall ratios compare
snapper and du from the same run, in alternating order. CPU is user+sys of the whole process tree
(RUSAGE_CHILDREN deltas); peak RSS is the largest sum of VmRSS over the tree, polled every 20 ms.
Results go to bench/out/<entries>.json; RESULTS.md is rebuilt from every JSON file there.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import gen  # noqa: E402

OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"


# --- measuring ---------------------------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """Sum of VmRSS over ``pid`` and its descendants, and how many processes that was."""
    kids = _children()
    total, n, stack = 0, 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            pass
        stack += kids.get(p, [])
    return total, n


def measure(cmd: list[str], cold: bool = False, env: dict[str, str] | None = None) -> dict[str, Any]:
    if cold:
        drop_caches()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=None if env is None else os.environ | env)
    peak = [0, 0]

    def poll() -> None:
        while p.poll() is None:
            rss, n = tree_rss_kb(p.pid)
            if rss > peak[0]:
                peak[:] = [rss, n]
            time.sleep(0.02)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    _, err = p.communicate()
    wall = time.monotonic() - t0
    th.join()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err.decode(errors='replace')[-2000:]}")
    return {"wall_s": round(wall, 3), "user_s": round(r1.ru_utime - r0.ru_utime, 3),
            "sys_s": round(r1.ru_stime - r0.ru_stime, 3), "peak_rss_mb": round(peak[0] / 1024, 1),
            "procs_at_peak": peak[1], "cold": cold}


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def snapper_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snapper.cli", "collect", "--root", str(root), "--out", str(out), "--no-api",
            "-q", *extra]


def du_cmd(root: Path) -> list[str]:
    return ["du", "-sx", str(root)]


# Other tools in the same rounds, when installed: (key, command)
def others(root: Path) -> list[tuple[str, list[str]]]:
    out = []
    if shutil.which("gdu"):
        out.append(("gdu", ["gdu", "-n", "-p", "-s", "-x", str(root)]))
    fd = shutil.which("fd") or shutil.which("fdfind")  # Debian names it fdfind
    if fd:
        out.append(("fd", [fd, "-u", "--one-file-system", ".", str(root)]))
    return out


PYTHON_WALK = {"SNAPPER_NATIVE": "0"}


def alternate(root: Path, scratch: Path, rounds: int, cold: bool, extra: tuple[str, ...] = ("--no-base", "--no-nice"),
              keep: Path | None = None, python: bool = True, tools: bool = True) -> list[dict[str, Any]]:
    """du, snapper (native walk), snapper with the Python walk and the other tools, in an order that rotates
    by one each round."""
    out = []
    who = ["du", "snapper"] + (["python"] if python else []) + ([k for k, _ in others(root)] if tools else [])
    cmds = dict(others(root))
    for r in range(rounds):
        order = who[r % len(who):] + who[:r % len(who)]
        row: dict[str, Any] = {"round": r + 1, "order": "/".join(order)}
        for what in order:
            if what == "du":
                row["du"] = measure(du_cmd(root), cold)
            elif what in cmds:
                row[what] = measure(cmds[what], cold)
            else:
                snap = scratch / f"snap-{time.monotonic_ns()}"
                row[what] = measure(snapper_cmd(root, snap, *extra), cold, PYTHON_WALK if what == "python" else None)
                row[what]["manifest"] = _manifest_summary(snap)
                if keep is not None and r == rounds - 1 and what == "snapper":
                    shutil.rmtree(keep, ignore_errors=True)
                    snap.rename(keep)
                else:
                    shutil.rmtree(snap)
        row["ratio"] = round(row["snapper"]["wall_s"] / row["du"]["wall_s"], 3)
        for k in who[2:]:
            row[f"ratio_{k}"] = round(row[k]["wall_s"] / row["du"]["wall_s"], 3)
        out.append(row)
        print(f"  {'cold' if cold else 'warm'} round {r + 1}: du {row['du']['wall_s']} s, snapper "
              f"{row['snapper']['wall_s']} s (x{row['ratio']}), peak RSS {row['snapper']['peak_rss_mb']} MB"
              + "".join(f", {k} {row[k]['wall_s']} s (x{row[f'ratio_{k}']})" for k in who[2:]), flush=True)
    return out


def _manifest_summary(snap: Path) -> dict[str, Any]:
    m = json.loads((snap / "manifest.json").read_text())
    files = snap / "files.parquet"
    return {"rows": m["rows"]["files"], "files_parquet_bytes": files.stat().st_size,
            "snapshot_bytes": sum(p.stat().st_size for p in snap.iterdir()), "walk": m.get("walk"),
            "incremental": m.get("incremental"), "priority": m.get("priority"), "durations": m.get("durations")}


# --- DuckDB -----------------------------------------------------------------------------------------------------

def time_leaks(snap: Path, repeat: int = 3) -> dict[str, Any]:
    from snapper import verdict

    times = []
    for _ in range(repeat):
        t = time.monotonic()
        n = verdict.leaks(str(snap), 0, 0).num_rows
        times.append(time.monotonic() - t)
    return {"median_s": round(statistics.median(times), 3), "runs_s": [round(x, 3) for x in times], "leaked": n}


def blow_up(snap: Path, factor: int, dest: Path) -> Path:
    """A copy of ``snap`` whose files table holds every row ``factor`` times (paths prefixed by the copy
    number); every other table as it was. For timing queries on 10x the rows without a 10x tree on disk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from snapper.fileswriter import _FILES_PARQUET

    shutil.copytree(snap, dest)
    src = pq.ParquetFile(snap / "files.parquet")
    target = dest / "files.parquet"
    target.unlink()
    with pq.ParquetWriter(str(target), src.schema_arrow, compression="zstd", compression_level=3,
                          **_FILES_PARQUET) as w:
        for k in range(factor):
            for i in range(src.num_row_groups):
                t = src.read_row_group(i)
                if k:
                    t = t.set_column(1, t.schema.field(1),
                                     pa.array([f"copy{k}/{p}" for p in t.column(1).to_pylist()], pa.string()))
                w.write_table(t)
    m = json.loads((dest / "manifest.json").read_text())
    m["rows"]["files"] *= factor
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


# --- machine ----------------------------------------------------------------------------------------------------

def machine(work: Path) -> dict[str, Any]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    dev, fstype = "?", "?"
    best = ""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if str(work).startswith(parts[1]) and len(parts[1]) >= len(best):
            best, dev, fstype = parts[1], parts[0], parts[2]
    disk = {}
    name = os.path.basename(dev)
    for key in ("rotational", "scheduler"):
        with contextlib.suppress(OSError):
            disk[key] = Path(f"/sys/block/{name}/queue/{key}").read_text().strip()
    import duckdb
    import pyarrow

    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True,
                           text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(mem / 2**20, 1), "kernel": platform.release(),
            "fs": f"{fstype} on {dev} ({best})", "disk": disk, "python": platform.python_version(),
            "pyarrow": pyarrow.__version__, "duckdb": duckdb.__version__, "du": subprocess.run(
                ["du", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
            "git": rev + (" + uncommitted changes" if dirty else ""),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}


# --- the run ------------------------------------------------------------------------------------------------------

def tree(work: Path, entries: int, seed: int, data: str) -> tuple[Path, dict[str, Any]]:
    root = work / "root"
    meta = work / "gen.json"
    if meta.exists():
        g = json.loads(meta.read_text())
        if (g["requested"], g["seed"], g["data"]) == (entries, seed, data) and root.exists():
            return root, g
        shutil.rmtree(work)
        work.mkdir(parents=True)
    print(f"generating {entries:,} entries in {root} ...", flush=True)
    s = gen.generate(root, entries, seed, data)
    from dataclasses import asdict

    g = asdict(s)
    meta.write_text(json.dumps(g, indent=1))
    print(f"  {s.entries:,} entries, {len(s.layers)} layer dirs, {s.seconds} s", flush=True)
    return root, g


def median_of(rows: list[dict[str, Any]], who: str, key: str) -> float:
    return statistics.median(r[who][key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", choices=("real", "sparse"), default="real")
    ap.add_argument("--work", type=Path, help="where the tree lives (default /tmp/bench-snp-<entries>); kept "
                    "for the next run unless --clean")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one warm round, no cold cache, no sweep, no 10x")
    ap.add_argument("--only", choices=("all", "memory"), default="all",
                    help="memory: warm rounds only (peak RSS and the ratio), e.g. for 5M entries")
    ap.add_argument("--sweep", default="1,2,4,8,16", help="native walk threads (SNAPPER_WALK_THREADS) to compare "
                    "warm and cold ('' = none)")
    ap.add_argument("--blow-up", type=int, default=10, help="time the leaks query on this many x the rows")
    ap.add_argument("--clean", action="store_true", help="remove the tree at the end")
    ap.add_argument("--results", default=str(OUT), help="dir for <entries>.json ('' = do not write results)")
    ap.add_argument("--rebuild", action="store_true", help="only rebuild RESULTS.md from bench/out/*.json")
    a = ap.parse_args(argv)
    if a.rebuild:
        write_results(OUT, RESULTS)
        return 0
    work = a.work or Path(f"/tmp/bench-snp-{a.entries}")
    work.mkdir(parents=True, exist_ok=True)
    cold = can_drop_caches() and not a.quick
    rounds = 1 if a.quick else a.rounds
    res: dict[str, Any] = {"command": " ".join(["python3 bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
                           "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(work),
                           "entries_requested": a.entries, "data": a.data, "only": a.only, "quick": a.quick}
    root, g = tree(work, a.entries, a.seed, a.data)
    scratch = work / "snaps"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    roles: dict[str, int] = {}
    for p in g["layers"]:
        roles[p["role"]] = roles.get(p["role"], 0) + 1
    res["tree"] = {"entries": g["entries"], "layer_dirs": len(g["layers"]) + 1, "roles": roles,
                   "images": g["images"], "containers": g["containers"], "gen_seconds": g["seconds"],
                   "du_bytes": int(subprocess.run(["du", "-sx", "-B1", str(root)], capture_output=True, text=True,
                                                  check=True).stdout.split()[0])}
    entries = g["entries"]
    base = work / "base-snapshot"

    print("warm (page cache filled by a first du):", flush=True)
    subprocess.run(du_cmd(root), capture_output=True, check=True)
    res["warm"] = alternate(root, scratch, rounds, cold=False, keep=base)
    if a.only == "memory":
        return finish(a, res, work)
    if cold:
        print("cold (page cache dropped before each run):", flush=True)
        res["cold"] = alternate(root, scratch, rounds, cold=True)
    print("default priority (nice 19, idle I/O class), one warm and one cold run:", flush=True)
    res["default_priority"] = {"warm": measure(snapper_cmd(root, scratch / "nice-w", "--no-base"))}
    if cold:
        res["default_priority"]["cold"] = measure(snapper_cmd(root, scratch / "nice-c", "--no-base"), cold=True)
    shutil.rmtree(scratch / "nice-w", ignore_errors=True)
    shutil.rmtree(scratch / "nice-c", ignore_errors=True)

    sweep = [int(x) for x in a.sweep.split(",") if x] if not a.quick else []
    res["sweep"] = []
    for threads in sweep:
        row: dict[str, Any] = {"threads": threads}
        for c in ((False, True) if cold else (False,)):
            snap = scratch / f"sweep-{threads}-{c}"
            row["cold" if c else "warm"] = measure(snapper_cmd(root, snap, "--no-base", "--no-nice"), cold=c,
                                                   env={"SNAPPER_WALK_THREADS": str(threads)})
            shutil.rmtree(snap)
        print(f"  {threads} threads: " + ", ".join(f"{k} {v['wall_s']} s ({v['peak_rss_mb']} MB)"
                                                  for k, v in row.items() if k != "threads"), flush=True)
        res["sweep"].append(row)

    # Incremental: 1% new layer dirs (a new image of median-sized app layers) since the base snapshot.
    app_sizes = sorted(p["entries"] for p in g["layers"] if p["role"] == "app") or [50]
    n_new = max(1, math.ceil(0.01 * (len(g["layers"]) + 1)))
    budget = app_sizes[len(app_sizes) // 2]
    before = set(os.listdir(root / "overlay2"))
    new = gen.add_layers(root, n_new, a.seed + 1, budget)
    print(f"incremental: {n_new} new layer dirs of ~{budget} entries each, base {base.name}:", flush=True)
    try:
        res["incremental"] = {"new_dirs": n_new, "entries_per_new_dir": budget,
                              "warm": alternate(root, scratch, rounds, False, ("--base", str(base), "--no-nice"),
                                                python=False, tools=False)}
        if cold:
            res["incremental"]["cold"] = alternate(root, scratch, rounds, True, ("--base", str(base), "--no-nice"),
                                                   python=False, tools=False)
    finally:
        _remove_added(root, before, new)

    res["parquet"] = _manifest_summary(base) | {"bytes_per_entry": round(
        (base / "files.parquet").stat().st_size / entries, 2)}
    print("DuckDB leaks query:", flush=True)
    res["duckdb"] = {"rows": entries, "leaks": time_leaks(base)}
    print(f"  {entries:,} rows: {res['duckdb']['leaks']['median_s']} s", flush=True)
    if a.blow_up > 1 and not a.quick:
        big = blow_up(base, a.blow_up, scratch / "big")
        res["duckdb_big"] = {"rows": entries * a.blow_up, "leaks": time_leaks(big), "how": (
            f"the {entries:,}-row snapshot with its files rows repeated {a.blow_up}x (paths prefixed), "
            "other tables unchanged")}
        print(f"  {entries * a.blow_up:,} rows: {res['duckdb_big']['leaks']['median_s']} s", flush=True)
        shutil.rmtree(big)
    return finish(a, res, work)


def _remove_added(root: Path, before: set[str], new: list[str]) -> None:
    """Undo gen.add_layers: the new dirs, their l/ links, chains and the image config."""
    overlay = root / "overlay2"
    for name in set(os.listdir(overlay)) - before:
        shutil.rmtree(overlay / name)
    for link in (overlay / "l").iterdir():
        if link.is_symlink() and os.readlink(link).split("/")[1] in new:
            link.unlink()
    layerdb = root / "image" / "overlay2" / "layerdb" / "sha256"
    for d in layerdb.iterdir():
        if (d / "cache-id").read_text() in new:
            shutil.rmtree(d)
    content = root / "image" / "overlay2" / "imagedb" / "content" / "sha256"
    for f in content.iterdir():
        if json.loads(f.read_bytes()).get("created") == gen.ADDED_IMAGE_CREATED:
            f.unlink()


def finish(a: argparse.Namespace, res: dict[str, Any], work: Path) -> int:
    res["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    shutil.rmtree(work / "snaps", ignore_errors=True)
    if a.clean:
        shutil.rmtree(work)
    if a.results:
        out = Path(a.results)
        out.mkdir(parents=True, exist_ok=True)
        name = f"{res['entries_requested']}{'-quick' if a.quick else ''}.json"
        (out / name).write_text(json.dumps(res, indent=1))
        if out == OUT:
            write_results(OUT, RESULTS)
    print(summary(res))
    return 0


# --- RESULTS.md ---------------------------------------------------------------------------------------------------

def _ratio(rows: list[dict[str, Any]], who: str = "snapper") -> float:
    return round(median_of(rows, who, "wall_s") / median_of(rows, "du", "wall_s"), 2)


def _others(rows: list[dict[str, Any]]) -> list[str]:
    """Who else ran in these rounds (python walk, gdu, fd)."""
    return [k for k in ("python", "gdu", "fd") if rows and k in rows[0]]


def summary(res: dict[str, Any]) -> str:
    n = res["tree"]["entries"]
    lines = [f"{n:,} entries ({res['tree']['layer_dirs']} overlay2 entries), {res['date']}"]
    for key in ("warm", "cold"):
        if res.get(key):
            rows = res[key]
            s = median_of(rows, "snapper", "wall_s")
            lines.append(f"  {key}: du {median_of(rows, 'du', 'wall_s'):.2f} s, snapper {s:.2f} s -> "
                         f"x{_ratio(rows)}, {n / s:,.0f} files/s, peak RSS "
                         f"{max(r['snapper']['peak_rss_mb'] for r in rows)} MB"
                         + "".join(f"; {k} x{_ratio(rows, k)}" for k in _others(rows)))
    inc = res.get("incremental") or {}
    for key in ("warm", "cold"):
        if inc.get(key):
            lines.append(f"  incremental {key}: x{_ratio(inc[key])} of du "
                         f"({median_of(inc[key], 'snapper', 'wall_s'):.2f} s)")
    if res.get("parquet"):
        lines.append(f"  Parquet {res['parquet']['bytes_per_entry']} bytes/entry")
    if res.get("duckdb"):
        lines.append(f"  leaks query {res['duckdb']['leaks']['median_s']} s at {res['duckdb']['rows']:,} rows")
    if res.get("duckdb_big"):
        lines.append(f"  leaks query {res['duckdb_big']['leaks']['median_s']} s at {res['duckdb_big']['rows']:,} rows")
    return "\n".join(lines)


def _fmt_run(r: dict[str, Any]) -> str:
    return f"{r['wall_s']:.2f} | {r['user_s'] + r['sys_s']:.2f} | {r['peak_rss_mb']:.0f}"


def write_results(out: Path, dest: Path) -> None:
    """RESULTS.md from every results JSON in ``out`` (the full run of the largest size first)."""
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    full = sorted((r for r in runs if r["only"] == "all" and not r["quick"]),
                  key=lambda r: -r["entries_requested"])
    mem = [r for r in runs if r["only"] == "memory"]
    if not full:
        return
    main_run = full[0]
    m = main_run["machine"]
    n = main_run["tree"]["entries"]
    md = [
        "# snapper collect vs `du -sx`",
        "",
        "Generated by `bench/run.py` (do not edit by hand; rerun it). Tree: `bench/gen.py` (see its docstring).",
        "",
        f"- date: {main_run['date']}",
        f"- command: `{main_run['command']}`" + "".join(f", `{r['command']}`" for r in mem),
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB RAM, Linux {m['kernel']}, {m['fs']}, "
        f"disk {m['disk']}; Python {m['python']}, pyarrow {m['pyarrow']}, duckdb {m['duckdb']}, {m['du']}; "
        f"snapper {m['git']}",
        f"- load average at start / end: {' '.join(m['loadavg_start'])} / {' '.join(m.get('loadavg_end', []))} "
        "(a shared machine: other jobs ran meanwhile; compare ratios from one run, not absolute times)",
        f"- tree: {n:,} entries in {main_run['tree']['layer_dirs']} overlay2 entries "
        f"({main_run['tree']['roles']}), {main_run['tree']['images']} images, {main_run['tree']['containers']} "
        f"containers, {main_run['tree']['du_bytes'] / 2**30:.1f} GiB",
        "",
    ]
    md += targets_table(main_run, mem)
    for key, title in (("warm", "Warm page cache"), ("cold", "Cold page cache (dropped before every run)")):
        rows = main_run.get(key)
        if not rows:
            continue
        oth = _others(rows)
        names = {"python": "snapper, Python walk", "gdu": "gdu -npsx", "fd": "fd -u"}
        md += ["", f"## {title}", "",
               "| round | order | du wall s | du CPU s | snapper wall s | snapper CPU s | snapper peak RSS MB "
               "| ratio | files/s |" + "".join(f" {names[k]} wall s | ratio |" for k in oth),
               "|---|---|---|---|---|---|---|---|---|" + "---|---|" * len(oth)]
        for r in rows:
            md.append(f"| {r['round']} | {r['order']} | {r['du']['wall_s']:.2f} | "
                      f"{r['du']['user_s'] + r['du']['sys_s']:.2f} | {r['snapper']['wall_s']:.2f} | "
                      f"{r['snapper']['user_s'] + r['snapper']['sys_s']:.2f} | {r['snapper']['peak_rss_mb']:.0f} | "
                      f"{r['ratio']:.2f} | {n / r['snapper']['wall_s']:,.0f} |"
                      + "".join(f" {r[k]['wall_s']:.2f} | {r[f'ratio_{k}']:.2f} |" for k in oth))
    dp = main_run.get("default_priority")
    if dp:
        md += ["", "## Default priority (nice 19, idle I/O class)", "",
               "| cache | wall s | CPU s | peak RSS MB |", "|---|---|---|---|"]
        for k, v in dp.items():
            md.append(f"| {k} | {_fmt_run(v)} |")
    if main_run.get("sweep"):
        key = "threads" if "threads" in main_run["sweep"][0] else "jobs"
        md += ["", "## Native walk threads (SNAPPER_WALK_THREADS)" if key == "threads" else
               "## --jobs (walk worker processes)", "",
               f"| {key} | warm wall s | warm CPU s | warm peak RSS MB | cold wall s | cold CPU s | cold peak RSS MB |",
               "|---|---|---|---|---|---|---|"]
        for r in main_run["sweep"]:
            cold = _fmt_run(r["cold"]) if "cold" in r else "- | - | -"
            md.append(f"| {r[key]} | {_fmt_run(r['warm'])} | {cold} |")
    inc = main_run.get("incremental")
    if inc:
        md += ["", f"## Incremental (`--base`): {inc['new_dirs']} new layer dirs of ~{inc['entries_per_new_dir']} "
               "entries", "", "| cache | round | du wall s | snapper wall s | ratio | reused / walked dirs | "
               "peak RSS MB |", "|---|---|---|---|---|---|---|"]
        for key in ("warm", "cold"):
            for r in inc.get(key, []):
                i = r["snapper"]["manifest"]["incremental"]
                md.append(f"| {key} | {r['round']} | {r['du']['wall_s']:.2f} | {r['snapper']['wall_s']:.2f} | "
                          f"{r['ratio']:.3f} | {i['reused_layers']} / {i['walked_layers']} | "
                          f"{r['snapper']['peak_rss_mb']:.0f} |")
    pq_ = main_run.get("parquet")
    if pq_:
        md += ["", "## Snapshot size (`--hash none`)", "",
               f"files.parquet {pq_['files_parquet_bytes']:,} bytes for {pq_['rows']:,} rows = "
               f"**{pq_['bytes_per_entry']} bytes/entry**; whole snapshot {pq_['snapshot_bytes']:,} bytes."]
    if main_run.get("duckdb"):
        md += ["", "## DuckDB: `snapper.verdict.leaks` (median of 3)", "", "| files rows | seconds | how |",
               "|---|---|---|",
               f"| {main_run['duckdb']['rows']:,} | {main_run['duckdb']['leaks']['median_s']} | the benchmark "
               "snapshot |"]
        big = main_run.get("duckdb_big")
        if big:
            md.append(f"| {big['rows']:,} | {big['leaks']['median_s']} | {big['how']} |")
    for r in mem:
        md += ["", f"## Memory at {r['tree']['entries']:,} entries (`--data {r['data']}`)", "",
               "| round | du wall s | snapper wall s | ratio | snapper peak RSS MB (sum over the tree) |",
               "|---|---|---|---|---|"]
        for w in r["warm"]:
            md.append(f"| {w['round']} | {w['du']['wall_s']:.2f} | {w['snapper']['wall_s']:.2f} | {w['ratio']:.2f} "
                      f"| {w['snapper']['peak_rss_mb']:.0f} |")
    notes = HERE / "NOTES.md"
    if notes.exists():
        md += ["", notes.read_text().strip()]
    dest.write_text("\n".join(md) + "\n")


def targets_table(r: dict[str, Any], mem: list[dict[str, Any]]) -> list[str]:
    out = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]

    def row(name: str, value: str, ok: bool | None) -> None:
        out.append(f"| {name} | {value} | {'yes' if ok else ('no' if ok is not None else 'n/a')} |")

    if r.get("cold"):
        x = _ratio(r["cold"])
        row("cold collect wall <= 0.5 x du -sx", f"x{x} ({median_of(r['cold'], 'snapper', 'wall_s'):.2f} s vs "
            f"{median_of(r['cold'], 'du', 'wall_s'):.2f} s)", x <= 0.5)
    x = _ratio(r["warm"])
    row("warm collect wall <= 1.0 x du -sx", f"x{x} ({median_of(r['warm'], 'snapper', 'wall_s'):.2f} s vs "
        f"{median_of(r['warm'], 'du', 'wall_s'):.2f} s)", x <= 1.0)
    for key in ("warm", "cold"):
        if "python" in _others(r.get(key, [])):
            row(f"(the same, {key}, with the Python walk: SNAPPER_NATIVE=0)",
                f"x{_ratio(r[key], 'python')} ({median_of(r[key], 'python', 'wall_s'):.2f} s)", None)
    inc = r.get("incremental") or {}
    for key in ("warm", "cold"):
        if inc.get(key):
            x = _ratio(inc[key])
            row(f"incremental, 1% new dirs, {key}: <= 0.05 x du -sx", f"x{x} "
                f"({median_of(inc[key], 'snapper', 'wall_s'):.2f} s)", x <= 0.05)
    peak = max(w["snapper"]["peak_rss_mb"] for w in r["warm"] + r.get("cold", []))
    row(f"peak RSS <= 256 MB at {r['tree']['entries']:,} entries", f"{peak:.0f} MB (default threads / --jobs)",
        peak <= 256)
    for m in mem:
        p = max(w["snapper"]["peak_rss_mb"] for w in m["warm"])
        row(f"peak RSS <= 256 MB at {m['tree']['entries']:,} entries", f"{p:.0f} MB", p <= 256)
    if r.get("parquet"):
        b = r["parquet"]["bytes_per_entry"]
        row("Parquet <= 40 bytes/entry (--hash none)", f"{b}", b <= 40)
    return out


if __name__ == "__main__":
    sys.exit(main())
