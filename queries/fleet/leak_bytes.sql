-- name: leak_bytes
-- description: leaked bytes and dirs per host per snapshot over time, with the filesystem's used bytes
-- why: shows which hosts leak, since when and how fast
-- params: host VARCHAR = ''
-- requires: snapshots, reconciliation
SELECT s.host, s.started_utc AS snapshot_time, s.snapshot,
       COALESCE(r.bytes, 0) AS leaked_bytes, COALESCE(r.dirs, 0) AS leaked_dirs, s.fs_used_bytes
FROM snapshots s
LEFT JOIN reconciliation r
  ON r.host = s.host AND r.date = s.date AND r.snapshot = s.snapshot AND r.item = 'leaked'
WHERE getvariable('host') = '' OR s.host = getvariable('host')
ORDER BY s.host, s.started_ns, s.snapshot;
