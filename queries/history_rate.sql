-- name: history_rate
-- description: leak rate per hour and per day (least squares over the series), filesystem growth rate, and when the filesystem fills at that rate
-- why: tells whether the leak is a process, how fast it runs, and how long until the disk is full
-- params: grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
leaked AS (
    SELECT snap, sum(bytes)::BIGINT AS leaked_bytes FROM verdicts WHERE verdict = 'leaked' GROUP BY snap
),
t AS (
    SELECT s.snap, s.started_ns / 3.6e12 AS hours, s.fs_used_bytes, s.fs_total_bytes,
           coalesce(l.leaked_bytes, 0) AS leaked_bytes
    FROM snapshots s LEFT JOIN leaked l ON l.snap = s.snap
),
fit AS (
    SELECT count(*) AS snapshots,
           (max(hours) - min(hours)) AS span_hours,
           CASE WHEN count(*) >= 2 AND max(hours) > min(hours) THEN regr_slope(leaked_bytes, hours) END
               AS leaked_per_hour,
           CASE WHEN count(*) >= 2 AND max(hours) > min(hours) THEN regr_slope(fs_used_bytes, hours) END
               AS fs_used_per_hour,
           arg_max(fs_used_bytes, hours) AS fs_used_last, arg_max(fs_total_bytes, hours) AS fs_total_last,
           max(hours) AS last_hours, arg_max(leaked_bytes, hours) AS leaked_last
    FROM t
),
final AS (
    SELECT snapshots, round(span_hours, 3) AS span_hours,
           -- a rate from minutes of data is noise: say so instead of hiding it
           (snapshots >= 3 AND span_hours >= 1) AS reliable,
           round(leaked_per_hour)::BIGINT AS leaked_bytes_per_hour,
           round(leaked_per_hour * 24)::BIGINT AS leaked_bytes_per_day,
           round(fs_used_per_hour)::BIGINT AS fs_used_bytes_per_hour,
           leaked_last AS leaked_bytes_now,
           fs_total_last - fs_used_last AS fs_free_bytes_now,
           CASE WHEN fs_used_per_hour > 0
                THEN round((fs_total_last - fs_used_last) / fs_used_per_hour, 1) END AS hours_until_full,
           CASE WHEN fs_used_per_hour > 0
                THEN strftime(make_timestamp(((last_hours + (fs_total_last - fs_used_last) / fs_used_per_hour)
                                               * 3.6e9)::BIGINT), '%Y-%m-%dT%H:%M:%S.%fZ') END AS full_at
    FROM fit
)
SELECT * FROM final ORDER BY snapshots;
