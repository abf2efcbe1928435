-- name: ctr_history
-- description: every containerd snapshot dir, blob and ingest dir across a series: first and last seen, whether any snapshot found it live, when it was first leaked, and whether it appeared and never became reachable (leaked in every snapshot that saw it, or unreachable in consecutive snapshots spanning the grace window)
-- why: the containerd store's leak headline, as `history` is overlay2's: what appeared and no live root ever held
-- params: grace_seconds BIGINT = 3600
-- view: true
-- requires: ctr_verdicts
WITH
v AS (
    SELECT v.*, s.started_ns AS taken_ns
    FROM ctr_verdicts v JOIN snapshots s ON s.snap = v.snap
),
per_item AS (
    SELECT store, kind, name,
           min(taken_ns) AS first_seen_ns, max(taken_ns) AS last_seen_ns, count(*) AS snapshots_present,
           bool_or(verdict = 'live') AS ever_live,
           bool_or(verdict = 'unknown') AS ever_unknown,
           min(taken_ns) FILTER (WHERE verdict = 'leaked') AS first_leaked_ns,
           max(taken_ns) FILTER (WHERE verdict IN ('leaked', 'in-flight'))
               - min(taken_ns) FILTER (WHERE verdict IN ('leaked', 'in-flight')) AS unreachable_span_ns,
           count(*) FILTER (WHERE verdict IN ('leaked', 'in-flight')) AS unreachable_snapshots,
           count(*) FILTER (WHERE verdict = 'leaked') AS leaked_snapshots,
           arg_max(bytes, taken_ns) AS bytes,
           arg_max(verdict, taken_ns) AS last_verdict,
           arg_max(mechanism, taken_ns) AS last_mechanism,
           arg_max(self_heal, taken_ns) AS self_heal,
           max(snap) AS last_snap
    FROM v
    GROUP BY store, kind, name
),
final AS (
    SELECT store, kind, name,
           strftime(make_timestamp(first_seen_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS first_seen,
           strftime(make_timestamp(last_seen_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS last_seen,
           snapshots_present, ever_live,
           strftime(make_timestamp(first_leaked_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS first_leaked,
           last_verdict, last_mechanism, self_heal, bytes,
           (NOT ever_live AND NOT ever_unknown AND unreachable_snapshots = snapshots_present
            AND (leaked_snapshots = snapshots_present
                 OR unreachable_span_ns >= getvariable('grace_seconds') * 1000000000::BIGINT)) AS never_reachable,
           (last_snap = (SELECT max(snap) FROM snapshots)) AS present_at_end
    FROM per_item
)
SELECT * FROM final ORDER BY never_reachable DESC, bytes DESC, store, kind, name;
