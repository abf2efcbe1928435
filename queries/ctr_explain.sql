-- name: ctr_explain
-- description: why one containerd snapshot dir, blob or ingest dir is live or not: verdict, mechanism, evidence, when containerd would free it, its meta.db snapshot and labels, every lease that holds it and what that lease is
-- why: the evidence behind one line of `snapper leaks` for the containerd store, as `snapper explain` prints it
-- params: store VARCHAR = 'containerd/daemon', name VARCHAR = '1', snap BIGINT = 0, grace_seconds BIGINT = 3600
-- requires: ctr_verdicts, ctr_leases
WITH
v AS (
    SELECT * FROM ctr_verdicts
    WHERE snap = getvariable('snap') AND store = getvariable('store') AND name = getvariable('name')
),
rec AS (
    SELECT cs.* FROM containerd_snapshots cs JOIN v ON cs.snap = v.snap AND cs.store = v.store
    WHERE v.kind = 'snapshot' AND cs.snapshot_id = TRY_CAST(v.name AS BIGINT) AND cs.backend_key IS NOT NULL
),
obj AS (
    SELECT o.* FROM ctr_objects o JOIN v ON o.snap = v.snap AND o.store = v.store
    WHERE (v.kind = 'snapshot' AND o.type = 'snapshot' AND o.target IN (SELECT backend_key FROM rec))
       OR (v.kind = 'blob' AND o.type = 'content' AND o.key = v.name)
       OR (v.kind = 'ingest' AND o.type = 'ingest' AND o.parent = v.name)
),
held AS (
    SELECT DISTINCT l.namespace, l.lease_id, l.class, l.reason, l.self_heal
    FROM ctr_lease_resources r
    JOIN obj o ON o.snap = r.snap AND o.store = r.store AND o.namespace = r.namespace
              AND r.type = CASE o.type WHEN 'content' THEN 'content' ELSE o.type END AND r.key = o.key
              AND (r.snapshotter IS NULL OR r.snapshotter = o.snapshotter)
    JOIN ctr_leases l ON l.snap = r.snap AND l.store = r.store AND l.namespace = r.namespace
                     AND l.lease_id = r.lease_id
),
rows AS (
    SELECT 1 AS ord, 'dir' AS section, path AS detail FROM v
    UNION ALL SELECT 2, 'store', store || ' (' || kind || ')' FROM v
    UNION ALL SELECT 3, 'verdict', verdict || coalesce(' (' || mechanism || ')', '') FROM v
    UNION ALL SELECT 4, 'size', bytes || ' bytes allocated, ' || files || ' entries' FROM v
    UNION ALL SELECT 5, 'evidence', evidence FROM v
    UNION ALL SELECT 6, 'frees itself', self_heal FROM v WHERE self_heal IS NOT NULL
    UNION ALL SELECT 7, 'snapshotter record', backend_key || ' (' || kind || coalesce(', parent ' || parent_key, '') || ')'
    FROM rec
    UNION ALL SELECT 8, 'meta.db ' || type, namespace || '/' || coalesce(snapshotter || '/', '') || key
                     || coalesce(' parent ' || parent, '')
    FROM obj
    UNION ALL SELECT 9, 'label', o.namespace || ': ' || l.label || '=' || l.value
    FROM obj o JOIN ctr_labels l ON l.snap = o.snap AND l.store = o.store AND l.namespace = o.namespace
                               AND l.type = o.type AND l.key = o.key
                               AND coalesce(l.snapshotter, '') = coalesce(o.snapshotter, '')
    UNION ALL SELECT 10, 'held by lease', namespace || '/' || lease_id || ': ' || class || ' (' || reason || ')' FROM held
    UNION ALL SELECT 11, 'created', strftime(make_timestamp(created_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ')
                     || ' (dir mtime)' FROM v
    UNION ALL SELECT 12, 'last change', strftime(make_timestamp(last_change_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') FROM v
),
final AS (SELECT * FROM rows)
SELECT section, detail FROM final ORDER BY ord, detail;
