-- name: leak_prefixes
-- description: the top path prefixes (first levels under diff/) of the leaked content of a snapshot, by bytes
-- why: `opt/conda/lib/python3.11/site-packages/sklearn` says more about who leaks than a 64-hex dir name
-- params: snap INTEGER = -1, depth INTEGER = 4, grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
target AS (
    SELECT CASE WHEN getvariable('snap') < 0 THEN (SELECT max(snap) FROM snapshots) ELSE getvariable('snap') END AS s
),
lf AS (
    SELECT f.layer_id, f.allocated,
           -- directories only: the file name itself is never part of the prefix
           array_to_string(list_slice(string_split(substr(f.path, 6), '/'), 1,
                                      least(getvariable('depth'), len(string_split(substr(f.path, 6), '/')) - 1)),
                           '/') AS prefix
    FROM files f JOIN verdicts v ON v.snap = f.snap AND v.layer_id = f.layer_id, target t
    WHERE f.snap = t.s AND v.verdict = 'leaked' AND f.path LIKE 'diff/%' AND f.type <> 'd'
),
final AS (
    SELECT coalesce(nullif(prefix, ''), '.') AS prefix, sum(allocated)::BIGINT AS bytes, count(*) AS files, count(DISTINCT layer_id) AS dirs
    FROM lf GROUP BY ALL
)
SELECT * FROM final ORDER BY bytes DESC, prefix LIMIT 50;
