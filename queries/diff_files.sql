-- name: diff_files
-- description: per-file diff of one overlay2 dir between two snapshots: added, removed and modified entries with what changed
-- why: shows what a build or a container wrote into a dir between two collects
-- params: old_snap INTEGER = 0, new_snap INTEGER = 1, layer_id VARCHAR = ''
WITH
fo AS (SELECT * FROM files WHERE snap = getvariable('old_snap') AND layer_id = getvariable('layer_id')),
fn AS (SELECT * FROM files WHERE snap = getvariable('new_snap') AND layer_id = getvariable('layer_id')),
joined AS (
    SELECT coalesce(fn.path, fo.path) AS path,
           CASE WHEN fo.path IS NULL THEN 'added' WHEN fn.path IS NULL THEN 'removed' ELSE 'kept' END AS side,
           fo.type AS old_type, fn.type AS new_type, fo.size AS old_size, fn.size AS new_size,
           concat_ws(',',
               CASE WHEN fo.type <> fn.type THEN 'type' END,
               CASE WHEN fo.size <> fn.size THEN 'size' END,
               CASE WHEN fo.mtime_ns <> fn.mtime_ns THEN 'mtime' END,
               CASE WHEN fo.ctime_ns <> fn.ctime_ns THEN 'ctime' END,
               CASE WHEN fo.mode <> fn.mode THEN 'mode' END,
               CASE WHEN fo.inode <> fn.inode THEN 'inode' END,
               CASE WHEN fo.link_target IS DISTINCT FROM fn.link_target THEN 'link_target' END,
               CASE WHEN fo.hash IS NOT NULL AND fn.hash IS NOT NULL AND fo.hash <> fn.hash THEN 'content' END
           ) AS changed
    FROM fo FULL OUTER JOIN fn ON fo.path = fn.path AND fo.path_raw IS NOT DISTINCT FROM fn.path_raw
),
final AS (
    SELECT path, CASE WHEN side = 'kept' THEN 'modified' ELSE side END AS change, old_type, new_type,
           old_size, new_size, coalesce(new_size, 0) - coalesce(old_size, 0) AS size_delta, changed
    FROM joined
    WHERE side <> 'kept' OR (changed <> '' AND path <> '.')
)
SELECT * FROM final ORDER BY path, change;
