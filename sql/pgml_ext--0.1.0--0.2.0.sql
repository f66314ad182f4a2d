-- pgml_ext 0.1.0 -> 0.2.0: pgml.stats, the scoring of every backend and parallel worker
-- per model version (src/stats.c), and its functions. Nothing of 0.1.0 changes: its
-- models, pins and answers stay as they were.
--
-- The habit: every release that changes sql/pgml_ext.sql adds sql/pgml_ext--FROM--TO.sql
-- with the same objects, and freezes the release's install script as
-- sql/pgml_ext--TO.sql; tests/test_upgrade.py checks that an upgraded database has what
-- a new one has.

-- All backends ---------------------------------------------------------------------------
-- pgml.stats: per model version, the scoring of every backend and parallel worker since
-- the last reset (src/stats.c; shared memory with pgml_ext in shared_preload_libraries,
-- else this backend's alone, with a WARNING). Counted by whoever answers a row: C, or
-- PL/Python. Versions deleted since drop out of the view; pgml.stats_reset forgets them.

CREATE FUNCTION pgml_internal.stats_entries(
    OUT version_id bigint, OUT calls bigint, OUT c_rows bigint, OUT fallback_rows bigint,
    OUT errors bigint, OUT total_ms float8, OUT loads bigint, OUT load_ms float8,
    OUT last_used timestamptz)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'pgml_stats_entries'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION pgml_internal.stats_reset(version_ids bigint[])
RETURNS bigint AS 'MODULE_PATHNAME', 'pgml_stats_reset_entries'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION pgml.stats_dropped()
RETURNS bigint AS 'MODULE_PATHNAME', 'pgml_stats_dropped'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pgml.stats AS
SELECT v.name AS model,
       v.version,
       s.calls,
       s.c_rows + s.fallback_rows AS rows,
       s.c_rows,
       s.fallback_rows,
       s.errors,
       s.total_ms,
       s.total_ms / nullif(s.calls, 0) AS mean_ms,
       s.loads,
       s.load_ms,
       s.last_used
  FROM pgml_internal.stats_entries() s
  JOIN pgml.model_versions v ON v.id = s.version_id;

-- Forgets the counts of MODEL ('name': all its versions, 'name@N': one), or of every
-- model of this database; returns how many versions' counts it forgot.
CREATE FUNCTION pgml.stats_reset(model text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pgml, pg_temp AS $$
    SELECT pgml_internal.stats_reset(
        CASE WHEN model IS NOT NULL THEN
            ARRAY(SELECT v.id FROM pgml.model_versions v
                   WHERE v.name = split_part(model, '@', 1)
                     AND (strpos(model, '@') = 0
                          OR v.version::text = split_part(model, '@', 2)))
        END)
$$;

COMMENT ON VIEW pgml.stats IS
    'Scoring per model version across all backends and parallel workers since the last pgml.stats_reset: calls, rows (in C, in PL/Python), errors, time, loads.';
COMMENT ON COLUMN pgml.stats.model IS 'The model''s name.';
COMMENT ON COLUMN pgml.stats.version IS 'The version that scored.';
COMMENT ON COLUMN pgml.stats.calls IS 'Calls of the scoring functions (a row''s call, or a whole batch or score_into).';
COMMENT ON COLUMN pgml.stats.rows IS 'Rows answered: c_rows + fallback_rows.';
COMMENT ON COLUMN pgml.stats.c_rows IS 'Rows answered in C (LiteRT, no Python).';
COMMENT ON COLUMN pgml.stats.fallback_rows IS 'Rows answered by PL/Python (TensorFlow, text models, rows C leaves to it).';
COMMENT ON COLUMN pgml.stats.errors IS 'Calls that raised an ERROR (bad input, a model that cannot load).';
COMMENT ON COLUMN pgml.stats.total_ms IS 'Milliseconds spent in the scoring calls.';
COMMENT ON COLUMN pgml.stats.mean_ms IS 'total_ms per call.';
COMMENT ON COLUMN pgml.stats.loads IS 'Times a backend or worker made the version ready (a C plan compiled, or a PL/Python model loaded).';
COMMENT ON COLUMN pgml.stats.load_ms IS 'Milliseconds those loads took.';
COMMENT ON COLUMN pgml.stats.last_used IS 'When counts were last added (at the end of a transaction, or each second of a long statement).';
COMMENT ON FUNCTION pgml.stats_reset(text) IS
    'Forget pgml.stats'' counts of a model (''name'' or ''name@N''), or of all models; returns the versions forgotten.';
COMMENT ON FUNCTION pgml.stats_dropped() IS
    'Counts pgml.stats dropped for want of room (raise pgml.stats_max); NULL without shared memory.';

-- monitoring, as pg_stat_statements: anyone may look, admins reset
GRANT SELECT ON pgml.stats TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgml_internal.stats_entries(), pgml.stats_dropped() TO PUBLIC;
REVOKE ALL ON FUNCTION pgml.stats_reset(text), pgml_internal.stats_reset(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml.stats_reset(text), pgml_internal.stats_reset(bigint[])
    TO pgml_admin;
