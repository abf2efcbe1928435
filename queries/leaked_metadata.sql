-- name: leaked_metadata
-- description: leaked metadata that holds no overlay2 dir of its own: unreachable layer chains, orphan mounts, write-sets, dangling l/ links, stale mounts, BuildKit executor residue, dormant stores, containerd leases of dead operations
-- why: these pin layers, confuse the daemon or leak mounts; each explains part of the disk the daemon cannot see
-- params: grace_seconds BIGINT = 3600
-- requires: verdicts, ctr_leases
WITH
facts AS (
    SELECT snap,
           coalesce(TRY_CAST(json_extract_string(manifest, '$.daemon.running') AS BOOLEAN), true) AS daemon_running,
           TRY_CAST(json_extract_string(manifest, '$.started_ns') AS BIGINT) AS t0
    FROM manifest
),
chains AS (
    SELECT l.snap, 'unreachable-chain' AS kind, 'image/overlay2/layerdb/sha256/' || l.dir_name AS object,
           CASE WHEN l.removing THEN 'interrupted image delete: removed at the next clean daemon shutdown'
                WHEN r.root_kind = 'orphan-mount' THEN 'pinned only by ' || r.root_label
                ELSE 'no image, container or build-cache record references chain ' || l.chain_id END AS detail,
           l.removing AS self_heals, l.cache_id AS layer_id
    FROM layerdb l
    LEFT JOIN reach r ON r.snap = l.snap AND r.kind = 'chain' AND r.node = l.chain_id AND NOT l.removing
    WHERE l.removing OR r.node IS NULL OR NOT r.live
),
orphan_mounts AS (
    SELECT m.snap, CASE WHEN m.name_class = 'buildkit25' THEN 'orphan-buildkit-mount' ELSE 'orphan-mount' END,
           'image/overlay2/layerdb/mounts/' || m.name,
           CASE WHEN m.name_class = 'buildkit25'
                THEN 'BuildKit transient mount with no build running; pins chain ' || coalesce(m.parent, '-')
                ELSE 'containers/' || m.name || ' does not exist; pins chain ' || coalesce(m.parent, '-') END,
           false, m.mount_id
    FROM mounts m JOIN facts f ON f.snap = m.snap
    WHERE (m.name_class = 'buildkit25' AND NOT f.daemon_running)
       OR (m.name_class <> 'buildkit25'
           AND NOT EXISTS (SELECT 1 FROM containers c WHERE c.snap = m.snap AND c.container_id = m.name))
),
write_sets_left AS (
    SELECT w.snap, 'write-set', 'image/overlay2/layerdb/tmp/' || w.name,
           'interrupted layer registration (' || w.files::VARCHAR || ' files, ' || w.bytes::VARCHAR || ' bytes)',
           false, NULL
    FROM write_sets w JOIN facts f ON f.snap = w.snap
    WHERE NOT f.daemon_running OR f.t0 - w.ctime_ns >= getvariable('grace_seconds') * 1000000000::BIGINT
),
dangling AS (
    SELECT snap, 'dangling-link', 'overlay2/l/' || short_id,
           'points to ' || coalesce(target, '?') || ', which does not exist', false, target_layer_id
    FROM links WHERE dangling
),
stale_mounts AS (
    SELECT mi.snap, 'stale-mount', mi.rel_path,
           mi.fstype || ' mount on ' || CASE WHEN v.verdict IS NULL THEN 'a dir that is gone'
                                             ELSE 'a ' || v.verdict || ' dir' END,
           false, mi.layer_id
    FROM mountinfo mi
    JOIN facts f ON f.snap = mi.snap
    LEFT JOIN verdicts v ON v.snap = mi.snap AND v.layer_id = mi.layer_id
    WHERE mi.rel_path <> '.'
      AND (mi.rel_path LIKE 'buildkit/executor/%' AND NOT f.daemon_running
           OR mi.layer_id IS NOT NULL AND coalesce(v.verdict, 'leaked') IN ('leaked', 'vanished')
           OR mi.layer_id IS NULL AND mi.rel_path LIKE 'overlay2/%')
),
residue_left AS (
    SELECT r.snap,
           CASE r.kind WHEN 'buildkit_executor' THEN 'buildkit-executor-residue'
                       WHEN 'dormant_driver_tree' THEN 'dormant-store' ELSE r.kind END,
           r.path,
           CASE r.kind WHEN 'buildkit_executor' THEN 'runc bundle of an interrupted BuildKit RUN step'
                       WHEN 'dormant_driver_tree'
                           THEN 'tree of a storage driver that is not active (' || r.files::VARCHAR || ' entries)'
                       ELSE 'daemon scratch space, wiped at the next start' END,
           r.kind = 'daemon_tmp', NULL
    FROM residue r JOIN facts f ON f.snap = r.snap
    WHERE r.kind <> 'buildkit_executor' OR NOT f.daemon_running
),
containerd_dead_leases AS (
    -- a lease of an operation that died with its daemon: a GC root nobody will delete (its dirs and blobs are
    -- in leaks as ctr-dead-lease); deleting it through containerd frees them
    SELECT snap, 'containerd-dead-lease', store || ': lease ' || namespace || '/' || lease_id,
           reason || '; frees itself: ' || self_heal, expire_ns IS NOT NULL, NULL
    FROM ctr_leases WHERE class = 'dead'
),
final AS (
    SELECT * FROM chains
    UNION ALL SELECT * FROM orphan_mounts
    UNION ALL SELECT * FROM write_sets_left
    UNION ALL SELECT * FROM dangling
    UNION ALL SELECT * FROM stale_mounts
    UNION ALL SELECT * FROM residue_left
    UNION ALL SELECT * FROM containerd_dead_leases
)
SELECT snap, kind, object, detail, self_heals, layer_id FROM final ORDER BY snap, kind, object;
