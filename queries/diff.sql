-- name: diff
-- description: per overlay2 dir between two snapshots of a series: appeared, vanished, changed or unchanged, files added/removed/modified, bytes delta, and its verdict in each
-- why: a leak of 1 TB/day is a process; this shows what appeared since the last snapshot and what became leaked
-- params: old_snap INTEGER = 0, new_snap INTEGER = 1, grace_seconds BIGINT = 3600
-- view: true
-- requires: verdicts
WITH
o AS (SELECT * FROM verdicts WHERE snap = getvariable('old_snap')),
n AS (SELECT * FROM verdicts WHERE snap = getvariable('new_snap')),
-- per-dir fingerprint of the stat data (and content hashes where collected): only dirs whose fingerprint
-- differs are compared file by file, so an unchanged 1M-file store costs two scans, not a join
fp_o AS (
    SELECT layer_id, count(*) AS n,
           sum(hash(path, path_raw, type, size, mtime_ns, ctime_ns, mode, inode, link_target, hash)) AS h
    FROM files WHERE snap = getvariable('old_snap') GROUP BY layer_id
),
fp_n AS (
    SELECT layer_id, count(*) AS n,
           sum(hash(path, path_raw, type, size, mtime_ns, ctime_ns, mode, inode, link_target, hash)) AS h
    FROM files WHERE snap = getvariable('new_snap') GROUP BY layer_id
),
both_dirs AS (
    SELECT fp_o.layer_id FROM fp_o JOIN fp_n ON fp_n.layer_id = fp_o.layer_id
    WHERE fp_o.n <> fp_n.n OR fp_o.h <> fp_n.h
),
fo AS (
    SELECT f.* FROM files f SEMI JOIN both_dirs b ON b.layer_id = f.layer_id
    WHERE f.snap = getvariable('old_snap')
),
fn AS (
    SELECT f.* FROM files f SEMI JOIN both_dirs b ON b.layer_id = f.layer_id
    WHERE f.snap = getvariable('new_snap')
),
file_changes AS (
    -- stat data first; content hashes only where both snapshots collected them
    SELECT coalesce(fo.layer_id, fn.layer_id) AS layer_id,
           count(*) FILTER (WHERE fo.path IS NULL) AS files_added,
           count(*) FILTER (WHERE fn.path IS NULL) AS files_removed,
           count(*) FILTER (WHERE fo.path IS NOT NULL AND fn.path IS NOT NULL AND fn.path <> '.' AND (
               fo.type <> fn.type OR fo.size <> fn.size OR fo.mtime_ns <> fn.mtime_ns OR fo.ctime_ns <> fn.ctime_ns
               OR fo.mode <> fn.mode OR fo.inode <> fn.inode
               OR fo.link_target IS DISTINCT FROM fn.link_target
               OR (fo.hash IS NOT NULL AND fn.hash IS NOT NULL AND fo.hash <> fn.hash))) AS files_modified
    FROM fo FULL OUTER JOIN fn
      ON fo.layer_id = fn.layer_id AND fo.path = fn.path AND fo.path_raw IS NOT DISTINCT FROM fn.path_raw
    GROUP BY ALL
),
joined AS (
    SELECT coalesce(n.layer_id, o.layer_id) AS layer_id,
           coalesce(n.name_class, o.name_class) AS name_class,
           o.verdict AS old_verdict, n.verdict AS new_verdict,
           o.mechanism AS old_mechanism, n.mechanism AS new_mechanism,
           n.reached_by AS new_reached_by,
           coalesce(o.bytes, 0) AS old_bytes, coalesce(n.bytes, 0) AS new_bytes,
           coalesce(o.files, 0) AS old_files, coalesce(n.files, 0) AS new_files,
           coalesce(n.created_ns, o.created_ns) AS created_ns,
           n.evidence AS new_evidence, n.self_heals AS new_self_heals
    FROM o FULL OUTER JOIN n ON o.layer_id = n.layer_id
),
final AS (
    SELECT j.layer_id, j.name_class,
           CASE WHEN j.old_verdict IS NULL THEN 'appeared'
                WHEN j.new_verdict IS NULL THEN 'vanished'
                WHEN coalesce(c.files_added, 0) + coalesce(c.files_removed, 0) + coalesce(c.files_modified, 0) > 0
                     OR j.old_bytes <> j.new_bytes THEN 'changed'
                ELSE 'unchanged' END AS change,
           j.old_verdict, j.new_verdict, j.old_mechanism, j.new_mechanism, j.new_reached_by,
           CASE WHEN j.new_verdict IS NULL THEN j.old_bytes ELSE j.new_bytes END AS bytes,
           j.new_bytes - j.old_bytes AS bytes_delta,
           j.old_bytes, j.new_bytes,
           CASE WHEN j.old_verdict IS NULL THEN j.new_files ELSE coalesce(c.files_added, 0) END AS files_added,
           CASE WHEN j.new_verdict IS NULL THEN j.old_files ELSE coalesce(c.files_removed, 0) END AS files_removed,
           coalesce(c.files_modified, 0) AS files_modified,
           (j.new_verdict = 'leaked' AND coalesce(j.old_verdict, '') <> 'leaked') AS newly_leaked,
           (j.old_verdict = 'leaked' AND coalesce(j.new_verdict, '') <> 'leaked') AS leak_gone,
           strftime(make_timestamp(j.created_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS created,
           j.new_evidence, j.new_self_heals
    FROM joined j LEFT JOIN file_changes c ON c.layer_id = j.layer_id
)
SELECT * FROM final ORDER BY change, bytes DESC, layer_id;
