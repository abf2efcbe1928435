-- name: leak_neighbours
-- description: for each leaked dir of a snapshot, what the metadata shows created within a window of its creation: images, containers, build-cache records, write-sets, other dirs
-- why: a leak created at the same second as a build-cache record or a pull points at the operation that leaked it
-- params: snap INTEGER = -1, window_seconds BIGINT = 300, grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
target AS (
    SELECT CASE WHEN getvariable('snap') < 0 THEN (SELECT max(snap) FROM snapshots) ELSE getvariable('snap') END AS s
),
leaked AS (
    SELECT v.snap, v.layer_id, v.created_ns FROM verdicts v, target t
    WHERE v.snap = t.s AND v.verdict = 'leaked' AND v.created_ns IS NOT NULL
),
events AS (
    SELECT snap, 'image' AS kind, image_id || coalesce(' (' || nullif(array_to_string(tags, ', '), '') || ')', '')
               AS object, epoch_ns(TRY_CAST(created AS TIMESTAMPTZ)) AS at_ns
    FROM images
    UNION ALL SELECT snap, 'container', coalesce(name, container_id) || ' (' || coalesce(state, '?') || ')',
           epoch_ns(TRY_CAST(created AS TIMESTAMPTZ)) FROM containers
    UNION ALL SELECT snap, 'build-cache record', record_id || ' ' || record_type || ': ' || coalesce(description, ''),
           created_ns FROM buildkit_records
    UNION ALL SELECT snap, 'write-set', 'layerdb/tmp/' || name, mtime_ns FROM write_sets
    UNION ALL SELECT snap, 'dir ' || verdict, layer_id, created_ns FROM verdicts
),
final AS (
    SELECT l.layer_id, e.kind, e.object, (e.at_ns - l.created_ns) // 1000000000 AS seconds_from_dir
    FROM leaked l JOIN events e ON e.snap = l.snap AND e.at_ns IS NOT NULL
         AND abs(e.at_ns - l.created_ns) <= getvariable('window_seconds') * 1000000000::BIGINT
         AND NOT (e.kind LIKE 'dir %' AND e.object = l.layer_id)
)
SELECT * FROM final ORDER BY layer_id, abs(seconds_from_dir), kind, object;
