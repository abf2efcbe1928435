-- name: reach
-- description: per snapshot, every node (image, container, mount, chain, dir, BuildKit record/key) reached from a root, with the best root and the path to it
-- why: a dir is live only if some root reaches it; the path is the evidence `snapper explain` prints
-- params: none
-- view: true
-- requires: edges
WITH RECURSIVE
facts AS (
    SELECT snap,
           coalesce(TRY_CAST(json_extract_string(manifest, '$.daemon.running') AS BOOLEAN), true) AS daemon_running,
           TRY_CAST(json_extract_string(manifest, '$.daemon.started_ns') AS BIGINT) AS daemon_started_ns
    FROM manifest
),
container_dirs AS (
    -- config: ok (a container dockerd loads), missing (dockerd skips the dir at load: "failed to load
    -- container"), bad (unreadable or corrupt: whether dockerd loads it cannot be told)
    SELECT c.snap, c.container_id, c.name, c.state, c.mtime_ns,
           CASE WHEN c.config_present AND (c.problem IS NULL OR c.problem LIKE 'ID in config.v2.json%') THEN 'ok'
                WHEN c.problem = 'config.v2.json missing' THEN 'missing' ELSE 'bad' END AS config,
           -- a missing config is being written only by a create of the running daemon (dir changed after it started)
           (f.daemon_running AND (f.daemon_started_ns IS NULL OR c.mtime_ns IS NULL
                                  OR c.mtime_ns >= f.daemon_started_ns - 100000000)) AS maybe_creating
    FROM containers c JOIN facts f ON f.snap = c.snap
),
roots AS (
    -- prio: 1 container, 2 image, 3 build cache, 4 build in progress (live); 5 uncertain; 6 orphan (not live)
    SELECT snap, 'container' AS kind, container_id AS node, 1 AS prio, 'container' AS root_kind,
           container_id AS root_id,
           'container ' || coalesce(name, '?') || ' (' || coalesce(state, '?') || ')' AS root_label
    FROM container_dirs WHERE config = 'ok'
    UNION ALL
    SELECT snap, 'image', image_id, 2, 'image', image_id,
           'image ' || image_id[8:19] || CASE WHEN len(tags) > 0 THEN ' (' || array_to_string(tags, ', ') || ')'
                                             ELSE ' (untagged)' END
    FROM images
    UNION ALL
    SELECT snap, 'bk_record', record_id, 3, 'buildkit', record_id,
           'build cache record ' || record_id || ' (' || record_type || ': ' || coalesce(description, '') || ')'
    FROM buildkit_records WHERE NOT deleted
    UNION ALL
    SELECT m.snap, 'mount', m.name, CASE WHEN f.daemon_running THEN 4 ELSE 6 END,
           CASE WHEN f.daemon_running THEN 'build-in-progress' ELSE 'orphan-mount' END, m.name,
           'BuildKit transient mount layerdb/mounts/' || m.name
    FROM mounts m JOIN facts f ON f.snap = m.snap WHERE m.name_class = 'buildkit25'
    UNION ALL
    SELECT m.snap, 'mount', m.name, 4, 'create-in-progress', m.name,
           'layerdb/mounts/' || m.name || ' of a container the running daemon may still be creating (no config.v2.json yet)'
    FROM mounts m JOIN container_dirs c ON c.snap = m.snap AND c.container_id = m.name
    WHERE c.config = 'missing' AND c.maybe_creating
    UNION ALL
    SELECT m.snap, 'mount', m.name, 6, 'orphan-mount', m.name,
           'layerdb/mounts/' || m.name || ' (containers/' || m.name || ' has no config.v2.json: dockerd skips it at load)'
    FROM mounts m JOIN container_dirs c ON c.snap = m.snap AND c.container_id = m.name
    WHERE c.config = 'missing' AND NOT c.maybe_creating
    UNION ALL
    SELECT m.snap, 'mount', m.name, 5, 'uncertain-mount', m.name,
           'layerdb/mounts/' || m.name || ' of container dir without a readable config.v2.json'
    FROM mounts m JOIN container_dirs c ON c.snap = m.snap AND c.container_id = m.name WHERE c.config = 'bad'
    UNION ALL
    SELECT m.snap, 'mount', m.name, 6, 'orphan-mount', m.name,
           'layerdb/mounts/' || m.name || ' (no containers/' || m.name || ')'
    FROM mounts m
    WHERE m.name_class <> 'buildkit25'
      AND NOT EXISTS (SELECT 1 FROM containers c WHERE c.snap = m.snap AND c.container_id = m.name)
),
reach(snap, kind, node, prio, root_kind, root_id, root_label, depth, path) USING KEY (snap, kind, node) AS (
    SELECT snap, kind, node, prio, root_kind, root_id, root_label, 0, [root_label]
    FROM roots
    UNION ALL
    SELECT c.snap, c.kind, c.node, c.best.prio, c.best.root_kind, c.best.root_id, c.best.root_label, c.best.depth,
           c.best.path
    FROM (
        SELECT e.snap, e.dst_kind AS kind, e.dst AS node,
               arg_min(struct_pack(prio := r.prio, root_kind := r.root_kind, root_id := r.root_id,
                                   root_label := r.root_label, depth := r.depth + 1,
                                   path := list_append(r.path, e.label || ' -> ' || e.dst_kind || ' ' || e.dst)),
                       printf('%d|%08d|%s', r.prio, r.depth, array_to_string(r.path, '|'))) AS best
        FROM reach r JOIN edges e ON e.snap = r.snap AND e.src_kind = r.kind AND e.src = r.node
        GROUP BY e.snap, e.dst_kind, e.dst
    ) c
    WHERE NOT EXISTS (SELECT 1 FROM recurring.reach rr
                      WHERE rr.snap = c.snap AND rr.kind = c.kind AND rr.node = c.node AND rr.prio <= c.best.prio)
),
final AS (
    SELECT snap, kind, node, prio, root_kind, root_id, root_label, depth, path, prio <= 4 AS live
    FROM reach
)
SELECT * FROM final ORDER BY snap, kind, node;
