"""snapper watch: client command parsing, engine events, atomic Parquet output, the event stream client."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from snapper.metadata.api import EngineAPI
from snapper.watch import Recorder, event_row, parse_client, read_events

SOCK = "/tmp/snp-x/s.sock"


def test_parse_client_operation_and_subject_never_option_values() -> None:
    d = ["/usr/bin/docker", "-H", f"unix://{SOCK}"]
    assert parse_client([*d, "load", "-i", "/tmp/big2.tar"], SOCK) == ("load", "/tmp/big2.tar")
    assert parse_client([*d, "image", "pull", "--platform", "linux/amd64", "alpine:3"], SOCK) == ("pull", "alpine:3")
    assert parse_client([*d, "build", "--build-arg", "TOKEN=s3cret", "-t", "app:1", "."], SOCK) == ("build", "app:1")
    assert parse_client([*d, "build", "--build-arg=TOKEN=s3cret", "."], SOCK) == ("build", "")
    assert parse_client([*d, "commit", "-m", "msg", "abc123", "committed:1"], SOCK) == ("commit", "committed:1")
    assert parse_client([*d, "run", "-e", "PASSWORD=x", "--network", "none", "bb:base", "sh"], SOCK) == (
        "create", "bb:base")
    assert parse_client([*d, "system", "prune", "-af"], SOCK) == ("prune", "")
    assert parse_client([*d, "builder", "prune", "-af"], SOCK) == ("builder-prune", "")
    assert parse_client([*d, "ps"], SOCK) is None
    assert parse_client(["/usr/bin/docker", "-H", "unix:///other.sock", "load", "-i", "x"], SOCK) is None
    assert parse_client(["/usr/bin/docker", "load", "-i", "x"], SOCK) is None  # the default socket
    assert parse_client(["/usr/bin/docker", "load", "-i", "x"], SOCK, default_sock=SOCK) == ("load", "x")
    assert parse_client(["/bin/sh", "-c", "docker load"], SOCK) is None


def test_event_row_keeps_actor_and_name_only() -> None:
    ev = {"Type": "image", "Action": "load", "Actor": {"ID": "sha256:ab", "Attributes": {
        "name": "big1:1", "secret.label": "x"}}, "timeNano": 1796000000123456789}
    r = event_row(ev)
    assert r == {"time_ns": 1796000000123456789, "kind": "engine-event", "type": "image", "action": "load",
                 "subject": "sha256:ab", "detail": json.dumps({"name": "big1:1"})}


def test_flush_is_atomic_and_readable(tmp_path: Path) -> None:
    rec = Recorder(SOCK, tmp_path, tmp_path / "pid")
    rec.add(kind="daemon-death", pid=7, in_flight=["load /x.tar"])
    rec.flush()
    rec.add(kind="daemon-start", pid=8, version="26.1.5")
    rec.flush()
    files = list((tmp_path / "events").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events-") and files[0].suffix == ".parquet"
    assert pq.read_table(files[0]).num_rows == 2
    (tmp_path / "events" / ".events-x.parquet.tmp").write_bytes(b"torn")  # what a SIGKILL mid-write leaves
    t = read_events(tmp_path).to_pylist()
    assert [r["kind"] for r in t] == ["daemon-death", "daemon-start"] and t[0]["in_flight"] == ["load /x.tar"]


def _fake_engine(path: str, events: list[bytes]) -> socket.socket:
    """A unix socket answering GET /version and a chunked GET /events stream, like dockerd's."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            req = conn.recv(4096)
            if req.startswith(b"GET /version"):
                body = b'{"Version": "26.1.5"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                for e in events:
                    conn.sendall(f"{len(e):x}\r\n".encode() + e + b"\r\n")
                time.sleep(0.3)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_event_stream_and_version_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    ev = json.dumps({"Type": "image", "Action": "pull", "Actor": {"ID": "alpine:3"}, "timeNano": 5}).encode()
    srv = _fake_engine(path, [ev + b"\n"])
    try:
        assert EngineAPI(path).get("/version") == {"Version": "26.1.5"}
        rec = Recorder(path, tmp_path, tmp_path / "no-pid-file", poll_s=0.05)
        t = threading.Thread(target=rec.run, kwargs={"until": lambda: bool(read_rows(rec))})
        t.start()
        t.join(10)
        assert not t.is_alive()
    finally:
        srv.close()
        os.unlink(path)
    rows = read_events(tmp_path).to_pylist()
    assert [(r["kind"], r["action"], r["subject"]) for r in rows if r["kind"] == "engine-event"] == [
        ("engine-event", "pull", "alpine:3")]
    assert rows[-1]["kind"] == "recorder-stop"  # no daemon appeared: no start or loss is invented
    assert not [r for r in rows if r["kind"].startswith("daemon-")]


def read_rows(rec: Recorder) -> list[object]:
    with rec._lock:
        return [r for r in rec._rows if r.get("kind") == "engine-event"]


def test_rotation_starts_a_new_file_and_keeps_every_row(tmp_path: Path) -> None:
    now = [1_796_000_000_000_000_000]
    rec = Recorder(SOCK, tmp_path, tmp_path / "pid", rotate_s=600, clock=lambda: now[0])
    for i in range(3):
        rec.add(kind="engine-event", action=f"a{i}")
        rec.flush()
        now[0] += 400 * 10**9  # the second flush is 800 s after the first row: rotate after writing it
    rec.add(kind="engine-event", action="a3")
    rec.flush()
    files = sorted((tmp_path / "events").glob("events-*.parquet"))
    assert len(files) == 2
    assert [r["action"] for r in read_events(tmp_path).to_pylist()] == ["a0", "a1", "a2", "a3"]
