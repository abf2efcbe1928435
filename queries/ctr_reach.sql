-- name: ctr_reach
-- description: per snapshot, every containerd object (image, container, lease, snapshot, blob, ingest) reached from a root of containerd's garbage collector (core/metadata/gc.go), with the strongest root: live (image, container, gc.root, a lease whose owner lives), in-flight (a lease or ingest of the running daemon), unknown (a lease nobody can place) or dead (a lease of an operation that died with its daemon)
-- why: containerd frees only what no root reaches; a lease of a crashed load or commit is a root for ever (or until gc.expire), so a snapshot or blob reached only through such leases is the containerd store's leak
-- params: none
-- view: true
-- requires: ctr_leases
WITH RECURSIVE
facts AS (
    SELECT s.snap, s.store, TRY_CAST(json_extract_string(m.manifest, '$.started_ns') AS BIGINT) AS t0
    FROM ctr_stores s JOIN manifest m ON m.snap = s.snap
),
obj AS (
    -- node key: snapshots as <snapshotter>/<key>, as the GC names them
    SELECT o.snap, o.store, o.namespace AS ns, o.type,
           CASE WHEN o.type = 'snapshot' THEN o.snapshotter || '/' || o.key ELSE o.key END AS key,
           o.type = 'snapshot' OR o.type = 'content' AS labelled_child,
           o.expire_ns, f.t0, o.target, o.parent, o.snapshotter
    FROM ctr_objects o JOIN facts f ON f.snap = o.snap AND f.store = o.store
),
labels AS (
    SELECT l.snap, l.store, l.namespace AS ns, l.type,
           CASE WHEN l.type = 'snapshot' THEN l.snapshotter || '/' || l.key ELSE l.key END AS key,
           l.label, l.value
    FROM ctr_labels l
),
-- forward references (gc.ref.*) from images, containers, sandboxes, snapshots and blobs
label_ref AS (
    SELECT snap, store, ns, type AS src_type, key AS src_key,
           CASE
               WHEN label = 'containerd.io/gc.ref.content' OR label LIKE 'containerd.io/gc.ref.content.%'
                    OR label LIKE 'containerd.io/gc.ref.content/%' THEN 'content'
               WHEN label LIKE 'containerd.io/gc.ref.snapshot.%' THEN 'snapshot'
               WHEN label = 'containerd.io/gc.ref.image' OR label LIKE 'containerd.io/gc.ref.image.%'
                    OR label LIKE 'containerd.io/gc.ref.image/%' THEN 'image'
           END AS dst_type,
           CASE
               WHEN label LIKE 'containerd.io/gc.ref.snapshot.%'
                   THEN split_part(substr(label, length('containerd.io/gc.ref.snapshot.') + 1), '/', 1) || '/' || value
               ELSE value
           END AS dst_key,
           label
    FROM labels
    WHERE type IN ('image', 'container', 'sandbox', 'snapshot', 'content')
),
-- back references (gc.bref.*, containerd 2): the labelled object lives as long as the object it names
label_bref AS (
    SELECT snap, store, ns,
           CASE
               WHEN label = 'containerd.io/gc.bref.content' OR label LIKE 'containerd.io/gc.bref.content.%'
                    OR label LIKE 'containerd.io/gc.bref.content/%' THEN 'content'
               WHEN label LIKE 'containerd.io/gc.bref.snapshot.%' THEN 'snapshot'
               WHEN label = 'containerd.io/gc.bref.image' OR label LIKE 'containerd.io/gc.bref.image.%'
                    OR label LIKE 'containerd.io/gc.bref.image/%' THEN 'image'
               WHEN label = 'containerd.io/gc.bref.container' OR label LIKE 'containerd.io/gc.bref.container.%'
                    OR label LIKE 'containerd.io/gc.bref.container/%' THEN 'container'
           END AS src_type,
           CASE
               WHEN label LIKE 'containerd.io/gc.bref.snapshot.%'
                   THEN split_part(substr(label, length('containerd.io/gc.bref.snapshot.') + 1), '/', 1) || '/' || value
               ELSE value
           END AS src_key,
           type AS dst_type, key AS dst_key, label
    FROM labels
    WHERE label LIKE 'containerd.io/gc.bref.%'
),
edges AS (
    -- follow: true when a flat lease's walk may take it too (a snapshot's parent)
    SELECT snap, store, ns, src_type, src_key, dst_type, dst_key, 'label ' || label AS via, false AS flat_ok
    FROM label_ref WHERE dst_type IS NOT NULL
    UNION ALL
    SELECT snap, store, ns, src_type, src_key, dst_type, dst_key, 'back-reference ' || label, false
    FROM label_bref WHERE src_type IS NOT NULL
    UNION ALL
    SELECT snap, store, ns, 'image', key, 'content', target, 'image target', false
    FROM obj WHERE type = 'image' AND target IS NOT NULL
    UNION ALL
    SELECT snap, store, ns, 'container', key, 'snapshot', snapshotter || '/' || target, 'container rootfs', false
    FROM obj WHERE type = 'container' AND snapshotter IS NOT NULL AND target IS NOT NULL
    UNION ALL
    SELECT snap, store, ns, 'snapshot', key, 'snapshot', snapshotter || '/' || parent, 'parent', true
    FROM obj WHERE type = 'snapshot' AND parent IS NOT NULL
    UNION ALL
    SELECT snap, store, ns, 'ingest', key, 'content', target, 'ingest expected', false
    FROM obj WHERE type = 'ingest' AND target IS NOT NULL
),
roots AS (
    -- images (unless gc.expire passed: containerd 2), containers, sandboxes
    SELECT snap, store, ns, type, key, false AS flat, 'live' AS class, type || ' ' || key AS root
    FROM obj WHERE type IN ('image', 'container', 'sandbox') AND (type <> 'image' OR expire_ns IS NULL OR expire_ns > t0)
    UNION ALL
    -- blobs and snapshots labelled containerd.io/gc.root, or with a gc.expire still ahead (containerd 2)
    SELECT o.snap, o.store, o.ns, o.type, o.key, false, 'live', o.type || ' ' || o.key || ' (gc.root label)'
    FROM obj o
    WHERE o.type IN ('content', 'snapshot')
      AND EXISTS (SELECT 1 FROM labels l WHERE l.snap = o.snap AND l.store = o.store AND l.ns = o.ns
                  AND l.type = o.type AND l.key = o.key AND l.label = 'containerd.io/gc.root')
    UNION ALL
    SELECT snap, store, ns, type, key, false, 'live', type || ' ' || key || ' (gc.expire ahead)'
    FROM obj WHERE type IN ('content', 'snapshot') AND expire_ns IS NOT NULL AND expire_ns > t0
    UNION ALL
    -- ingests that have not expired: a write in progress
    SELECT snap, store, ns, type, key, false, 'in-flight', 'ingest ' || key || ' (not expired)'
    FROM obj WHERE type = 'ingest' AND expire_ns IS NOT NULL AND expire_ns > t0
    UNION ALL
    -- what unexpired leases hold, classed by the lease
    SELECT r.snap, r.store, r.namespace, r.type,
           CASE WHEN r.type = 'snapshot' THEN r.snapshotter || '/' || r.key ELSE r.key END,
           l.flat, l.class, 'lease ' || l.lease_id
    FROM ctr_lease_resources r
    JOIN ctr_leases l ON l.snap = r.snap AND l.store = r.store AND l.namespace = r.namespace
                     AND l.lease_id = r.lease_id
    WHERE l.class <> 'expired'
),
walk(snap, store, ns, type, key, flat, class, root) AS (
    SELECT snap, store, ns, type, key, flat, class, root FROM roots
    UNION
    SELECT w.snap, w.store, w.ns, e.dst_type, e.dst_key, w.flat, w.class, w.root
    FROM walk w
    JOIN edges e ON e.snap = w.snap AND e.store = w.store AND e.ns = w.ns AND e.src_type = w.type
                AND e.src_key = w.key AND (NOT w.flat OR e.flat_ok)
),
final AS (
    SELECT snap, store, ns, type, key,
           -- the strongest class; among equals an image or container before a lease
           arg_min(class, CASE class WHEN 'live' THEN 10 WHEN 'in-flight' THEN 20 WHEN 'unknown' THEN 30 ELSE 40 END
                          + CASE WHEN root LIKE 'lease %' THEN 1 ELSE 0 END) AS class,
           arg_min(root, CASE class WHEN 'live' THEN 10 WHEN 'in-flight' THEN 20 WHEN 'unknown' THEN 30 ELSE 40 END
                         + CASE WHEN root LIKE 'lease %' THEN 1 ELSE 0 END) AS root,
           list(DISTINCT root ORDER BY root) FILTER (WHERE class = 'dead') AS dead_roots
    FROM walk
    GROUP BY snap, store, ns, type, key
)
SELECT * FROM final ORDER BY snap, store, ns, type, key;
