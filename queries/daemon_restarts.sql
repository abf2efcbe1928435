-- name: daemon_restarts
-- description: per snapshot of a series, the dockerd that ran during the collect (pids, start time) and whether it restarted since the previous snapshot; best effort without `snapper watch`: only the last start before each collect is known, so several restarts between two snapshots show as one
-- why: a dir written before the running daemon started was left by a daemon that was lost in between (crash, OOM kill, stop); a restart between two snapshots bounds when the newly leaked dirs were made
-- params: none
WITH
starts AS (
    SELECT snap,
           json_extract_string(manifest, '$.started_utc') AS collected_utc,
           coalesce(TRY_CAST(json_extract_string(manifest, '$.daemon.running') AS BOOLEAN), false) AS daemon_running,
           TRY_CAST(json_extract_string(manifest, '$.daemon.started_ns') AS BIGINT) AS daemon_started_ns,
           json_extract_string(manifest, '$.daemon.started_utc') AS daemon_started_utc,
           CAST(json_extract(manifest, '$.daemon.pids') AS VARCHAR) AS pids,
           json_extract_string(manifest, '$.engine.engine_version') AS engine_version
    FROM manifest
),
prev AS (
    SELECT *, lag(daemon_running) OVER w AS prev_running, lag(daemon_started_ns) OVER w AS prev_started_ns,
           lag(pids) OVER w AS prev_pids
    FROM starts
    WINDOW w AS (ORDER BY snap)
),
final AS (
    SELECT snap, collected_utc, daemon_running, daemon_started_utc, pids, engine_version,
           CASE
               WHEN prev_running IS NULL THEN NULL
               WHEN daemon_running <> prev_running THEN true
               WHEN NOT daemon_running THEN NULL  -- stopped at both: a start and stop in between is invisible
               WHEN daemon_started_ns IS NOT NULL AND prev_started_ns IS NOT NULL
                   THEN daemon_started_ns <> prev_started_ns
               ELSE pids <> prev_pids
           END AS restarted_since_previous,
           CASE
               WHEN prev_running IS NULL THEN 'first snapshot'
               WHEN prev_running AND NOT daemon_running THEN 'the daemon was lost (stopped or died) since the previous snapshot'
               WHEN NOT prev_running AND daemon_running THEN 'the daemon started since the previous snapshot'
               WHEN NOT daemon_running THEN 'no daemon at either snapshot'
               WHEN daemon_started_ns IS NOT NULL AND prev_started_ns IS NOT NULL
                   THEN CASE WHEN daemon_started_ns <> prev_started_ns
                             THEN 'the daemon restarted since the previous snapshot (start time changed)'
                             ELSE 'same daemon (same start time)' END
               WHEN pids <> prev_pids THEN 'the daemon restarted since the previous snapshot (pid changed)'
               ELSE 'same daemon pid (start time not recorded)'
           END AS note
    FROM prev
)
SELECT * FROM final ORDER BY snap;
