"""`snapper watch` against a real dockerd: a SIGKILL mid `docker load`, a restart, a SIGKILL of the recorder
itself, a clean stop; then `leaks --events` ties each dir the crash left to that death and to `load`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snapper import cause, verdict
from snapper.collect import CollectOptions, collect
from snapper.report import write_report
from snapper.watch import read_events

from .engine import Engine, EngineFactory
from .images import make_image_tar
from .test_leak_mechanisms import kill_when, layerdb

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _recorder(eng: Engine, out: Path, poll: str = "0.2") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "snapper.cli", "watch", "--socket", str(eng.sock), "--pidfile",
                             str(eng.pidfile), "--out", str(out), "--poll", poll, "--flush", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _cpu_rss(pid: int) -> tuple[float, int]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return cpu, rss * 1024


def _wait_for(pred: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_watch_ties_crash_made_leaks_to_the_death(fresh_engine: EngineFactory, big_tars: dict[str, Path],
                                                  tmp_path: Path) -> None:
    eng = fresh_engine(start=False)
    out = tmp_path  # events/ beside the snapshot: found without --events
    rec = _recorder(eng, out)  # before the daemon exists: it must wait for it
    t_rec = time.monotonic()
    eng.start()
    _wait_for(lambda: any(r["kind"] == "daemon-start" for r in read_events(out).to_pylist()))
    version = eng.version()

    before = set(os.listdir(eng.root / "overlay2"))
    wsets = layerdb(eng) / "tmp"

    def extracting() -> bool:
        try:
            new = set(os.listdir(eng.root / "overlay2")) - before - {"l"}
            return any(n.startswith("write-set-") for n in os.listdir(wsets)) and len(new) >= 2
        except FileNotFoundError:
            return False

    kill_when(eng, ["load", "-i", str(big_tars["big2"])], extracting)
    death_ns = time.time_ns()
    crash_dirs = set(os.listdir(eng.root / "overlay2")) - before - {"l"}
    eng.start()
    _wait_for(lambda: sum(r["kind"] == "daemon-start" for r in read_events(out).to_pylist()) >= 2)

    cpu, rss = _cpu_rss(rec.pid)
    elapsed = time.monotonic() - t_rec
    rec.send_signal(signal.SIGKILL)  # the recorder dies: what it wrote stays readable
    rec.wait(10)
    kinds = [r["kind"] for r in read_events(out).to_pylist()]
    assert "daemon-death" in kinds and "recorder-stop" not in kinds, kinds
    rec = _recorder(eng, out)
    _wait_for(lambda: sum(r["kind"] == "daemon-start" for r in read_events(out).to_pylist()) >= 3)

    # a second death, mid `docker rmi` of an image loaded before it: its layers leak (interrupted-image-delete)
    # and must be tied to this death, not to the earlier one after which they were born
    small = tmp_path / "small.tar"
    make_image_tar(small, "small:1", [1000, 1000, 30000], "w")  # the top layer is deleted first, for ~1 s
    eng.docker("load", "-i", str(small))
    gd = eng.inspect("image", "small:1")["GraphDriver"]["Data"]
    rmi_dirs = {Path(p).parent.name for p in [gd["UpperDir"], *gd["LowerDir"].split(":")]}
    sha = layerdb(eng) / "sha256"
    t_rmi = time.monotonic()  # crash once a poll (0.2 s) has surely seen the client: polling misses a client
    kill_when(eng, ["rmi", "small:1"], lambda: time.monotonic() - t_rmi > 0.4  # that lives < 1 poll
              and any(n.endswith("-removing") for n in os.listdir(sha)))
    rmi_death_ns = time.time_ns()
    eng.start()
    _wait_for(lambda: sum(r["kind"] == "daemon-start" for r in read_events(out).to_pylist()) >= 4)
    stop_ns = time.time_ns()
    eng.stop()  # clean: the pid file is removed
    _wait_for(lambda: any(r["kind"] == "daemon-stop" for r in read_events(out).to_pylist()))
    rec.send_signal(signal.SIGTERM)
    assert rec.wait(15) == 0, rec.stderr.read() if rec.stderr else ""

    events = read_events(out).to_pylist()
    deaths = [r for r in events if r["kind"] == "daemon-death"]
    stops = [r for r in events if r["kind"] == "daemon-stop"]
    assert len(deaths) == 2 and abs(deaths[0]["time_ns"] - death_ns) < 3e9, deaths
    assert abs(deaths[1]["time_ns"] - rmi_death_ns) < 3e9, deaths
    assert any(f.startswith("load ") for f in deaths[0]["in_flight"]), deaths[0]
    # never called a death; noticed when the pid file goes, at the end of the shutdown (which finishes the
    # interrupted delete first)
    assert len(stops) == 1 and stop_ns - 1e9 < stops[0]["time_ns"] < time.time_ns(), stops
    assert [r["version"] for r in events if r["kind"] == "daemon-start"] == [version] * 4

    snap = tmp_path / "snap"
    collect(CollectOptions(root=str(eng.root), out=str(snap), api=False, jobs=2))
    leaks = cause.with_causes(verdict.leaks(snap), snap, None).to_pylist()
    crash_made = [r for r in leaks if r["layer_id"] in crash_dirs | rmi_dirs]
    assert {r["layer_id"] for r in crash_made} & crash_dirs, "the load crash left no leaked dir"
    assert {r["layer_id"] for r in crash_made} & rmi_dirs, "the rmi crash left no leaked dir"
    right = []
    for r in crash_made:
        c = json.loads(r["cause"])
        at = cause.parse_iso(c["interrupted_at"])
        load = r["layer_id"] in crash_dirs
        want = (death_ns, "load", str(big_tars["big2"])) if load else (rmi_death_ns, "rmi", "small:1")
        right.append(c["interrupted_by"] == "death" and at is not None and abs(at - want[0]) < 3e9
                     and (c["operation"], c["subject"]) == want[1:])
    share = sum(right) / len(right)
    print(f"\ncrash-made leaked dirs with the right interrupted_at and operation: {sum(right)}/{len(right)} "
          f"({share:.0%}); recorder cpu {cpu:.2f} s over {elapsed:.1f} s, rss {rss / 2**20:.1f} MiB")
    assert share == 1.0, "\n".join(f"{r['layer_id'][:12]} {r['mechanism']} {r['created']} {r['cause']}"
                                    for r in crash_made)
    stop_at = cause.iso(stops[0]["time_ns"])
    assert not [r for r in leaks if json.loads(r["cause"])["interrupted_at"] == stop_at]
    page = write_report([snap], tmp_path / "r.html").read_text()
    assert "Leaked bytes by cause" in page and str(big_tars["big2"]) in page
    assert rss < 100 * 2**20


def _uss(pid: int) -> int:
    """Private bytes (what the recorder costs; RSS also counts the shared pages of libarrow)."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return sum(int(line.split()[1]) * 1024 for line in text.splitlines()
               if line.startswith(("Private_Clean:", "Private_Dirty:")))


def test_recorder_cost_under_churn(fresh_engine: EngineFactory, tmp_path: Path) -> None:
    """40 s of create/rm/tag churn (~hundreds of engine events) with the recorder on: its CPU share and memory."""
    from .engine import import_busybox

    eng = fresh_engine()
    import_busybox(eng)
    rec = _recorder(eng, tmp_path, poll="0.5")  # the default
    _wait_for(lambda: any(r["kind"] == "daemon-start" for r in read_events(tmp_path).to_pylist()))
    cpu0, _ = _cpu_rss(rec.pid)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 40:
        cid = eng.docker("create", "--network", "none", "bb:base").stdout.strip()
        eng.docker("tag", "bb:base", f"bb:t{n}")
        eng.docker("rm", cid)
        eng.docker("rmi", f"bb:t{n}")
        n += 1
    span = time.monotonic() - t0
    cpu1, rss = _cpu_rss(rec.pid)
    uss = _uss(rec.pid)
    rec.send_signal(signal.SIGTERM)
    assert rec.wait(15) == 0
    rows = read_events(tmp_path).to_pylist()
    events = [r for r in rows if r["kind"] == "engine-event"]
    clients = [r for r in rows if r["kind"] == "client-start"]
    share = (cpu1 - cpu0) / span
    print(f"\nrecorder under churn: {n} rounds, {len(events)} engine events and {len(clients)} client commands "
          f"in {span:.0f} s; cpu {cpu1 - cpu0:.2f} s = {share:.2%} of a core; rss {rss / 2**20:.1f} MiB, "
          f"private {uss / 2**20:.1f} MiB")
    # every event of create, tag, rm and untag; client commands of ~0.1 s are seen only when a poll falls in
    # them (a load, pull or build that a crash cuts lasts seconds)
    assert len(events) >= 4 * n and clients
    assert share < 0.05 and uss < 80 * 2**20
