-- name: leaks
-- description: leaked overlay2 dirs, biggest first, with bytes (allocated, hard links once), files, created, mechanism, evidence and whether it self-heals
-- why: the space `docker system df` reports as zero and `docker system prune -af` never frees
-- params: min_bytes BIGINT = 0, grace_seconds BIGINT = 3600
-- requires: verdicts
WITH
final AS (
    SELECT snap, layer_id, bytes, files, mechanism, self_heals,
           strftime(make_timestamp(created_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS created,
           evidence, apparent_bytes, name_class
    FROM verdicts
    WHERE verdict = 'leaked' AND bytes >= getvariable('min_bytes')
)
SELECT * FROM final ORDER BY snap, bytes DESC, layer_id;
