-- pgml_ext 0.1.0 -> 0.2.0: pgml.stats, the scoring of every backend and parallel worker
-- per model version (src/stats.c), and its functions; pgml.distribute() for Citus; rows
-- by column name (pgml.example/predict/classify/predict_class/predict_value(model, row));
-- jsonb objects of features built in C (pgml_internal.example_native); deleting the
-- pinned version needs force => true.
-- Nothing of 0.1.0 changes: its models, pins and answers stay as they were.
--
-- The habit: every release that changes sql/pgml_ext.sql adds sql/pgml_ext--FROM--TO.sql
-- with the same objects, and freezes the release's install script as
-- sql/pgml_ext--TO.sql; tests/test_upgrade.py checks that an upgraded database has what
-- a new one has.

-- Deleting the pinned version needs force => true (it changes what serves).
DROP FUNCTION pgml.delete_model(text, int);
CREATE FUNCTION pgml.delete_model(name text, version int DEFAULT NULL,
                                  force boolean DEFAULT false)
RETURNS int LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
DECLARE
    deleted int;
    pinned int;
BEGIN
    -- the pinned version serves: deleting it changes what serves, so only if asked
    IF NOT force AND EXISTS (SELECT 1 FROM pgml.pins p
                              WHERE p.name = delete_model.name AND p.version = delete_model.version) THEN
        RAISE EXCEPTION 'pgml: version % of model ''%'' is pinned: deleting it would change the version that serves',
            version, name
            USING ERRCODE = 'object_in_use',
                  HINT = format('Pin another version first (pgml.pin_model(%L, N)) or unpin it; '
                                'or pass force => true to delete it and serve the newest.', name);
    END IF;
    DELETE FROM pgml.pins p
     WHERE p.name = delete_model.name
       AND (delete_model.version IS NULL OR p.version = delete_model.version)
    RETURNING p.version INTO pinned;
    DELETE FROM pgml.model_versions m
     WHERE m.name = delete_model.name
       AND (delete_model.version IS NULL OR m.version = delete_model.version);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    IF pinned IS NOT NULL AND delete_model.version IS NOT NULL AND deleted > 0 THEN
        RAISE NOTICE 'pgml: model ''%'' was pinned to version %, which is deleted: it is unpinned',
            name, pinned
            USING HINT = 'The newest version serves now; pgml.pin_model pins another.';
    END IF;
    RETURN deleted;
END $$;
COMMENT ON FUNCTION pgml.delete_model(text, int, boolean) IS
    'Delete a version, or every version of a model; returns the versions deleted. The pinned version only with force => true.';
REVOKE ALL ON FUNCTION pgml.delete_model(text, int, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml.delete_model(text, int, boolean) TO pgml_admin;

-- A jsonb object of features is built into its tf.Example in C for a model with a C
-- plan (src/row_example.c); the PL/Python function is its twin, reached through C.
CREATE FUNCTION pgml_internal.example_native(ref text, features jsonb, signature text)
RETURNS bytea AS 'MODULE_PATHNAME', 'pgml_jsonb_example'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION pgml.example(model text, features jsonb, signature text DEFAULT NULL)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.example_native(pgml_internal.model_ref(model), features, signature)
$$;

-- A row value (a table's row, ROW(...) or a composite) by column name, converted in C
-- (src/row_example.c) to the tf.Example the model reads. SQL functions cannot take a
-- record: these are PL/pgSQL, one call into C and the bytea form each.
CREATE FUNCTION pgml_internal.row_example(ref text, input record, signature text)
RETURNS bytea AS 'MODULE_PATHNAME', 'pgml_row_example'
LANGUAGE C STABLE PARALLEL SAFE;

-- The planner sees each of them as its body (src/row_support.c): the row built in C,
-- then scored as any Example, over blocks of rows.
CREATE FUNCTION pgml_internal.row_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'pgml_row_support'
LANGUAGE C STRICT;

CREATE FUNCTION pgml.example(model text, input record, signature text DEFAULT NULL)
RETURNS bytea LANGUAGE plpgsql STABLE PARALLEL SAFE
SUPPORT pgml_internal.row_support AS $$
BEGIN
    RETURN pgml_internal.row_example(pgml_internal.model_ref(model), input, signature);
END $$;

CREATE FUNCTION pgml.predict(model text, input record, output text DEFAULT NULL,
                             signature text DEFAULT NULL)
RETURNS float4[] LANGUAGE plpgsql STABLE PARALLEL SAFE
SUPPORT pgml_internal.row_support AS $$
BEGIN
    RETURN pgml.predict(model, pgml.example(model, input, signature), output, signature);
END $$;

CREATE FUNCTION pgml.classify(model text, input record, signature text DEFAULT NULL,
                              output text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql STABLE PARALLEL SAFE
SUPPORT pgml_internal.row_support AS $$
BEGIN
    RETURN pgml.classify(model, pgml.example(model, input, signature), signature, output);
END $$;

CREATE FUNCTION pgml.predict_class(model text, input record, signature text DEFAULT NULL,
                                   output text DEFAULT NULL)
RETURNS int LANGUAGE plpgsql STABLE PARALLEL SAFE
SUPPORT pgml_internal.row_support AS $$
BEGIN
    RETURN pgml.predict_class(model, pgml.example(model, input, signature), signature, output);
END $$;

CREATE FUNCTION pgml.predict_value(model text, input record, output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS float4 LANGUAGE plpgsql STABLE PARALLEL SAFE
SUPPORT pgml_internal.row_support AS $$
BEGIN
    RETURN pgml.predict_value(model, pgml.example(model, input, signature), output, signature);
END $$;

COMMENT ON FUNCTION pgml.example(text, record, text) IS
    'A row (t, ROW(...), a composite) as the tf.Example the model reads, by column name, converted in C.';
COMMENT ON FUNCTION pgml.predict(text, record, text, text) IS
    'The scores of a row by column name: pgml.predict(model, t).';
COMMENT ON FUNCTION pgml.classify(text, record, text, text) IS
    'The top class label of a row by column name: pgml.classify(model, t).';
COMMENT ON FUNCTION pgml.predict_class(text, record, text, text) IS
    'The top class index of a row by column name: pgml.predict_class(model, t).';
COMMENT ON FUNCTION pgml.predict_value(text, record, text, text) IS
    'A regressor''s value for a row by column name: pgml.predict_value(model, t).';

-- Citus ---------------------------------------------------------------------------------
-- One row as score_into writes it ({"label", "class_index", "scores"}): the workers of a
-- score_into over a distributed table call it in one INSERT ... SELECT (bulk.py).
CREATE FUNCTION pgml_internal.score_row(ref text, input bytea, packed boolean)
RETURNS json LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.score_row(ref, input, packed)
$$;

-- pgml.distribute(), run once on a Citus coordinator after CREATE EXTENSION (Citus puts
-- pgml_ext on every worker): the model tables become reference tables (a copy on every
-- node, written through the coordinator), so that shard queries score next to their
-- shards and every node sees a new version, pin or deletion from its next statement.
-- - The foreign keys of chunks and flatbuffers are dropped on every node first (Citus
--   would otherwise convert the whole foreign-key graph at once and collide with the
--   tables the extension made on the workers), then made again between the reference
--   tables.
-- - The functions that read the model tables from inside a query (C resolves models
--   through them in shard queries and in parallel workers) may run a nested distributed
--   query (it is local: every node has a copy), and open no transaction block for it
--   (in a parallel worker that would need two-phase commit, which Citus refuses).
-- The model readers as a Citus node needs them (see below). The install script runs it
-- on a node that has Citus, so that a worker added later (Citus installs pgml_ext
-- there) has them at once; pgml.distribute() runs it on every node.
CREATE FUNCTION pgml_internal.citus_readers()
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pgml, pg_temp AS $$
DECLARE
    reader text;
BEGIN
    FOREACH reader IN ARRAY ARRAY[
        'pgml_internal.model_version(text)', 'pgml_internal.model_files(bigint)',
        'pgml_internal.model_document(bigint)', 'pgml_internal.model_identity(bigint)',
        'pgml_internal.stored_plan(bigint, text, boolean, text)', 'pgml_internal.row_cost(text)']
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET citus.allow_nested_distributed_execution = on',
                       reader);
        EXECUTE format('ALTER FUNCTION %s SET citus.select_opens_transaction_block = off',
                       reader);
    END LOOP;
END $$;

CREATE FUNCTION pgml.distribute()
RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog, pgml, pg_temp AS $$
DECLARE
    tables text[] := ARRAY['pgml.model_versions', 'pgml.model_chunks', 'pgml.model_litert',
                           'pgml.pins'];
    statements text[] := ARRAY[]::text[];
    statement text;
    failed text;
    distributed boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'pgml: pgml.distribute() is for a Citus coordinator, and this database has no Citus'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On one server nothing needs distributing; with Citus, CREATE EXTENSION citus first.';
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_dist_partition '
            'WHERE logicalrelid = ''pgml.model_versions''::regclass)' INTO distributed;
    IF NOT distributed THEN
        statements := ARRAY[
            'ALTER TABLE pgml.model_chunks DROP CONSTRAINT IF EXISTS model_chunks_model_id_fkey',
            'ALTER TABLE pgml.model_litert DROP CONSTRAINT IF EXISTS model_litert_model_id_fkey'];
    END IF;
    statements := statements || 'SELECT pgml_internal.citus_readers()'::text;
    FOREACH statement IN ARRAY statements LOOP
        EXECUTE statement;
        EXECUTE 'SELECT string_agg(format(''%s:%s: %s'', nodename, nodeport, result), ''; '') '
                'FROM run_command_on_workers($1) WHERE NOT success'
           INTO failed USING statement;
        IF failed IS NOT NULL THEN
            RAISE EXCEPTION 'pgml: % failed on a worker: %', statement, failed;
        END IF;
    END LOOP;
    IF distributed THEN
        RETURN 'the model tables were distributed already; the readers are set on every worker';
    END IF;
    FOREACH statement IN ARRAY tables LOOP
        EXECUTE 'SELECT create_reference_table($1)' USING statement;
    END LOOP;
    ALTER TABLE pgml.model_chunks ADD CONSTRAINT model_chunks_model_id_fkey
        FOREIGN KEY (model_id) REFERENCES pgml.model_versions (id) ON DELETE CASCADE;
    ALTER TABLE pgml.model_litert ADD CONSTRAINT model_litert_model_id_fkey
        FOREIGN KEY (model_id) REFERENCES pgml.model_versions (id) ON DELETE CASCADE;
    RETURN format('model tables are reference tables on %s workers; scoring runs next to the shards',
                  (SELECT count(*) FROM run_command_on_workers('SELECT 1')));
END $$;

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

COMMENT ON FUNCTION pgml.distribute() IS
    'On a Citus coordinator: make the model tables reference tables and set up the model readers on every node, so distributed tables are scored on their workers.';
REVOKE ALL ON FUNCTION pgml.distribute() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgml.example(text, record, text), pgml_internal.row_example(text, record, text),
    pgml.predict(text, record, text, text), pgml.classify(text, record, text, text),
    pgml.predict_class(text, record, text, text), pgml.predict_value(text, record, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml.example(text, record, text), pgml_internal.row_example(text, record, text),
    pgml.predict(text, record, text, text), pgml.classify(text, record, text, text),
    pgml.predict_class(text, record, text, text), pgml.predict_value(text, record, text, text)
    TO pgml_scorer;
REVOKE ALL ON FUNCTION pgml_internal.example_native(text, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgml_internal.row_support(internal) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgml_internal.citus_readers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml_internal.example_native(text, jsonb, text) TO pgml_scorer;
REVOKE ALL ON FUNCTION pgml_internal.example(text, jsonb, text) FROM pgml_scorer;
REVOKE ALL ON FUNCTION pgml_internal.score_row(text, bytea, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml_internal.score_row(text, bytea, boolean) TO pgml_scorer;
-- monitoring, as pg_stat_statements: anyone may look, admins reset
GRANT SELECT ON pgml.stats TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgml_internal.stats_entries(), pgml.stats_dropped() TO PUBLIC;
REVOKE ALL ON FUNCTION pgml.stats_reset(text), pgml_internal.stats_reset(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml.stats_reset(text), pgml_internal.stats_reset(bigint[])
    TO pgml_admin;

-- On a Citus node, the model readers as pgml.distribute() sets them: a worker added
-- after pgml.distribute() gets pgml_ext from Citus, and with it these.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM pgml_internal.citus_readers();
    END IF;
END $$;
