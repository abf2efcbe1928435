-- name: duplicates
-- description: groups of overlay2 dirs in one snapshot holding the same content (same paths and sizes, and hashes when collected), ranked by wasted bytes
-- why: duplicate extractions of one layer (parallel pulls, identical rebuilds) are the typical shape of a BuildKit or pull leak
-- params: snap INTEGER = -1, grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
target AS (
    SELECT CASE WHEN getvariable('snap') < 0 THEN (SELECT max(snap) FROM snapshots) ELSE getvariable('snap') END AS s
),
fp AS (
    SELECT f.layer_id,
           hash(string_agg(f.path || ':' || f.type || ':' || f.size::VARCHAR || ':' || coalesce(hex(f.hash), ''), '|'
                           ORDER BY f.path)) AS fingerprint,
           count(*) AS entries
    FROM files f, target t
    WHERE f.snap = t.s AND f.path LIKE 'diff/%'
    GROUP BY f.layer_id
),
groups AS (
    SELECT fp.fingerprint, count(*) AS copies, any_value(fp.entries) AS entries,
           list(v.layer_id ORDER BY v.verdict = 'live' DESC, v.layer_id) AS layer_ids,
           list(v.verdict ORDER BY v.verdict = 'live' DESC, v.layer_id) AS verdicts,
           max(v.bytes) AS bytes_each, (sum(v.bytes) - max(v.bytes))::BIGINT AS wasted_bytes
    FROM fp JOIN verdicts v ON v.snap = (SELECT s FROM target) AND v.layer_id = fp.layer_id
    WHERE fp.entries > 0
    GROUP BY fp.fingerprint
    HAVING count(*) > 1
),
final AS (
    SELECT copies, entries, bytes_each, wasted_bytes, layer_ids, verdicts, fingerprint FROM groups
)
SELECT * FROM final ORDER BY wasted_bytes DESC, fingerprint;
