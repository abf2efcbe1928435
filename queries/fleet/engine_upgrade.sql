-- name: engine_upgrade
-- description: hosts whose engine version changed between two snapshots: old and new version, the upgrade time (the new daemon's start, else the first snapshot on the new version), and the leak rate in bytes per day on each version (least squares over its snapshots; null with one); snapshots without an engine version (API not asked) are left out
-- why: did the upgrade stop the leak? a rate that drops to 0 after it says yes, host by host
-- params: host VARCHAR = ''
-- requires: snapshots, reconciliation
WITH t AS (
    SELECT s.host, s.snapshot, s.started_ns, s.started_utc, s.engine_version,
           COALESCE(s.daemon_started_utc, s.started_utc) AS since_utc,
           CAST(COALESCE(r.bytes, 0) AS DOUBLE) AS leaked
    FROM snapshots s
    LEFT JOIN reconciliation r
      ON r.host = s.host AND r.date = s.date AND r.snapshot = s.snapshot AND r.item = 'leaked'
    WHERE s.engine_version IS NOT NULL AND (getvariable('host') = '' OR s.host = getvariable('host'))
),
flagged AS (
    -- 1 where a run of snapshots on one version starts (the host's first snapshot, or a version change)
    SELECT *, CASE WHEN LAG(engine_version) OVER (PARTITION BY host ORDER BY started_ns, snapshot) = engine_version
                   THEN 0 ELSE 1 END AS starts
    FROM t
),
runs AS (
    SELECT *, SUM(starts) OVER (PARTITION BY host ORDER BY started_ns, snapshot
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seg
    FROM flagged
),
days AS (
    -- days since the run's first snapshot (small numbers: the same slope in every engine)
    SELECT *, CAST(started_ns - MIN(started_ns) OVER (PARTITION BY host, seg) AS DOUBLE) / 86400000000000.0 AS d
    FROM runs
),
segs AS (
    SELECT host, seg, MIN(engine_version) AS engine_version, COUNT(*) AS snapshots,
           MIN(started_utc) AS first_utc, MAX(started_utc) AS last_utc,
           MIN(CASE WHEN starts = 1 THEN since_utc END) AS since_utc,
           CASE WHEN COUNT(*) > 1 AND VAR_POP(d) > 0 THEN REGR_SLOPE(leaked, d) END AS per_day
    FROM days GROUP BY host, seg
),
final AS (
    SELECT n.host, o.engine_version AS old_version, n.engine_version AS new_version,
           n.since_utc AS upgrade_time, o.last_utc AS last_old_snapshot, n.first_utc AS first_new_snapshot,
           o.snapshots AS old_snapshots, n.snapshots AS new_snapshots,
           CAST(ROUND(o.per_day, 0) AS BIGINT) AS bytes_per_day_before,
           CAST(ROUND(n.per_day, 0) AS BIGINT) AS bytes_per_day_after
    FROM segs n JOIN segs o ON o.host = n.host AND o.seg = n.seg - 1
)
SELECT * FROM final ORDER BY host, first_new_snapshot;
