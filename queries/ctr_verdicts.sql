-- name: ctr_verdicts
-- description: per snapshot, one verdict per containerd snapshot dir, content blob and ingest dir (live, leaked, in-flight, unknown) with the root that reaches it, or the leak mechanism, its evidence and when containerd would free it on its own
-- why: the containerd image store leaks through leases of dead operations and half-written records; a dir is leaked only when no live root of containerd's GC reaches it
-- params: grace_seconds BIGINT = 3600
-- view: true
-- requires: ctr_reach, ctr_leases
WITH
facts AS (
    SELECT s.snap, s.store, s.kind AS store_kind, s.meta_status, s.snapshotter_status, s.content_status,
           TRY_CAST(json_extract_string(m.manifest, '$.started_ns') AS BIGINT) AS t0,
           CASE WHEN s.kind = 'managed' THEN TRY_CAST(json_extract_string(m.manifest, '$.daemon.started_ns') AS BIGINT)
                ELSE s.started_ns END AS started_ns
    FROM ctr_stores s JOIN manifest m ON m.snap = s.snap
),
activity AS (
    SELECT snap, layer_id, max(greatest(ctime_ns, mtime_ns)) AS last_ns FROM files
    WHERE layer_id IN (SELECT dir_id FROM ctr_dirs WHERE dir_id IS NOT NULL)
    GROUP BY snap, layer_id
),
d AS (
    SELECT d.*, f.store_kind, f.meta_status, f.snapshotter_status, f.content_status, f.t0, f.started_ns,
           greatest(d.mtime_ns, d.ctime_ns, a.last_ns) AS last_change_ns,
           -- changed by the running daemon, within the grace window: may be mid-write
           f.started_ns IS NOT NULL AND greatest(d.mtime_ns, d.ctime_ns, a.last_ns) >= f.started_ns - 100000000
               AND f.t0 - greatest(d.mtime_ns, d.ctime_ns, a.last_ns) <= getvariable('grace_seconds') * 1000000000
               AS recent
    FROM ctr_dirs d
    JOIN facts f ON f.snap = d.snap AND f.store = d.store
    LEFT JOIN activity a ON a.snap = d.snap AND a.layer_id = d.dir_id
),
-- each dir, blob and ingest dir with the meta.db object(s) it belongs to
snap_dirs AS (
    SELECT d.*, cs.backend_key, cs.kind AS snapshot_kind,
           o.namespace AS ns, o.snapshotter || '/' || o.key AS node_key, o.created_ns AS object_created_ns
    FROM d
    LEFT JOIN containerd_snapshots cs ON cs.snap = d.snap AND cs.store = d.store AND cs.dir_exists
         AND cs.backend_key IS NOT NULL AND cs.snapshot_id = TRY_CAST(d.name AS BIGINT)
    LEFT JOIN ctr_objects o ON o.snap = d.snap AND o.store = d.store AND o.type = 'snapshot'
         AND o.target = cs.backend_key
    WHERE d.kind = 'snapshot'
),
blob_dirs AS (
    SELECT d.*, NULL AS backend_key, NULL AS snapshot_kind, o.namespace AS ns, o.key AS node_key,
           o.created_ns AS object_created_ns
    FROM d LEFT JOIN ctr_objects o ON o.snap = d.snap AND o.store = d.store AND o.type = 'content' AND o.key = d.name
    WHERE d.kind = 'blob'
),
ingest_dirs AS (
    SELECT d.*, NULL AS backend_key, NULL AS snapshot_kind, o.namespace AS ns, o.key AS node_key,
           o.created_ns AS object_created_ns
    FROM d LEFT JOIN ctr_objects o ON o.snap = d.snap AND o.store = d.store AND o.type = 'ingest' AND o.parent = d.name
    WHERE d.kind = 'ingest'
),
placed AS (
    SELECT x.*, r.class, r.root, r.dead_roots,
           CASE r.class WHEN 'live' THEN 1 WHEN 'in-flight' THEN 2 WHEN 'unknown' THEN 3 WHEN 'dead' THEN 4 END AS rank,
           EXISTS (SELECT 1 FROM ctr_lease_resources lr JOIN ctr_leases l ON l.snap = lr.snap
                   AND l.store = lr.store AND l.namespace = lr.namespace AND l.lease_id = lr.lease_id
                   WHERE l.class = 'expired' AND lr.snap = x.snap AND lr.store = x.store AND lr.namespace = x.ns
                   AND lr.type = CASE x.kind WHEN 'blob' THEN 'content' ELSE x.kind END
                   AND (CASE WHEN lr.type = 'snapshot' THEN lr.snapshotter || '/' || lr.key ELSE lr.key END)
                       = x.node_key) AS held_by_expired
    FROM (SELECT * FROM snap_dirs UNION ALL BY NAME SELECT * FROM blob_dirs UNION ALL BY NAME SELECT * FROM ingest_dirs) x
    LEFT JOIN ctr_reach r ON r.snap = x.snap AND r.store = x.store AND r.ns = x.ns
         AND r.type = CASE x.kind WHEN 'blob' THEN 'content' ELSE x.kind END AND r.key = x.node_key
),
-- a blob may be known to several namespaces: the strongest placement wins
one AS (
    SELECT *, count(ns) OVER (PARTITION BY snap, store, kind, name) AS namespaces,
           bool_or(held_by_expired) OVER (PARTITION BY snap, store, kind, name) AS any_expired
    FROM placed
    QUALIFY row_number() OVER (PARTITION BY snap, store, kind, name ORDER BY coalesce(rank, 9), ns) = 1
),
lease_of AS (
    SELECT o.*, l.lease_id, l.reason AS lease_reason, l.self_heal AS lease_self_heal, l.expire_ns AS lease_expire_ns,
           l.container_named
    FROM one o
    LEFT JOIN ctr_leases l ON l.snap = o.snap AND l.store = o.store AND l.namespace = o.ns
         AND o.class = 'dead' AND 'lease ' || l.lease_id = o.root
),
judged AS (
    SELECT *,
        CASE
            WHEN kind = 'snapshot' AND (meta_status <> 'ok' OR snapshotter_status <> 'ok') THEN 'unknown'
            WHEN kind <> 'snapshot' AND meta_status <> 'ok' THEN 'unknown'
            WHEN walk_status = 'error' THEN 'unknown'
            WHEN class = 'live' THEN 'live'
            WHEN class = 'in-flight' THEN 'in-flight'
            WHEN class = 'unknown' THEN 'unknown'
            WHEN class = 'dead' THEN 'leaked'
            WHEN recent THEN 'in-flight'
            ELSE 'leaked'
        END AS verdict,
        CASE
            WHEN class = 'dead' AND container_named AND snapshot_kind = 'active' THEN 'ctr-orphan-writable-snapshot'
            WHEN class = 'dead' THEN 'ctr-dead-lease'
            WHEN class IS NOT NULL THEN NULL
            WHEN kind = 'snapshot' AND backend_key IS NULL THEN 'ctr-dir-without-record'
            WHEN kind = 'snapshot' AND node_key IS NULL THEN 'ctr-record-without-meta'
            WHEN kind = 'blob' AND node_key IS NULL THEN 'ctr-blob-without-meta'
            WHEN kind = 'ingest' AND node_key IS NULL THEN 'ctr-ingest-without-meta'
            WHEN any_expired THEN 'ctr-expired-lease'
            ELSE 'ctr-unreferenced'
        END AS cause
    FROM lease_of
),
final AS (
    SELECT snap, store, kind, name, dir_id, path, verdict,
           CASE WHEN verdict IN ('leaked', 'in-flight') THEN cause END AS mechanism,
           CASE WHEN verdict = 'live' THEN root END AS reached_by,
           CASE
               WHEN kind = 'snapshot' AND meta_status <> 'ok' THEN 'meta.db unreadable (' || meta_status || '): no root can be placed'
               WHEN kind = 'snapshot' AND snapshotter_status <> 'ok'
                   THEN 'the snapshotter''s metadata.db is unreadable (' || snapshotter_status || '): the dir cannot be tied to a snapshot'
               WHEN kind <> 'snapshot' AND meta_status <> 'ok' THEN 'meta.db unreadable (' || meta_status || '): no root can be placed'
               WHEN walk_status = 'error' THEN 'the dir could not be walked (see errors)'
               WHEN verdict = 'live' THEN 'reached from ' || root
               WHEN verdict = 'in-flight' AND class = 'in-flight' THEN 'held by ' || root || ', made by the running daemon'
               WHEN verdict = 'in-flight'
                   THEN 'changed ' || ((t0 - last_change_ns) // 1000000000) || ' s before the collect, after the running daemon started: may be mid-write'
               WHEN verdict = 'unknown' THEN 'held only by ' || root || ': no owner known and no gc.expire'
               WHEN cause IN ('ctr-dead-lease', 'ctr-orphan-writable-snapshot')
                   THEN 'held only by ' || root || ' (' || lease_reason || ')'
                        || CASE WHEN len(dead_roots) > 1 THEN ' and ' || (len(dead_roots) - 1) || ' more dead lease(s)' ELSE '' END
                        || '; no image, container or live build record reaches it'
               WHEN cause = 'ctr-dir-without-record' THEN 'snapshots/' || name || ' has no record in the snapshotter''s metadata.db: left by a snapshot create or remove interrupted between the dir and the record'
               WHEN cause = 'ctr-record-without-meta' THEN 'snapshotter record ' || backend_key || ' is unknown to meta.db: the metadata transaction that made or removed it did not complete'
               WHEN cause = 'ctr-blob-without-meta' THEN 'blob ' || name || ' is in no namespace of meta.db: a write committed to disk but not to the metadata'
               WHEN cause = 'ctr-ingest-without-meta' THEN 'ingest ' || name || ' has no ingest record in meta.db: an interrupted write'
               WHEN cause = 'ctr-expired-lease' THEN 'held only by leases whose gc.expire has passed'
               ELSE 'no root of the garbage collector reaches it (no image, container, lease or gc.root)'
           END AS evidence,
           CASE
               WHEN verdict <> 'leaked' THEN NULL
               WHEN cause IN ('ctr-dead-lease', 'ctr-orphan-writable-snapshot') THEN lease_self_heal
               WHEN cause IN ('ctr-dir-without-record', 'ctr-record-without-meta')
                   THEN 'at the next GC that removes a snapshot of this snapshotter (a restart alone does not)'
               WHEN cause = 'ctr-blob-without-meta' OR cause = 'ctr-ingest-without-meta'
                   THEN 'at the next GC that removes content (a restart alone does not)'
               ELSE 'at the next containerd GC (after any delete)'
           END AS self_heal,
           verdict = 'leaked' AND (cause NOT IN ('ctr-dead-lease', 'ctr-orphan-writable-snapshot') OR lease_expire_ns IS NOT NULL)
               AS self_heals,
           bytes, apparent_bytes, files, mtime_ns AS created_ns, last_change_ns,
           CASE WHEN class = 'dead' THEN root END AS dead_lease, namespaces
    FROM judged
)
SELECT * FROM final ORDER BY snap, store, kind, name;
