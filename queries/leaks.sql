-- name: leaks
-- description: leaked overlay2 dirs and containerd snapshot dirs, blobs and ingests, biggest first, with bytes (allocated, hard links once), files, created, mechanism, evidence and whether it self-heals
-- why: the space `docker system df` reports as zero and `docker system prune -af` never frees
-- params: min_bytes BIGINT = 0, grace_seconds BIGINT = 3600
-- requires: verdicts, ctr_verdicts
WITH
final AS (
    SELECT snap, layer_id, bytes, files, mechanism, self_heals,
           strftime(make_timestamp(created_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ') AS created,
           evidence, apparent_bytes, name_class, 'overlay2' AS store
    FROM verdicts
    WHERE verdict = 'leaked' AND bytes >= getvariable('min_bytes')
    UNION ALL
    -- containerd snapshot dirs (by snapshot id), blobs (by digest) and ingest dirs
    SELECT snap, name, bytes, files, mechanism, self_heals,
           strftime(make_timestamp(created_ns // 1000), '%Y-%m-%dT%H:%M:%S.%fZ'),
           evidence || '; frees itself: ' || self_heal, apparent_bytes, 'ctr-' || kind, store
    FROM ctr_verdicts
    WHERE verdict = 'leaked' AND bytes >= getvariable('min_bytes')
)
SELECT * FROM final ORDER BY snap, bytes DESC, layer_id;
