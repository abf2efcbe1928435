-- name: verdicts
-- description: per snapshot, one verdict per overlay2 entry (live, leaked, in-flight, unknown, vanished) with the root that reaches it or the leak mechanism and its evidence
-- why: a dir is leaked only when no root reaches it; uncertain cases say unknown and why, so nobody deletes a live layer
-- params: grace_seconds BIGINT = 3600
-- view: true
-- requires: reach
WITH RECURSIVE
facts AS (
    SELECT
        m.snap,
        coalesce(TRY_CAST(json_extract_string(m.manifest, '$.daemon.running') AS BOOLEAN), true) AS daemon_running,
        TRY_CAST(json_extract_string(m.manifest, '$.started_ns') AS BIGINT) AS t0,
        TRY_CAST(json_extract_string(m.manifest, '$.daemon.started_ns') AS BIGINT) AS daemon_started_ns,
        (SELECT count(*) FROM images i WHERE i.snap = m.snap AND i.chain_ids IS NULL) AS images_unparsed,
        (SELECT count(*) FROM layerdb l WHERE l.snap = m.snap AND NOT l.removing AND l.cache_id IS NULL)
            AS chains_without_cache_id,
        (SELECT count(*) FROM mounts x WHERE x.snap = m.snap AND x.mount_id IS NULL) AS mounts_without_id,
        (SELECT count(*) FROM errors e WHERE e.snap = m.snap
            AND e.source IN ('buildkit_records', 'buildkit_snapshots')) AS buildkit_errors,
        (SELECT count(*) FROM errors e WHERE e.snap = m.snap AND e.op = 'scandir'
            AND e.source IN ('layerdb', 'mounts', 'containers', 'images')) AS listing_errors,
        (SELECT count(*) FROM residue r WHERE r.snap = m.snap AND r.kind = 'buildkit_executor') AS executors
    FROM manifest m
),
activity AS (
    -- the newest change anywhere in the dir: a layer still being extracted keeps getting new inodes deep in
    -- diff/ (ctime = now even when tar preserved an old mtime), while its top-level timestamps stay old
    SELECT snap, layer_id, max(greatest(ctime_ns, mtime_ns)) AS last_ns FROM files GROUP BY snap, layer_id
),
dirs AS (
    SELECT l.*,
           coalesce(l.link_mtime_ns, l.diff_mtime_ns, l.dir_mtime_ns) AS created_ns,
           greatest(l.dir_ctime_ns, l.diff_ctime_ns, l.link_ctime_ns, l.dir_mtime_ns, a.last_ns) AS last_change_ns
    FROM layers l LEFT JOIN activity a ON a.snap = l.snap AND a.layer_id = l.layer_id
),
best AS (
    SELECT snap, node, prio, root_kind, root_label, live, path FROM reach WHERE kind = 'dir'
),
owner_chain AS (
    SELECT snap, cache_id, min(chain_id) AS chain_id, bool_or(removing) AS any_removing,
           min(CASE WHEN removing THEN dir_name END) AS removing_dir
    FROM layerdb WHERE cache_id IS NOT NULL GROUP BY snap, cache_id
),
live_chain AS (
    SELECT snap, node FROM reach WHERE kind = 'chain' AND live
),
below_removing(snap, chain_id) AS (
    -- the parent chains of an image delete's -removing chain: released by that delete (9.1b)
    SELECT snap, parent FROM layerdb WHERE removing AND parent IS NOT NULL
    UNION
    SELECT l.snap, l.parent FROM below_removing b
    JOIN layerdb l ON l.snap = b.snap AND l.chain_id = b.chain_id AND NOT l.removing AND l.parent IS NOT NULL
),
below_partial AS (
    -- dirs in the lower of an ownerless dir (a layer whose registration was interrupted): the complete
    -- layers a load, pull, import or commit registered before it died, the partial one above them
    SELECT DISTINCT x.snap, unnest(x.lower_ids) AS dir, x.layer_id AS partial_dir
    FROM layers x
    WHERE x.lower_ids IS NOT NULL AND x.name_class = 'hex64'
      AND NOT EXISTS (SELECT 1 FROM layerdb l WHERE l.snap = x.snap AND l.cache_id = x.layer_id)
      AND NOT EXISTS (SELECT 1 FROM mounts m WHERE m.snap = x.snap AND (m.mount_id = x.layer_id OR m.init_id = x.layer_id))
),
mount_ref AS (
    SELECT snap, dir, min(name) AS mount_name, bool_or(name_class = 'buildkit25') AS buildkit_mount
    FROM (SELECT snap, mount_id AS dir, name, name_class FROM mounts
          UNION ALL SELECT snap, init_id, name, name_class FROM mounts WHERE init_id IS NOT NULL)
    GROUP BY snap, dir
),
bk_ref AS (
    SELECT DISTINCT snap, dir FROM (
        SELECT snap, key AS dir FROM buildkit_snapshots UNION ALL SELECT snap, committed FROM buildkit_snapshots
        UNION ALL SELECT snap, snapshot_key FROM buildkit_records)
    WHERE dir IS NOT NULL
),
held AS (
    -- a process with an fd, cwd or root inside the dir (an untar helper, a writer, a shell): in use
    SELECT snap, layer_id, min(pid) AS holder_pid, arg_min(comm, pid) AS holder_comm, arg_min(how, pid) AS holder_how
    FROM holders WHERE layer_id IS NOT NULL GROUP BY snap, layer_id
),
write_set_near AS (
    -- a registration writes its write-set, then creates the dir: an interrupted one leaves both, seconds apart
    SELECT d.snap, d.layer_id, arg_min(w.name, abs(w.mtime_ns - d.created_ns)) AS write_set,
           min(abs(w.mtime_ns - d.created_ns)) // 1000000000 AS seconds_apart
    FROM dirs d JOIN write_sets w ON w.snap = d.snap AND abs(w.mtime_ns - d.created_ns) <= 5 * 1000000000::BIGINT
    GROUP BY d.snap, d.layer_id
),
classified AS (
    SELECT
        d.*, f.* EXCLUDE (snap), b.root_kind, b.root_label, b.prio, coalesce(b.live, false) AS is_live, b.path,
        oc.chain_id AS owner_chain, oc.any_removing, oc.removing_dir,
        (oc.chain_id IS NOT NULL AND EXISTS (SELECT 1 FROM live_chain lc WHERE lc.snap = d.snap
                                                AND lc.node = oc.chain_id)) AS chain_live,
        mr.mount_name, mr.buildkit_mount,
        EXISTS (SELECT 1 FROM below_removing br2 WHERE br2.snap = d.snap AND br2.chain_id = oc.chain_id)
            AS under_removing,
        (SELECT min(bp.partial_dir) FROM below_partial bp WHERE bp.snap = d.snap AND bp.dir = d.layer_id)
            AS partial_above,
        EXISTS (SELECT 1 FROM containers c WHERE c.snap = d.snap AND c.container_id = mr.mount_name)
            AS mount_container_dir,
        (br.dir IS NOT NULL) AS buildkit_known,
        ws.write_set, ws.seconds_apart, h.holder_pid, h.holder_comm, h.holder_how,
        -- changed within the grace, but before the running daemon started: written by a daemon that is gone
        (f.daemon_running AND f.t0 - d.last_change_ns < getvariable('grace_seconds') * 1000000000::BIGINT
         AND f.daemon_started_ns IS NOT NULL AND d.last_change_ns < f.daemon_started_ns - 100000000)
            AS before_daemon_start,
        CASE
            WHEN d.walk_status = 'vanished' THEN 'vanished'
            WHEN d.name_class = 'links' THEN 'live'
            WHEN coalesce(b.live, false) AND b.root_kind IN ('build-in-progress', 'create-in-progress') THEN 'in-flight'
            WHEN coalesce(b.live, false) THEN 'live'
            WHEN h.holder_pid IS NOT NULL THEN 'in-flight'
            WHEN f.daemon_running AND f.t0 IS NOT NULL
                 AND f.t0 - d.last_change_ns < getvariable('grace_seconds') * 1000000000::BIGINT
                 AND (f.daemon_started_ns IS NULL OR d.last_change_ns >= f.daemon_started_ns - 100000000)
                THEN 'in-flight'
            WHEN f.daemon_running AND d.name_class = 'buildkit25' AND br.dir IS NOT NULL AND f.executors > 0
                THEN 'in-flight'
            WHEN f.listing_errors > 0 THEN 'unknown'
            WHEN b.root_kind = 'uncertain-mount' THEN 'unknown'
            WHEN oc.chain_id IS NOT NULL AND NOT coalesce(oc.any_removing, false)
                 AND (f.images_unparsed > 0 OR f.buildkit_errors > 0) THEN 'unknown'
            WHEN oc.chain_id IS NULL AND mr.dir IS NULL
                 AND (f.chains_without_cache_id > 0 OR f.mounts_without_id > 0) THEN 'unknown'
            WHEN d.name_class = 'buildkit25' AND f.buildkit_errors > 0 THEN 'unknown'
            ELSE 'leaked'
        END AS verdict
    FROM dirs d
    JOIN facts f ON f.snap = d.snap
    LEFT JOIN best b ON b.snap = d.snap AND b.node = d.layer_id
    LEFT JOIN owner_chain oc ON oc.snap = d.snap AND oc.cache_id = d.layer_id
    LEFT JOIN mount_ref mr ON mr.snap = d.snap AND mr.dir = d.layer_id
    LEFT JOIN bk_ref br ON br.snap = d.snap AND br.dir = d.layer_id
    LEFT JOIN write_set_near ws ON ws.snap = d.snap AND ws.layer_id = d.layer_id
    LEFT JOIN held h ON h.snap = d.snap AND h.layer_id = d.layer_id
),
final AS (
    SELECT
        snap, layer_id, name_class, verdict,
        CASE WHEN verdict IN ('live', 'in-flight') THEN coalesce(root_kind,
            CASE WHEN name_class = 'links' THEN 'overlay2-infrastructure'
                 WHEN holder_pid IS NOT NULL THEN 'held-open' ELSE 'young-dir' END) END AS reached_by,
        CASE WHEN verdict = 'live' THEN coalesce(root_label, 'overlay2/l: short-link directory') END AS root,
        CASE WHEN verdict NOT IN ('live', 'vanished') THEN
            CASE
                WHEN any_removing AND removing_dir IS NOT NULL THEN 'interrupted-image-delete'
                WHEN mount_name IS NOT NULL AND buildkit_mount THEN 'orphan-container-mount'
                WHEN mount_name IS NOT NULL THEN 'orphan-container-mount'
                WHEN owner_chain IS NOT NULL AND root_kind = 'orphan-mount' THEN 'pinned-by-orphan-mount'
                WHEN owner_chain IS NOT NULL AND NOT under_removing AND partial_above IS NOT NULL
                    THEN 'interrupted-image-create'
                WHEN owner_chain IS NOT NULL THEN 'interrupted-image-delete'
                WHEN name_class = 'hex64-init' THEN 'orphan-container-mount'
                WHEN name_class = 'buildkit25' THEN 'buildkit-snapshot-without-record'
                WHEN entry_type = 'd' AND has_diff AND NOT has_link THEN 'partial-delete-remnant'
                WHEN name_class = 'hex64' AND has_link THEN 'interrupted-layer-create'
                WHEN entry_type = 'd' AND NOT has_diff AND NOT has_link AND name_class IN ('hex64', 'buildkit25')
                    THEN 'partial-delete-remnant'
                ELSE 'stray-dir'
            END
        END AS mechanism,
        coalesce(verdict = 'leaked' AND any_removing AND removing_dir IS NOT NULL, false) AS self_heals,
        CASE verdict
            WHEN 'live' THEN array_to_string(path, ' -> ')
            WHEN 'vanished' THEN 'the dir disappeared while the collect ran'
            WHEN 'in-flight' THEN CASE
                WHEN root_kind = 'build-in-progress' THEN 'held by a BuildKit transient mount while the daemon runs'
                WHEN root_kind = 'create-in-progress' THEN 'held by ' || root_label
                WHEN holder_pid IS NOT NULL
                    THEN 'held open by pid ' || holder_pid::VARCHAR || ' (' || coalesce(holder_comm, '?') || ', '
                         || holder_how || ')'
                WHEN daemon_running AND t0 - last_change_ns < getvariable('grace_seconds') * 1000000000::BIGINT
                    THEN 'daemon running and the dir changed ' || ((t0 - last_change_ns) // 1000000000)::VARCHAR
                         || ' s before the collect (grace ' || getvariable('grace_seconds')::VARCHAR || ' s)'
                ELSE 'BuildKit snapshot while a build runs (buildkit/executor has bundles)' END
            WHEN 'unknown' THEN CASE
                WHEN listing_errors > 0 THEN 'a metadata directory could not be listed (see errors): references may be missing'
                WHEN root_kind = 'uncertain-mount' THEN 'held by ' || root_label || ': cannot tell whether the container is live'
                WHEN owner_chain IS NOT NULL AND images_unparsed > 0
                    THEN 'layer chain ' || owner_chain || ' is unreachable, but ' || images_unparsed::VARCHAR
                         || ' image config(s) are unreadable and might reference it'
                WHEN owner_chain IS NOT NULL
                    THEN 'layer chain ' || owner_chain || ' is unreachable, but a BuildKit database is unreadable and a record might hold it'
                WHEN chains_without_cache_id > 0 OR mounts_without_id > 0
                    THEN 'nothing references it, but some layerdb entries have no readable cache-id/mount-id and might own it'
                ELSE 'BuildKit database unreadable: a live record might reference it' END
            ELSE concat_ws('; ',
                CASE
                    WHEN any_removing AND removing_dir IS NOT NULL
                        THEN 'cache-id of layerdb/sha256/' || removing_dir || ' (an image delete was interrupted); removed at the next clean daemon shutdown (SIGTERM), not at start'
                    WHEN mount_name IS NOT NULL AND buildkit_mount
                        THEN 'layerdb/mounts/' || mount_name || ' is a BuildKit transient mount left by a daemon that died mid-build; it is reloaded at every start'
                    WHEN mount_name IS NOT NULL AND mount_container_dir
                        THEN 'layerdb/mounts/' || mount_name || ' names this dir; containers/' || mount_name
                             || ' has no config.v2.json, so dockerd skips that container at load ("failed to load container")'
                    WHEN mount_name IS NOT NULL
                        THEN 'layerdb/mounts/' || mount_name || ' names this dir but containers/' || mount_name || ' does not exist'
                    WHEN owner_chain IS NOT NULL AND root_kind = 'orphan-mount'
                        THEN 'layer chain ' || owner_chain || ' is pinned only by ' || root_label
                    WHEN owner_chain IS NOT NULL AND under_removing
                        THEN 'layer chain ' || owner_chain || ' (cache-id = this dir) is referenced by no image, '
                             || 'container or build-cache record and is a parent of a -removing chain: released by '
                             || 'an image delete that was interrupted'
                    WHEN owner_chain IS NOT NULL AND partial_above IS NOT NULL
                        THEN 'layer chain ' || owner_chain || ' (cache-id = this dir) is referenced by no image, '
                             || 'container or build-cache record, and ' || partial_above || ' (a layer whose '
                             || 'registration was cut off) has it as a lower: a load, pull, import or commit died '
                             || 'before it wrote the image config'
                    WHEN owner_chain IS NOT NULL
                        THEN 'likely: layer chain ' || owner_chain || ' (cache-id = this dir) is referenced by no image, '
                             || 'container or build-cache record: left by an image delete interrupted after the '
                             || 'config was removed (or the BuildKit EnsureLayer refcount race before '
                             || '23.0.11/25.0.5/26.0); a load or pull that died after registering its last layer '
                             || 'and before writing the image config leaves the same'
                    WHEN name_class = 'hex64-init' THEN 'lone -init: no layerdb/mounts entry has init-id ' || layer_id
                    WHEN name_class = 'buildkit25'
                        THEN 'no live BuildKit record and no layerdb cache-id reaches it'
                             || CASE WHEN buildkit_known THEN ' (only a stale snapshots.db bucket or deleted record names it)' ELSE '' END
                    WHEN entry_type = 'd' AND has_diff AND NOT has_link THEN 'no metadata references it and its link file is gone'
                    WHEN name_class = 'hex64' AND has_link THEN 'no cache-id, mount-id or init-id names it; link file present'
                    ELSE 'name or shape not created by the overlay2 driver'
                END,
                CASE WHEN write_set IS NOT NULL AND owner_chain IS NULL AND mount_name IS NULL
                     THEN 'layerdb/tmp/' || write_set || ' written ' || seconds_apart::VARCHAR
                     || ' s from its creation' END,
                CASE WHEN mounted THEN 'still mounted' END,
                CASE WHEN before_daemon_start
                     THEN 'last changed ' || ((daemon_started_ns - last_change_ns) // 1000000000)::VARCHAR
                          || ' s before the running daemon started: the operation that wrote it died with the old daemon' END,
                CASE WHEN walk_status <> 'ok' THEN 'walk ' || walk_status END)
        END AS evidence,
        allocated_bytes AS bytes, apparent_bytes, file_count AS files, created_ns, last_change_ns,
        has_link, has_lower, has_committed, mounted, owner_chain, mount_name, walk_status
    FROM classified
)
SELECT * FROM final ORDER BY snap, layer_id;
