-- name: known_bugs
-- description: per snapshot, the known engine bugs that leak storage and apply to the engine version and store that produced it (or may apply, when the version is unknown), with the leaked dirs and bytes whose mechanism matches the bug's signature
-- why: a leak the running engine is known to make comes back after every clean-up until the engine is upgraded; the issue and the fixed-in version say which upgrade stops it
-- params: grace_seconds BIGINT = 3600
-- requires: verdicts, ctr_verdicts
WITH
engine AS (
    -- the version from GET /version when the collect reached the API ('20.10.24+dfsg1', '26.1.5', '29.1.3')
    SELECT m.snap, json_extract_string(m.manifest, '$.engine.engine_version') AS engine_version,
           regexp_extract(json_extract_string(m.manifest, '$.engine.engine_version'),
                          '^v?(\d+)\.(\d+)(?:\.(\d+))?', ['major', 'minor', 'patch']) AS v,
           coalesce(json_extract_string(m.manifest, '$.layout.active_driver') = 'overlay2', false)
               OR EXISTS (SELECT 1 FROM layers l WHERE l.snap = m.snap) AS has_overlay2,
           coalesce(TRY_CAST(json_extract_string(m.manifest, '$.layout.containerd_store') AS BOOLEAN), false)
               OR EXISTS (SELECT 1 FROM ctr_stores c WHERE c.snap = m.snap) AS has_containerd
    FROM manifest m
),
engine_key AS (
    SELECT snap, engine_version, has_overlay2, has_containerd,
           CASE WHEN v.major <> '' THEN v.major::BIGINT * 1000000 + v.minor::BIGINT * 1000
                + coalesce(TRY_CAST(nullif(v.patch, '') AS BIGINT), 0) END AS version_key
    FROM engine
),
bug_ranges AS (
    SELECT b.*,
           CASE WHEN r_from.major <> '' THEN r_from.major::BIGINT * 1000000 + r_from.minor::BIGINT * 1000
                + coalesce(TRY_CAST(nullif(r_from.patch, '') AS BIGINT), 0) END AS from_key,
           CASE WHEN r_fix.major <> '' THEN r_fix.major::BIGINT * 1000000 + r_fix.minor::BIGINT * 1000
                + coalesce(TRY_CAST(nullif(r_fix.patch, '') AS BIGINT), 0) END AS fixed_key
    FROM (SELECT *, regexp_extract(coalesce(affected_from, ''), '^(\d+)\.(\d+)(?:\.(\d+))?',
                                   ['major', 'minor', 'patch']) AS r_from,
                    regexp_extract(coalesce(fixed_in, ''), '^(\d+)\.(\d+)(?:\.(\d+))?',
                                   ['major', 'minor', 'patch']) AS r_fix
          FROM known_bugs_table) b
),
matched AS (
    -- a known version falls in at most one range of a bug; an unknown version may be in any of them
    SELECT e.snap, e.engine_version, e.version_key IS NOT NULL AS version_known, r.*
    FROM engine_key e JOIN bug_ranges r
      ON (r.store = 'overlay2' AND e.has_overlay2) OR (r.store = 'containerd' AND e.has_containerd)
    WHERE e.version_key IS NULL
       OR (e.version_key >= coalesce(r.from_key, 0) AND (r.fixed_key IS NULL OR e.version_key < r.fixed_key))
),
per_bug AS (
    SELECT snap, bug, any_value(engine_version) AS engine_version, bool_and(version_known) AS version_known,
           any_value(store) AS store, any_value(mechanisms) AS mechanisms,
           string_agg(DISTINCT coalesce(affected_from, 'any') || ' to ' || coalesce('<' || fixed_in, 'now'), ', '
                      ORDER BY coalesce(affected_from, 'any') || ' to ' || coalesce('<' || fixed_in, 'now'))
               AS affected,
           coalesce(string_agg(DISTINCT fixed_in, ', ' ORDER BY fixed_in), 'not fixed') AS fixed_in,
           any_value(issue_url) AS issue_url, min(summary) AS summary, min(workaround) AS workaround
    FROM matched GROUP BY snap, bug
),
leaked AS (
    SELECT snap, mechanism, 'overlay2' AS store, bytes FROM verdicts WHERE verdict = 'leaked'
    UNION ALL
    SELECT snap, mechanism, 'containerd', bytes FROM ctr_verdicts WHERE verdict = 'leaked'
),
final AS (
    SELECT p.snap, p.bug, p.store, coalesce(p.engine_version, '(unknown)') AS engine_version,
           CASE WHEN p.version_known THEN 'yes' ELSE 'if the version is in range' END AS applies,
           p.affected, p.fixed_in, p.mechanisms,
           count(l.mechanism) AS leaked_dirs, coalesce(sum(l.bytes), 0)::BIGINT AS leaked_bytes,
           p.issue_url, p.summary, p.workaround
    FROM per_bug p
    LEFT JOIN leaked l ON l.snap = p.snap AND l.store = p.store
                      AND list_contains(string_split(p.mechanisms, ';'), l.mechanism)
    GROUP BY ALL
)
SELECT * FROM final ORDER BY snap, applies DESC, leaked_bytes DESC, bug;
