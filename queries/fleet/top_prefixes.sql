-- name: top_prefixes
-- description: the leaked content prefixes (first levels under diff/) of each host's newest snapshot summed over the fleet, by bytes, with how many hosts hold them (from each snapshot's top 50 prefixes)
-- why: one prefix leaking on many hosts (a CI cache, a conda env, a build's node_modules) points at the job that leaks, fleet-wide
-- params: host VARCHAR = ''
-- requires: snapshots, prefixes
WITH ranked AS (
    SELECT host, date, snapshot,
           ROW_NUMBER() OVER (PARTITION BY host ORDER BY started_ns DESC, snapshot DESC) AS rn
    FROM snapshots
    WHERE getvariable('host') = '' OR host = getvariable('host')
),
final AS (
    SELECT p.prefix, COUNT(DISTINCT r.host) AS hosts, CAST(SUM(p.bytes) AS BIGINT) AS bytes,
           CAST(SUM(p.files) AS BIGINT) AS files, CAST(SUM(p.dirs) AS BIGINT) AS dirs,
           MIN(r.host) AS example_host
    FROM ranked r
    JOIN prefixes p ON p.host = r.host AND p.date = r.date AND p.snapshot = r.snapshot
    WHERE r.rn = 1 AND (getvariable('host') = '' OR p.host = getvariable('host'))
    GROUP BY p.prefix
)
SELECT * FROM final ORDER BY bytes DESC, prefix LIMIT 50;
