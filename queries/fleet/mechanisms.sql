-- name: mechanisms
-- description: leaked bytes, dirs and hosts by engine version and mechanism, over each host's newest snapshot per engine version
-- why: tells which mechanism leaks on which engine version, and whether an upgrade stopped it
-- params: none
-- requires: snapshots, leaks
WITH ranked AS (
    SELECT host, date, snapshot, COALESCE(engine_version, 'unknown') AS engine_version,
           ROW_NUMBER() OVER (PARTITION BY host, COALESCE(engine_version, 'unknown')
                              ORDER BY started_ns DESC, snapshot DESC) AS rn
    FROM snapshots
)
SELECT r.engine_version, l.mechanism, COUNT(DISTINCT r.host) AS hosts, COUNT(*) AS dirs,
       CAST(SUM(l.bytes) AS BIGINT) AS leaked_bytes
FROM ranked r
JOIN leaks l ON l.host = r.host AND l.date = r.date AND l.snapshot = r.snapshot
WHERE r.rn = 1
GROUP BY r.engine_version, l.mechanism
ORDER BY leaked_bytes DESC, r.engine_version, l.mechanism;
