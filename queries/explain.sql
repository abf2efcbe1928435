-- name: explain
-- description: why one overlay2 dir is live or not: its verdict, the chain of references from a root, every piece of metadata that names it, its timestamps and neighbouring write-sets
-- why: before deleting anything, an engineer wants the evidence, not just a label
-- params: layer_id VARCHAR = '', snap INTEGER = 0, grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
v AS (SELECT * FROM verdicts WHERE snap = getvariable('snap') AND layer_id = getvariable('layer_id')),
r AS (SELECT * FROM reach WHERE snap = getvariable('snap') AND kind = 'dir' AND node = getvariable('layer_id')),
verdict_rows AS (
    SELECT 9 AS ord, 'dir' AS section, 'overlay2/' || layer_id AS detail FROM v
    UNION ALL SELECT 10, 'verdict',
           verdict || coalesce(' (' || mechanism || ')', '') || CASE WHEN self_heals THEN ', self-heals' ELSE '' END
               AS detail
    FROM v
    UNION ALL SELECT 11, 'size', bytes::VARCHAR || ' bytes allocated, ' || files::VARCHAR || ' entries' FROM v
    UNION ALL SELECT 12, 'evidence', evidence FROM v WHERE evidence IS NOT NULL AND verdict <> 'live'
),
path_rows AS (
    SELECT 20 + i AS ord, CASE WHEN r.live THEN 'kept alive by' ELSE 'referenced only by' END,
           r.path[i]
    FROM r, range(1, len(r.path) + 1) t(i)
),
refs AS (
    SELECT 40 AS ord, 'layerdb' AS section,
           'image/overlay2/layerdb/sha256/' || dir_name || ' cache-id' || CASE WHEN removing THEN ' (-removing)' ELSE '' END
    FROM layerdb WHERE snap = getvariable('snap') AND (cache_id = getvariable('layer_id'))
    UNION ALL SELECT 41, 'mounts', 'image/overlay2/layerdb/mounts/' || name || ' mount-id'
    FROM mounts WHERE snap = getvariable('snap') AND (mount_id = getvariable('layer_id'))
    UNION ALL SELECT 41, 'mounts', 'image/overlay2/layerdb/mounts/' || name || ' init-id'
    FROM mounts WHERE snap = getvariable('snap') AND (init_id = getvariable('layer_id'))
    UNION ALL SELECT 42, 'buildkit', 'snapshots.db bucket ' || key
        || CASE WHEN committed = getvariable('layer_id') THEN ' (committed -> this dir)' ELSE '' END
        || coalesce(' chainid ' || chain_id, '')
    FROM buildkit_snapshots
    WHERE snap = getvariable('snap') AND (key = getvariable('layer_id') OR committed = getvariable('layer_id'))
    UNION ALL SELECT 43, 'buildkit', 'record ' || record_id || CASE WHEN deleted THEN ' (deleted)' ELSE '' END
        || ' ' || record_type || ': ' || coalesce(description, '')
    FROM buildkit_records
    WHERE snap = getvariable('snap') AND (snapshot_key = getvariable('layer_id') OR record_id = getvariable('layer_id'))
    UNION ALL SELECT 44, 'short link', 'overlay2/l/' || short_id || CASE WHEN dangling THEN ' (dangling)' ELSE '' END
    FROM links WHERE snap = getvariable('snap') AND (target_layer_id = getvariable('layer_id'))
    UNION ALL SELECT 45, 'lower of', 'overlay2/' || layer_id
    FROM layers WHERE snap = getvariable('snap') AND (list_contains(lower_ids, getvariable('layer_id')))
    UNION ALL SELECT 46, 'mount', fstype || ' on ' || rel_path FROM mountinfo
    WHERE snap = getvariable('snap') AND (layer_id = getvariable('layer_id'))
),
marker_rows AS (
    SELECT 60 AS ord, 'markers' AS section,
           concat_ws(' ', CASE WHEN has_diff THEN 'diff/' END, CASE WHEN has_link THEN 'link' END,
                     CASE WHEN has_lower THEN 'lower' END, CASE WHEN has_work THEN 'work/' END,
                     CASE WHEN has_merged THEN 'merged/' END, CASE WHEN has_committed THEN 'committed' END,
                     CASE WHEN mounted THEN '(mounted)' END) AS detail
    FROM layers WHERE snap = getvariable('snap') AND (layer_id = getvariable('layer_id'))
    UNION ALL SELECT 61, 'created',
        coalesce(strftime(make_timestamp(created_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ'), 'unknown')
        || ' (link file mtime, else diff/ mtime)' FROM v
    UNION ALL SELECT 62, 'last change',
        strftime(make_timestamp(last_change_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') FROM v
    UNION ALL SELECT 63, 'write-set nearby', 'layerdb/tmp/' || w.name || ' mtime '
        || strftime(make_timestamp(w.mtime_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ')
        || ' (' || ((w.mtime_ns - v.created_ns) // 1000000000)::VARCHAR || ' s from creation)'
    FROM write_sets w, v WHERE w.snap = v.snap AND abs(w.mtime_ns - v.created_ns) <= 60 * 1000000000::BIGINT
),
final AS (
    SELECT * FROM verdict_rows UNION ALL SELECT * FROM path_rows UNION ALL SELECT * FROM refs
    UNION ALL SELECT * FROM marker_rows
)
SELECT section, detail FROM final ORDER BY ord, detail;
