-- name: reconciliation
-- description: where the disk went, per snapshot: filesystem used, overlay2 and containerd (snapshots, content) on disk, live, leaked, in-flight, unknown, what docker system df reports, and the remainder nobody explains (never negative: bytes counted in several dirs are a row of their own)
-- why: puts the leak next to the numbers the engineer already has (df -h, docker system df)
-- params: grace_seconds BIGINT = 3600
-- requires: verdicts, ctr_verdicts
WITH
snaps AS (
    SELECT snap,
           TRY_CAST(json_extract_string(manifest, '$.statvfs.used_bytes') AS BIGINT) AS used
    FROM manifest
),
on_disk AS (
    -- every inode once across all of overlay2 (hard links between layers counted once, mount points excluded)
    SELECT snap, sum(allocated)::BIGINT AS bytes FROM (
        SELECT snap, any_value(allocated) AS allocated FROM files
        WHERE NOT mount_point AND layer_id NOT IN (SELECT dir_id FROM ctr_dirs WHERE dir_id IS NOT NULL)
        GROUP BY snap, dev, inode
    ) GROUP BY snap
),
by_verdict AS (
    SELECT s.snap, v.verdict, coalesce(sum(d.bytes), 0)::BIGINT AS bytes, count(d.layer_id) AS dirs
    FROM snaps s
    CROSS JOIN (VALUES ('live'), ('leaked'), ('in-flight'), ('unknown')) v(verdict)
    LEFT JOIN (SELECT snap, verdict, bytes, layer_id FROM verdicts
               UNION ALL SELECT snap, verdict, bytes, store || '/' || kind || '/' || name FROM ctr_verdicts) d
           ON d.snap = s.snap AND d.verdict = v.verdict
    GROUP BY s.snap, v.verdict
),
ctr AS (
    SELECT s.snap,
           coalesce(sum(c.bytes) FILTER (WHERE c.kind = 'snapshot'), 0)::BIGINT AS snap_bytes,
           count(c.name) FILTER (WHERE c.kind = 'snapshot') AS snap_dirs,
           coalesce(sum(c.bytes) FILTER (WHERE c.kind <> 'snapshot'), 0)::BIGINT AS content_bytes,
           count(c.name) FILTER (WHERE c.kind <> 'snapshot') AS content_items,
           coalesce(sum(v.bytes) FILTER (WHERE v.verdict = 'live'), 0)::BIGINT AS live_bytes,
           count(DISTINCT c.store) AS stores
    FROM snaps s
    LEFT JOIN ctr_dirs c ON c.snap = s.snap
    LEFT JOIN ctr_verdicts v ON v.snap = c.snap AND v.store = c.store AND v.kind = c.kind AND v.name = c.name
    GROUP BY s.snap
),
df AS (
    -- what `docker system df` counts: layers of images, containers' RW layers and build cache, i.e. the dirs
    -- its records reach. Computed: GET /system/df is never called (it makes dockerd delete crash evidence)
    SELECT s.snap, coalesce(sum(v.bytes) FILTER (WHERE v.verdict = 'live' AND v.name_class <> 'links'), 0)::BIGINT
               + any_value(c.live_bytes) AS bytes, 1 AS n
    FROM snaps s LEFT JOIN verdicts v ON v.snap = s.snap JOIN ctr c ON c.snap = s.snap
    GROUP BY s.snap
),
entries AS (
    SELECT snap, count(*) AS entries FROM verdicts GROUP BY snap
),
verdict_sum AS (
    SELECT snap, sum(bytes)::BIGINT AS verdict_bytes FROM by_verdict GROUP BY snap
),
totals AS (
    SELECT s.snap, s.used, coalesce(o.bytes, 0) AS overlay2_bytes,
           coalesce(o.bytes, 0) + c.snap_bytes + c.content_bytes AS on_disk, df.bytes AS df_bytes, df.n AS df_n,
           coalesce(e.entries, 0) AS entries, coalesce(vs.verdict_bytes, 0) AS verdict_bytes,
           c.snap_bytes, c.snap_dirs, c.content_bytes, c.content_items, c.stores
    FROM snaps s
    JOIN ctr c ON c.snap = s.snap
    LEFT JOIN on_disk o ON o.snap = s.snap
    JOIN df ON df.snap = s.snap
    LEFT JOIN entries e ON e.snap = s.snap
    LEFT JOIN verdict_sum vs ON vs.snap = s.snap
),
rows AS (
    SELECT snap, 1 AS ord, 'filesystem used' AS item, used AS bytes, NULL::BIGINT AS dirs,
           'statvfs of the data root''s filesystem' AS note FROM totals
    UNION ALL SELECT snap, 2, 'overlay2 on disk', overlay2_bytes, entries, 'allocated, each inode once (du -sx)' FROM totals
    UNION ALL SELECT snap, 2.1, 'containerd snapshots on disk', snap_bytes, snap_dirs,
           'overlayfs snapshotter snapshots/<n> dirs, allocated' FROM totals WHERE stores > 0
    UNION ALL SELECT snap, 2.2, 'containerd content on disk', content_bytes, content_items,
           'content store blobs and ingests, allocated' FROM totals WHERE stores > 0
    UNION ALL SELECT snap,
           CASE verdict WHEN 'live' THEN 3 WHEN 'leaked' THEN 4 WHEN 'in-flight' THEN 5 ELSE 6 END,
           verdict, bytes, dirs,
           CASE verdict WHEN 'live' THEN 'reached from an image, container, build-cache record or live lease'
                        WHEN 'leaked' THEN 'unreachable from every live root'
                        WHEN 'in-flight' THEN 'young or held by a running build'
                        ELSE 'metadata incomplete: see snapper leaks evidence' END
    FROM by_verdict
    UNION ALL SELECT snap, 7, 'docker system df (computed)', df_bytes, NULL,
           'images + containers + build cache: the dirs their records reach (GET /system/df is not called)'
    FROM totals
    UNION ALL SELECT snap, 8, 'not in docker system df', greatest(on_disk - df_bytes, 0),
           NULL, 'on disk (overlay2 and containerd) but not what the engine accounts for' FROM totals
    UNION ALL SELECT snap, 9, 'counted in several dirs', greatest(verdict_bytes - on_disk, 0), NULL,
           'hard links shared between dirs: in each dir''s bytes, once on disk' FROM totals
    UNION ALL SELECT snap, 10, 'unexplained remainder', greatest(on_disk - verdict_bytes, 0), NULL,
           'on disk minus the verdict totals' FROM totals
),
final AS (SELECT * FROM rows)
SELECT snap, item, bytes, dirs, note FROM final ORDER BY snap, ord;
