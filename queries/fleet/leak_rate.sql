-- name: leak_rate
-- description: per host, leaked bytes at its first and newest snapshot in the window and the leak rate in bytes per day (least squares over its snapshots; null with one snapshot)
-- why: tells which hosts leak as a process and how fast, so the worst are fixed first
-- params: since VARCHAR = '0000-00-00'
-- requires: snapshots, reconciliation
WITH t AS (
    SELECT s.host, s.started_ns, s.started_utc, s.snapshot,
           -- days since the host's first snapshot in the window (small numbers: the same slope in every engine)
           CAST(s.started_ns - MIN(s.started_ns) OVER (PARTITION BY s.host) AS DOUBLE) / 86400000000000.0 AS days,
           CAST(COALESCE(r.bytes, 0) AS DOUBLE) AS leaked
    FROM snapshots s
    LEFT JOIN reconciliation r
      ON r.host = s.host AND r.date = s.date AND r.snapshot = s.snapshot AND r.item = 'leaked'
    WHERE s.date >= getvariable('since')
),
ranked AS (
    SELECT host, leaked, started_utc,
           ROW_NUMBER() OVER (PARTITION BY host ORDER BY started_ns, snapshot) AS first_rn,
           ROW_NUMBER() OVER (PARTITION BY host ORDER BY started_ns DESC, snapshot DESC) AS last_rn
    FROM t
),
rate AS (
    SELECT host, COUNT(*) AS snapshots,
           CASE WHEN COUNT(*) > 1 AND VAR_POP(days) > 0 THEN REGR_SLOPE(leaked, days) END AS per_day
    FROM t GROUP BY host
)
SELECT r.host, r.snapshots, f.started_utc AS first_time, CAST(f.leaked AS BIGINT) AS first_leaked_bytes,
       l.started_utc AS newest_time, CAST(l.leaked AS BIGINT) AS newest_leaked_bytes,
       CAST(ROUND(r.per_day, 0) AS BIGINT) AS leaked_bytes_per_day
FROM rate r
JOIN ranked f ON f.host = r.host AND f.first_rn = 1
JOIN ranked l ON l.host = r.host AND l.last_rn = 1
ORDER BY leaked_bytes_per_day DESC NULLS LAST, r.host;
