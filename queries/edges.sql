-- name: edges
-- description: every reference edge of the graphdriver store (image, container, mount, chain, dir, BuildKit record and key), per snapshot
-- why: reachability is computed from these edges, never read from reference counts (they are not on disk)
-- params: none
-- view: true
WITH
image_chain AS (
    SELECT snap, 'image' AS src_kind, image_id AS src, 'chain' AS dst_kind, unnest(chain_ids) AS dst,
           'rootfs.diff_ids' AS label
    FROM images
),
container_mount AS (
    SELECT snap, 'container', container_id, 'mount', container_id, 'layerdb/mounts' FROM containers
),
mount_refs AS (
    SELECT snap, 'mount', name, 'dir', mount_id, 'mount-id' FROM mounts WHERE mount_id IS NOT NULL
    UNION ALL
    SELECT snap, 'mount', name, 'dir', init_id, 'init-id' FROM mounts WHERE init_id IS NOT NULL
    UNION ALL
    SELECT snap, 'mount', name, 'chain', parent, 'parent' FROM mounts WHERE parent IS NOT NULL
),
chain_refs AS (
    SELECT snap, 'chain', chain_id, 'chain', parent, 'parent' FROM layerdb
    WHERE NOT removing AND chain_id IS NOT NULL AND parent IS NOT NULL
    UNION ALL
    SELECT snap, 'chain', chain_id, 'dir', cache_id, 'cache-id' FROM layerdb
    WHERE NOT removing AND chain_id IS NOT NULL AND cache_id IS NOT NULL
),
dir_lower AS (
    SELECT snap, 'dir', layer_id, 'dir', lower_id, 'lower' FROM (
        SELECT snap, layer_id, unnest(lower_ids) AS lower_id FROM layers WHERE lower_ids IS NOT NULL
    ) WHERE lower_id IS NOT NULL
),
record_refs AS (
    SELECT snap, 'bk_record', record_id, 'bk_key', snapshot_key, 'cache.snapshot' FROM buildkit_records
    UNION ALL
    SELECT snap, 'bk_record', record_id, 'bk_record', equal_mutable, 'cache.equalMutable' FROM buildkit_records
    WHERE equal_mutable IS NOT NULL
    UNION ALL
    SELECT snap, 'bk_record', record_id, 'bk_record', parent, 'cache.parent' FROM buildkit_records
    WHERE parent IS NOT NULL
    UNION ALL
    SELECT snap, 'bk_record', record_id, 'chain', chain_id, 'cache.chainID' FROM buildkit_records
    WHERE chain_id IS NOT NULL
),
key_refs AS (
    -- the graph dir of a key is its `committed` value, else the key itself; sha256: keys are layer-store chains
    SELECT snap, 'bk_key', key, 'dir', coalesce(committed, key), 'snapshots.db graph dir'
    FROM buildkit_snapshots WHERE key NOT LIKE 'sha256:%'
    UNION ALL
    SELECT snap, 'bk_key', key, 'chain', chain_id, 'snapshots.db chainid' FROM buildkit_snapshots
    WHERE chain_id IS NOT NULL
    UNION ALL
    SELECT snap, 'bk_key', key, 'bk_key', parent, 'snapshots.db parent'
    FROM buildkit_snapshots WHERE parent IS NOT NULL AND parent <> ''
    UNION ALL
    -- a record key with no bucket in snapshots.db: its dir, if any, is named by the key
    SELECT r.snap, 'bk_key', r.snapshot_key, 'dir', r.snapshot_key, 'key = graph dir'
    FROM buildkit_records r
    WHERE r.snapshot_key NOT LIKE 'sha256:%'
      AND NOT EXISTS (SELECT 1 FROM buildkit_snapshots s WHERE s.snap = r.snap AND s.key = r.snapshot_key)
    UNION ALL
    SELECT snap, 'bk_key', k, 'chain', k, 'layer-store key'
    FROM (SELECT snap, snapshot_key AS k FROM buildkit_records UNION SELECT snap, key FROM buildkit_snapshots
          UNION SELECT snap, parent FROM buildkit_snapshots)
    WHERE k LIKE 'sha256:%'
),
final AS (
    SELECT * FROM image_chain
    UNION ALL SELECT * FROM container_mount
    UNION ALL SELECT * FROM mount_refs
    UNION ALL SELECT * FROM chain_refs
    UNION ALL SELECT * FROM dir_lower
    UNION ALL SELECT * FROM record_refs
    UNION ALL SELECT * FROM key_refs
)
SELECT DISTINCT snap, src_kind, src, dst_kind, dst, label
FROM final
ORDER BY snap, src_kind, src, dst_kind, dst, label;
