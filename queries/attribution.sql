-- name: attribution
-- description: for each leaked dir of a snapshot, the reachable layer (in that or an earlier snapshot) whose path set, and content hashes when collected, overlaps most, named by image tag and layer number
-- why: leaked dirs hold ordinary content (site-packages trees); knowing which image or build it copies points at the job that leaks
-- params: snap INTEGER = -1, grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
target AS (
    SELECT CASE WHEN getvariable('snap') < 0 THEN (SELECT max(snap) FROM snapshots) ELSE getvariable('snap') END AS s
),
leaked AS (
    SELECT v.snap, v.layer_id, v.bytes, v.mechanism FROM verdicts v, target t
    WHERE v.snap = t.s AND v.verdict = 'leaked'
),
lf AS (
    SELECT f.layer_id, f.path, f.size, f.hash
    FROM files f JOIN leaked l ON l.snap = f.snap AND l.layer_id = f.layer_id
    WHERE f.path LIKE 'diff/%' AND f.type <> 'd'
),
leaked_counts AS (
    SELECT layer_id, count(*) AS entries, bool_or(hash IS NOT NULL) AS hashed FROM lf GROUP BY layer_id
),
-- every dir that was live in the target snapshot or before, taken from the last snapshot where it was live
live_latest AS (
    SELECT v.layer_id, max(v.snap) AS snap
    FROM verdicts v, target t
    WHERE v.verdict = 'live' AND v.snap <= t.s AND v.name_class <> 'links'
    GROUP BY v.layer_id
),
cf AS (
    SELECT f.layer_id, f.snap, f.path, f.hash
    FROM files f JOIN live_latest d ON d.snap = f.snap AND d.layer_id = f.layer_id
    WHERE f.path LIKE 'diff/%' AND f.type <> 'd'
),
matches AS (
    SELECT lf.layer_id, cf.layer_id AS source_layer, any_value(cf.snap) AS source_snap,
           count(*) AS paths, sum(lf.size)::BIGINT AS matched_bytes,
           count(*) FILTER (WHERE lf.hash IS NOT NULL AND lf.hash = cf.hash) AS same_content
    FROM lf JOIN cf ON cf.path = lf.path
    GROUP BY lf.layer_id, cf.layer_id
),
image_layer AS (
    -- which image and layer number a source dir is (via layerdb cache-id -> chain -> position in chain_ids)
    SELECT l.snap, l.cache_id AS layer_id,
           arg_min(coalesce(nullif(array_to_string(i.tags, ', '), ''), 'untagged image ' || i.image_id[8:19])
                   || ' layer ' || list_position(i.chain_ids, l.chain_id)::VARCHAR
                   || '/' || len(i.chain_ids)::VARCHAR,
                   (len(i.tags) = 0, i.image_id)) AS label
    FROM layerdb l JOIN images i ON i.snap = l.snap AND list_contains(i.chain_ids, l.chain_id)
    WHERE NOT l.removing
    GROUP BY l.snap, l.cache_id
),
best AS (
    -- most shared paths, then same content; on a tie prefer an image layer over a build-cache dir, and
    -- another dir over the leaked dir's own earlier (live) self: "copy of layer 2 of app:1" says more
    SELECT m.layer_id,
           arg_max(struct_pack(m.source_layer, m.source_snap, m.paths, m.matched_bytes, m.same_content),
                   (m.paths, m.same_content, il.label IS NOT NULL, m.source_layer <> m.layer_id,
                    m.source_layer)) AS b
    FROM matches m
    LEFT JOIN image_layer il ON il.snap = m.source_snap AND il.layer_id = m.source_layer
    GROUP BY m.layer_id
),
final AS (
    SELECT l.snap, l.layer_id, l.bytes, l.mechanism, c.entries,
           b.b.source_layer AS source_layer, b.b.source_snap AS source_snap,
           CASE WHEN b.b.source_layer IS NULL THEN NULL
                WHEN b.b.source_layer = l.layer_id THEN 'itself, live in snapshot ' || b.b.source_snap::VARCHAR
                    || coalesce(' as ' || il.label, '')
                ELSE coalesce(il.label, r.root_label) END AS source,
           b.b.paths AS matched_paths,
           round(100.0 * b.b.paths / nullif(c.entries, 0), 1) AS path_overlap_pct,
           CASE WHEN c.hashed THEN round(100.0 * b.b.same_content / nullif(c.entries, 0), 1) END AS content_overlap_pct,
           b.b.matched_bytes AS matched_bytes
    FROM leaked l
    LEFT JOIN leaked_counts c ON c.layer_id = l.layer_id
    LEFT JOIN best b ON b.layer_id = l.layer_id
    LEFT JOIN image_layer il ON il.snap = b.b.source_snap AND il.layer_id = b.b.source_layer
    LEFT JOIN reach r ON r.snap = b.b.source_snap AND r.kind = 'dir' AND r.node = b.b.source_layer
)
SELECT * FROM final ORDER BY bytes DESC, layer_id;
