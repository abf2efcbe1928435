-- name: ctr_diff
-- description: per containerd snapshot dir, blob and ingest dir between two snapshots of a series: appeared, vanished, changed or unchanged, bytes delta, and its verdict and mechanism in each; newly leaked and leaks gone
-- why: what a crash, a pull or a prune did to the containerd store between two collects
-- params: old_snap INTEGER = 0, new_snap INTEGER = 1, grace_seconds BIGINT = 3600
-- requires: ctr_verdicts
WITH
o AS (SELECT * FROM ctr_verdicts WHERE snap = getvariable('old_snap')),
n AS (SELECT * FROM ctr_verdicts WHERE snap = getvariable('new_snap')),
j AS (
    SELECT coalesce(n.store, o.store) AS store, coalesce(n.kind, o.kind) AS kind, coalesce(n.name, o.name) AS name,
           CASE WHEN o.name IS NULL THEN 'appeared' WHEN n.name IS NULL THEN 'vanished'
                WHEN o.bytes IS DISTINCT FROM n.bytes OR o.files IS DISTINCT FROM n.files
                     OR o.last_change_ns IS DISTINCT FROM n.last_change_ns THEN 'changed'
                ELSE 'unchanged' END AS change,
           n.bytes, coalesce(n.bytes, 0) - coalesce(o.bytes, 0) AS bytes_delta,
           o.verdict AS old_verdict, n.verdict AS new_verdict, n.mechanism AS new_mechanism,
           coalesce(n.verdict = 'leaked' AND o.verdict IS DISTINCT FROM 'leaked', false) AS newly_leaked,
           coalesce(o.verdict = 'leaked' AND n.verdict IS DISTINCT FROM 'leaked', false) AS leak_gone
    FROM o FULL OUTER JOIN n ON n.store = o.store AND n.kind = o.kind AND n.name = o.name
),
final AS (SELECT * FROM j)
SELECT * FROM final ORDER BY change, bytes DESC NULLS LAST, store, kind, name;
