-- name: history_timeline
-- description: per snapshot of a series: filesystem used and size, overlay2 on disk, and bytes live, leaked, in-flight and unknown
-- why: disk use over time split by verdict is the first plot of any leak investigation
-- params: grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
by_verdict AS (
    SELECT snap,
           sum(bytes) FILTER (WHERE verdict = 'live')::BIGINT AS live_bytes,
           sum(bytes) FILTER (WHERE verdict = 'leaked')::BIGINT AS leaked_bytes,
           sum(bytes) FILTER (WHERE verdict = 'in-flight')::BIGINT AS in_flight_bytes,
           sum(bytes) FILTER (WHERE verdict = 'unknown')::BIGINT AS unknown_bytes,
           count(*) FILTER (WHERE verdict = 'leaked') AS leaked_dirs,
           sum(bytes)::BIGINT AS overlay2_bytes
    FROM verdicts GROUP BY snap
),
final AS (
    SELECT s.snap, s.started_utc, s.started_ns, s.fs_used_bytes, s.fs_total_bytes,
           coalesce(b.overlay2_bytes, 0) AS overlay2_bytes, coalesce(b.live_bytes, 0) AS live_bytes,
           coalesce(b.leaked_bytes, 0) AS leaked_bytes, coalesce(b.in_flight_bytes, 0) AS in_flight_bytes,
           coalesce(b.unknown_bytes, 0) AS unknown_bytes, coalesce(b.leaked_dirs, 0) AS leaked_dirs
    FROM snapshots s LEFT JOIN by_verdict b ON b.snap = s.snap
)
SELECT * FROM final ORDER BY snap;
