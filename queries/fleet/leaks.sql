-- name: leaks
-- description: the leaked dirs of each host's newest snapshot in the lake: host, snapshot time, store, layer_id, bytes, mechanism, biggest first per host
-- why: what the fleet leaks now, host by host, in one table
-- params: host VARCHAR = ''
-- requires: snapshots, leaks
WITH ranked AS (
    SELECT host, date, snapshot, started_utc,
           ROW_NUMBER() OVER (PARTITION BY host ORDER BY started_ns DESC, snapshot DESC) AS rn
    FROM snapshots
    WHERE getvariable('host') = '' OR host = getvariable('host')
)
SELECT r.host, r.started_utc AS snapshot_time, r.snapshot, l.store, l.layer_id, l.bytes, l.mechanism
FROM ranked r
JOIN leaks l ON l.host = r.host AND l.date = r.date AND l.snapshot = r.snapshot
WHERE r.rn = 1 AND (getvariable('host') = '' OR l.host = getvariable('host'))
ORDER BY r.host, l.bytes DESC, l.layer_id;
