-- name: ctr_leases
-- description: per snapshot, every containerd lease with its owner and class: live (its container, BuildKit record or build history exists), in-flight (made by the running daemon), dead (made by an operation of a daemon that is gone), unknown (no owner, no expiry: a client may hold it on purpose) or expired, and when gc.expire lets it go
-- why: a lease is a GC root until it is deleted or expires; a crashed load, pull or commit leaves one that nobody will ever delete, and everything it holds stays on disk
-- params: none
-- view: true
-- requires: none
WITH
facts AS (
    SELECT s.snap, s.store, s.kind, s.started_ns,
           TRY_CAST(json_extract_string(m.manifest, '$.started_ns') AS BIGINT) AS t0,
           TRY_CAST(json_extract_string(m.manifest, '$.daemon.started_ns') AS BIGINT) AS docker_started_ns
    FROM ctr_stores s JOIN manifest m ON m.snap = s.snap
),
lease AS (
    SELECT o.snap, o.store, o.namespace, o.key AS lease_id, o.created_ns, o.expire_ns, f.kind, f.t0,
           -- dockerd's operations die with dockerd (its own containerd, or namespace moby* of a system one);
           -- other clients' with the containerd they talk to
           f.kind = 'managed' OR o.namespace LIKE 'moby%' AS docker_owned,
           CASE WHEN f.kind = 'managed' OR o.namespace LIKE 'moby%' THEN f.docker_started_ns ELSE f.started_ns END
               AS started_ns,
           EXISTS (SELECT 1 FROM ctr_labels l WHERE l.snap = o.snap AND l.store = o.store
                   AND l.namespace = o.namespace AND l.type = 'lease' AND l.key = o.key
                   AND l.label = 'containerd.io/gc.flat') AS flat,
           (SELECT first(l.value) FROM ctr_labels l WHERE l.snap = o.snap AND l.store = o.store
                   AND l.namespace = o.namespace AND l.type = 'lease' AND l.key = o.key
                   AND l.label = 'containerd.io/gc.expire') AS expire_label
    FROM ctr_objects o JOIN facts f ON f.snap = o.snap AND f.store = o.store
    WHERE o.type = 'lease'
),
owned AS (
    SELECT l.*,
           CASE
               WHEN l.namespace LIKE 'moby%' AND EXISTS (
                   SELECT 1 FROM containers c WHERE c.snap = l.snap AND c.container_id = l.lease_id AND c.config_present)
                   THEN 'container ' || l.lease_id
               WHEN EXISTS (
                   SELECT 1 FROM buildkit_records r WHERE r.snap = l.snap AND NOT r.deleted
                   AND r.record_id = regexp_extract(l.lease_id, '^([a-z0-9]{25})', 1))
                   THEN 'BuildKit record ' || regexp_extract(l.lease_id, '^([a-z0-9]{25})', 1)
               WHEN l.namespace = 'moby_history' THEN 'BuildKit build history (namespace moby_history)'
           END AS owner,
           l.namespace LIKE 'moby%' AND regexp_matches(l.lease_id, '^[0-9a-f]{64}$') AS container_named
    FROM lease l
),
final AS (
    SELECT snap, store, namespace, lease_id, created_ns, expire_ns, flat, owner,
           CASE
               WHEN expire_ns IS NOT NULL AND expire_ns <= t0 THEN 'expired'
               WHEN owner IS NOT NULL THEN 'live'
               WHEN started_ns IS NOT NULL AND created_ns >= started_ns - 100000000 THEN 'in-flight'
               WHEN docker_owned OR expire_ns IS NOT NULL THEN 'dead'
               ELSE 'unknown'
           END AS class,
           CASE
               WHEN expire_ns IS NOT NULL AND expire_ns <= t0
                   THEN 'gc.expire ' || expire_label || ' has passed: no longer a root; the next GC frees what only it held'
               WHEN owner IS NOT NULL THEN 'held for ' || owner
               WHEN started_ns IS NOT NULL AND created_ns >= started_ns - 100000000
                   THEN 'created by the running daemon (' || ((t0 - created_ns) // 1000000000) || ' s before the collect)'
               WHEN container_named
                   THEN 'named after container ' || left(lease_id, 12) || ', which no longer exists'
                        || CASE WHEN started_ns IS NULL THEN ' (no daemon running)'
                                ELSE ', created ' || ((started_ns - created_ns) // 1000000000) || ' s before the running daemon started' END
               WHEN docker_owned OR expire_ns IS NOT NULL
                   THEN 'no owner; created ' || CASE WHEN started_ns IS NULL THEN 'while no daemon runs now'
                                ELSE ((started_ns - created_ns) // 1000000000) || ' s before the running daemon started' END
                        || ': its operation died with that daemon'
               ELSE 'no owner known and no gc.expire: a client may hold it on purpose (ctr leases, BuildKit)'
           END AS reason,
           CASE
               WHEN expire_ns IS NOT NULL AND expire_ns <= t0 THEN 'at the next containerd GC'
               WHEN expire_ns IS NOT NULL
                   THEN 'after gc.expire ' || expire_label || ', at the next containerd GC (the GC has no timer: it runs on a delete or a start)'
               ELSE 'never: no gc.expire'
           END AS self_heal,
           container_named
    FROM owned
)
SELECT * FROM final ORDER BY snap, store, namespace, lease_id;
