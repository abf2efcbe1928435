"""Layer stores: each module here is one store a data root can hold, and says where its layer dirs are, how
they are walked, which metadata it reads and which tables it writes. The SQL that decides its verdicts is in
``queries/`` (overlay2: edges, reach, verdicts; containerd: ctr_leases, ctr_reach, ctr_verdicts), and
``leaks``/``reconciliation`` take every store's verdicts.

``snapper.collect`` reads what every store shares (mounts, containers, images, BuildKit records) and then runs
each store of :data:`STORES` on a :class:`CollectContext`; a store returns the facts it adds to the manifest.
A new store is one module here, its tables in ``snapper.schema``, its queries, and one line in ``STORES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from snapper import incremental
from snapper.docker_root import DaemonProcess, Layout
from snapper.fileswriter import _SnapshotWriter
from snapper.metadata import Rows


class Progress(Protocol):
    def start(self, total_layers: int) -> None: ...
    def advance(self, files: int, nbytes: int) -> None: ...


@dataclass
class CollectContext:
    """What a store's collect gets: the writer, the data root and its facts, and the shared metadata."""

    writer: _SnapshotWriter
    root: Path
    layout: Layout
    daemons: list[DaemonProcess]
    daemon_started_ns: int | None
    hash_mode: str
    jobs: int
    progress: Progress
    mount_points: frozenset[bytes]  # mount points under the data root (the walk never crosses them)
    mounted_layers: set[str]  # overlay2 dirs an overlay mount uses
    chains: Rows  # layerdb chains (overlay2's incremental rules need their cache-ids)
    base: incremental.Base | None
    base_reason: str
    containerd_roots: tuple[str, ...] = ()
    errors: Rows = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)


class Store(Protocol):
    name: str

    def collect(self, ctx: CollectContext) -> dict[str, Any]:
        """Write this store's tables; return the facts it adds to the manifest."""
        ...


def stores() -> tuple[Store, ...]:
    from snapper.stores.containerd import ContainerdStore
    from snapper.stores.overlay2 import Overlay2Store

    return (Overlay2Store(), ContainerdStore())
