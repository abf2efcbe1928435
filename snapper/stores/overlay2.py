"""overlay2: Docker's graph driver. Its layer dirs are ``<data root>/overlay2/<id>``, walked into files (committed
dirs whose top-level signature is unchanged are copied from a base snapshot instead, ``snapper.incremental``),
with the ``l/`` short links and one ``layers`` row per entry. Its metadata (layerdb, imagedb, containers,
BuildKit) is read by the collect for every store; its verdicts are ``queries/edges.sql`` -> ``reach.sql`` ->
``verdicts.sql``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from snapper import incremental
from snapper.errors import SnapshotError
from snapper.fileswriter import _BackgroundWriter, _reference_footer
from snapper.metadata import Rows
from snapper.metadata.layerdb import name_class
from snapper.metadata.overlay import list_entries, read_links, resolve_lower
from snapper.schema import LAYER_SIGNATURES, LAYERS, LINKS
from snapper.stores import CollectContext
from snapper.walk import LayerResult, show_bytes
from snapper.walkpool import walk_layers


class Overlay2Store:
    name = "overlay2"

    def collect(self, ctx: CollectContext) -> dict[str, Any]:
        t = time.time()
        overlay_dir = os.fsencode(str(ctx.root / "overlay2"))
        link_rows, e = read_links(overlay_dir)
        ctx.errors += e
        ctx.writer.write_rows(LINKS, link_rows)
        names, e = list_entries(overlay_dir)
        ctx.errors += e
        links_by_short = {r["short_id"]: r["target_layer_id"] for r in link_rows
                          if r["well_formed"] and not r["dangling"]}
        plan = incremental.plan(ctx.base, ctx.base_reason, overlay_dir, names, ctx.chains, links_by_short,
                                ctx.mounted_layers)
        copied = [0, 0]  # rows decoded and written again, rows copied as bytes
        raw_groups: list[int] = []
        decode_groups: list[int] = []
        if plan.base is not None and plan.reused:
            try:
                raw_groups, decode_groups, copied[1] = incremental.reuse_groups(plan.base, set(plan.reused),
                                                                                _reference_footer())
            except (OSError, pa.ArrowException) as e:  # a damaged base: walk everything instead
                plan = incremental.plan(None, f"{plan.base.path}: files table unreadable ({e})", overlay_dir, names,
                                        ctx.chains, links_by_short, ctx.mounted_layers)
            if plan.base is not None and raw_groups:
                ctx.writer.splice_from = (plan.base.path / "files.parquet", raw_groups)
        reused = set(plan.reused)
        ctx.writer.write_rows(LAYER_SIGNATURES, [{"layer_id": k, "top_signature": v}
                                                 for k, v in plan.signatures.items()])
        ctx.progress.start(len(names))
        results: dict[str, LayerResult] = dict(plan.reused)
        for res in plan.reused.values():
            ctx.progress.advance(res.file_count, res.allocated_bytes)

        def side() -> Iterator[pa.RecordBatch]:
            if plan.base is not None:
                try:
                    for rb in incremental.copy_rows(plan.base, reused, decode_groups):
                        copied[0] += rb.num_rows
                        yield rb
                except (OSError, pa.ArrowException) as e:
                    raise SnapshotError(str(plan.base.path), f"files table unreadable while copying rows ({e})",
                                        "collect again with --no-base") from e

        walk_stats: dict[str, int] = {}
        with _BackgroundWriter(ctx.writer) as files_out:
            for kind, payload, extra in walk_layers(overlay_dir, plan.walk, ctx.hash_mode, ctx.mount_points, ctx.jobs,
                                                    side(), walk_stats):
                if kind == "batch":
                    files_out.put(payload, payload.column(0).dictionary[0].as_py() in plan.stable)
                elif kind == "layer":
                    results[payload.layer_id] = payload
                    ctx.errors += extra
                    ctx.progress.advance(payload.file_count, payload.allocated_bytes)
                else:
                    raise RuntimeError(f"walk failed: {payload}")
        ctx.durations["walk_s"] = round(time.time() - t, 3)
        expected = sum(r.file_count for r in plan.reused.values())
        if plan.base is not None and sum(copied) != expected:
            raise RuntimeError(f"base {plan.base.path}: {sum(copied)} files rows to copy, its layers rows say "
                               f"{expected}")
        layer_rows: Rows = []
        for name in names:
            lid = show_bytes(name)[0]
            res = results.get(lid) or LayerResult(lid, walk_status="error")
            row = res.as_dict()
            markers = row.pop("markers")
            lower_ids, unresolved = resolve_lower(res.lower, links_by_short)
            row.update({
                "name_class": "links" if lid == "l" else name_class(lid),
                "has_diff": markers.get("diff", False), "has_link": markers.get("link", False),
                "has_lower": markers.get("lower", False), "has_work": markers.get("work", False),
                "has_merged": markers.get("merged", False), "has_committed": markers.get("committed", False),
                "lower_ids": lower_ids, "lower_unresolved": unresolved, "mounted": lid in ctx.mounted_layers,
            })
            layer_rows.append(row)
        ctx.writer.write_rows(LAYERS, layer_rows)
        return {"overlay2_entries": len(names), "incremental": plan.manifest(sum(copied), copied[1]),
                "walk": walk_stats}
