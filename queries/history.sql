-- name: history
-- description: every overlay2 dir across a series: first and last seen, whether any snapshot found it reachable, when it was first leaked, and whether it appeared and never became reachable (leaked in every snapshot that saw it, or unreachable in consecutive snapshots spanning the grace window)
-- why: the headline of a leak investigation: what appeared and never became reachable, and how big it is
-- params: grace_seconds BIGINT = 3600
-- view: true
-- requires: verdicts
WITH
v AS (
    SELECT v.*, s.started_ns, s.started_utc
    FROM verdicts v JOIN snapshots s ON s.snap = v.snap
),
per_dir AS (
    SELECT layer_id,
           min(started_ns) AS first_seen_ns, max(started_ns) AS last_seen_ns,
           count(*) AS snapshots_present,
           bool_or(verdict = 'live') AS ever_reachable,
           bool_or(verdict = 'unknown') AS ever_unknown,
           min(started_ns) FILTER (WHERE verdict = 'leaked') AS first_leaked_ns,
           -- unreachable span: from the first to the last snapshot in which it was seen, all unreachable
           max(started_ns) FILTER (WHERE verdict IN ('leaked', 'in-flight'))
               - min(started_ns) FILTER (WHERE verdict IN ('leaked', 'in-flight')) AS unreachable_span_ns,
           count(*) FILTER (WHERE verdict IN ('leaked', 'in-flight')) AS unreachable_snapshots,
           count(*) FILTER (WHERE verdict = 'leaked') AS leaked_snapshots,
           arg_max(bytes, started_ns) AS bytes,
           arg_max(files, started_ns) AS files,
           arg_max(verdict, started_ns) AS last_verdict,
           arg_max(mechanism, started_ns) AS last_mechanism,
           arg_max(name_class, started_ns) AS name_class,
           max(snap) AS last_snap
    FROM v
    GROUP BY layer_id
),
final AS (
    SELECT layer_id, name_class,
           strftime(make_timestamp(first_seen_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS first_seen,
           strftime(make_timestamp(last_seen_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS last_seen,
           snapshots_present, ever_reachable,
           strftime(make_timestamp(first_leaked_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS first_leaked,
           last_verdict, last_mechanism, bytes, files,
           (NOT ever_reachable AND NOT ever_unknown AND unreachable_snapshots = snapshots_present
            -- leaked (not in-flight) is decided by evidence, e.g. changed before the running daemon started
            AND (leaked_snapshots = snapshots_present
                 OR unreachable_span_ns >= getvariable('grace_seconds') * 1000000000::BIGINT)) AS never_reachable,
           (last_snap = (SELECT max(snap) FROM snapshots)) AS present_at_end,
           first_seen_ns, last_seen_ns
    FROM per_dir
    WHERE layer_id <> 'l'
)
SELECT * FROM final ORDER BY never_reachable DESC, bytes DESC, layer_id;
