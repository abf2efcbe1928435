"""The one list of leak mechanisms: every name the verdict queries can give, with its store and a summary.

``queries/verdicts.sql`` (overlay2) and ``queries/ctr_verdicts.sql`` (containerd) assign them; metrics, the
report and the README list them from here, and a test checks that the SQL gives no name missing here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mechanism:
    name: str
    store: str  # overlay2 | containerd
    summary: str


MECHANISMS: tuple[Mechanism, ...] = (
    Mechanism("interrupted-layer-create", "overlay2",
              "dockerd killed during pull/load/import/commit/legacy build: a dir no metadata names"),
    Mechanism("interrupted-image-create", "overlay2",
              "the complete lower layers of a pull/load/import/commit that died before the image config"),
    Mechanism("partial-delete-remnant", "overlay2", "what an interrupted layer delete left behind"),
    Mechanism("interrupted-image-delete", "overlay2", "layer chains an interrupted image delete released"),
    Mechanism("pinned-by-orphan-mount", "overlay2", "layers kept only by the RW layer of a vanished container"),
    Mechanism("orphan-container-mount", "overlay2", "the RW/init layers of a container whose config is gone"),
    Mechanism("buildkit-snapshot-without-record", "overlay2", "a BuildKit snapshot no live record reaches"),
    Mechanism("stray-dir", "overlay2", "a dir under overlay2/ that no engine would create"),
    Mechanism("ctr-dead-lease", "containerd",
              "held only by the lease of an operation that died with its daemon (crash mid-load/pull/commit/build)"),
    Mechanism("ctr-orphan-writable-snapshot", "containerd",
              "a container's writable snapshot held by a lease named after a container that no longer exists"),
    Mechanism("ctr-unreferenced", "containerd", "no GC root reaches it: freed at the next containerd GC"),
    Mechanism("ctr-expired-lease", "containerd", "held only by leases whose gc.expire passed: freed at the next GC"),
    Mechanism("ctr-dir-without-record", "containerd", "a snapshots/<n> dir with no snapshotter record"),
    Mechanism("ctr-record-without-meta", "containerd", "a snapshotter record meta.db does not know"),
    Mechanism("ctr-blob-without-meta", "containerd", "a content blob in no namespace of meta.db"),
    Mechanism("ctr-ingest-without-meta", "containerd", "an ingest dir with no ingest record: an interrupted write"),
)

NAMES: tuple[str, ...] = tuple(m.name for m in MECHANISMS)
