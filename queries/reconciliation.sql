-- name: reconciliation
-- description: where the disk went: filesystem used, overlay2 on disk, live, leaked, in-flight, unknown, what docker system df reports, and the remainder nobody explains
-- why: puts the leak next to the numbers the engineer already has (df -h, docker system df)
-- params: grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
fs AS (
    SELECT TRY_CAST(json_extract_string(manifest, '$.statvfs.used_bytes') AS BIGINT) AS used,
           TRY_CAST(json_extract_string(manifest, '$.statvfs.total_bytes') AS BIGINT) AS total
    FROM manifest
),
on_disk AS (
    -- every inode once across all of overlay2 (hard links between layers counted once, mount points excluded)
    SELECT coalesce(sum(allocated), 0)::BIGINT AS bytes FROM (
        SELECT any_value(allocated) AS allocated FROM files WHERE NOT mount_point
        GROUP BY dev, inode
    )
),
by_verdict AS (
    SELECT verdict, sum(bytes)::BIGINT AS bytes, count(*) AS dirs FROM verdicts GROUP BY verdict
),
df AS (
    SELECT sum(size)::BIGINT AS bytes, count(*) AS n FROM api_df WHERE kind IN ('images', 'containers', 'build_cache')
),
rows AS (
    SELECT 1 AS ord, 'filesystem used' AS item, (SELECT used FROM fs) AS bytes, NULL::BIGINT AS dirs,
           'statvfs of the data root''s filesystem' AS note
    UNION ALL SELECT 2, 'overlay2 on disk', (SELECT bytes FROM on_disk), (SELECT count(*) FROM verdicts),
           'allocated, each inode once (du -sx)'
    UNION ALL SELECT 3, 'live', coalesce((SELECT bytes FROM by_verdict WHERE verdict = 'live'), 0),
           coalesce((SELECT dirs FROM by_verdict WHERE verdict = 'live'), 0), 'reached from an image, container or build-cache record'
    UNION ALL SELECT 4, 'leaked', coalesce((SELECT bytes FROM by_verdict WHERE verdict = 'leaked'), 0),
           coalesce((SELECT dirs FROM by_verdict WHERE verdict = 'leaked'), 0), 'unreachable from every root'
    UNION ALL SELECT 5, 'in-flight', coalesce((SELECT bytes FROM by_verdict WHERE verdict = 'in-flight'), 0),
           coalesce((SELECT dirs FROM by_verdict WHERE verdict = 'in-flight'), 0), 'young or held by a running build'
    UNION ALL SELECT 6, 'unknown', coalesce((SELECT bytes FROM by_verdict WHERE verdict = 'unknown'), 0),
           coalesce((SELECT dirs FROM by_verdict WHERE verdict = 'unknown'), 0), 'metadata incomplete: see snapper leaks evidence'
    UNION ALL SELECT 7, 'docker system df', (SELECT CASE WHEN n > 0 THEN bytes END FROM df), NULL,
           CASE WHEN (SELECT n FROM df) > 0 THEN 'images + containers + build cache, as the CLI sums them'
                ELSE 'not collected (engine API not reachable or --no-api)' END
    UNION ALL SELECT 8, 'overlay2 not in docker system df',
           CASE WHEN (SELECT n FROM df) > 0 THEN (SELECT bytes FROM on_disk) - (SELECT bytes FROM df) END, NULL,
           'what the engine does not account for'
    UNION ALL SELECT 9, 'unexplained remainder',
           (SELECT bytes FROM on_disk) - coalesce((SELECT sum(bytes) FROM by_verdict), 0)::BIGINT, NULL,
           'overlay2 on disk minus the verdict totals (negative: hard links shared between dirs)'
),
final AS (SELECT * FROM rows)
SELECT item, bytes, dirs, note FROM final ORDER BY ord;
