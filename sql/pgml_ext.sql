-- pgml_ext: score TensorFlow models inside PostgreSQL.
--
-- The single source of the extension's SQL; `make` builds extension/pgml_ext--VERSION.sql
-- from it. Every PL/Python body is one call into the pgml_ext.indb Python package, which
-- the server imports from the venv that scripts/bootstrap.sh puts on its path.
-- (`import a.b.c as m` rather than `from a.b import c`: on every call, the latter runs
-- importlib's Python-level fromlist handling, ~0.5 us per row.)

-- Schemas: pgml holds what users call (CREATE EXTENSION makes it); pgml_internal the
-- functions the public ones are built from, granted to as few roles as works.
-- CREATE EXTENSION takes a schema pgml that exists as it finds it: PostgresML's, or one
-- a user with CREATE on the database made first, whose functions would then answer
-- calls meant for ours and whose owner could drop our tables. Only an empty one of the
-- installing superuser's own (left by DROP EXTENSION) is taken.
DO $$
DECLARE
    found record;
BEGIN
    SELECT n.oid, pg_get_userbyid(n.nspowner) AS owner, n.nspowner = current_user::regrole AS ours,
           EXISTS (SELECT FROM pg_class WHERE relnamespace = n.oid)
           OR EXISTS (SELECT FROM pg_proc WHERE pronamespace = n.oid)
           OR EXISTS (SELECT FROM pg_type WHERE typnamespace = n.oid)
           OR EXISTS (SELECT FROM pg_operator WHERE oprnamespace = n.oid) AS used
      INTO found FROM pg_namespace n WHERE n.nspname = 'pgml';
    IF found.used OR NOT found.ours THEN
        RAISE EXCEPTION 'pgml_ext: the schema pgml exists and is not pgml_ext''s'
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = format('It is owned by %s%s.', found.owner,
                                  CASE WHEN found.used THEN ' and holds objects' ELSE '' END),
                  HINT = 'Install pgml_ext in a database without a schema pgml (PostgresML '
                         'uses that name too), or rename or drop that schema first.';
    END IF;
END
$$;
CREATE SCHEMA pgml_internal;
COMMENT ON SCHEMA pgml_internal IS
    'pgml_ext internals: called by the pgml functions and by C, not by users.';

-- Models --------------------------------------------------------------------------------

-- What a model name may be (the table's CHECK), and the clear ERROR registration gives
-- for any other before a byte is uploaded.
CREATE FUNCTION pgml_internal.valid_model_name(name text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT name ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,62}$'
$$;

CREATE FUNCTION pgml_internal.check_model_name(name text)
RETURNS void LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR NOT pgml_internal.valid_model_name(name) THEN
        RAISE EXCEPTION 'pgml: ''%'' is not a model name', name
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A model name starts with a letter or _, then up to 62 letters, '
                           'digits, _, . or -.',
                  HINT = 'Calls name version N of a model as ''name@N''; register under '
                         'the plain name.';
    END IF;
END $$;

CREATE TABLE pgml.model_versions (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (pgml_internal.valid_model_name(name)),
    version     int NOT NULL CHECK (version > 0),
    runtime     text NOT NULL,     -- requested at registration, then what serves it
    signatures  jsonb,             -- read from the SavedModel at registration
    runtimes    jsonb,             -- per signature: runtime and why (LiteRT parity check)
    labels      text[],
    options     jsonb NOT NULL DEFAULT '{}',  -- signature, feature_map, allow_unsafe_ops
    audit       jsonb,             -- the op audit of the SavedModel's graph (registration)
    size        bigint NOT NULL,
    checksum    text NOT NULL,     -- sha256 of the stored SavedModel archive
    native_plans jsonb,            -- how C scores each input form and signature (registration)
    created     timestamptz NOT NULL DEFAULT now(),
    created_by  name NOT NULL DEFAULT current_user,
    UNIQUE (name, version)
);
COMMENT ON TABLE pgml.model_versions IS 'Registered models, one row per version.';

-- The SavedModel itself (a tar archive) in 8 MB chunks: any backend on any server that
-- has the database can load it, with no files copied.
CREATE TABLE pgml.model_chunks (
    model_id  bigint NOT NULL REFERENCES pgml.model_versions (id) ON DELETE CASCADE,
    seq       int NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (model_id, seq)
);
ALTER TABLE pgml.model_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- LiteRT flatbuffers converted at registration, one per signature that matched
-- TensorFlow on sample inputs.
CREATE TABLE pgml.model_litert (
    model_id   bigint NOT NULL REFERENCES pgml.model_versions (id) ON DELETE CASCADE,
    signature  text NOT NULL,
    data       bytea NOT NULL,
    checksum   text NOT NULL,
    PRIMARY KEY (model_id, signature)
);

-- A pinned version is used instead of the newest one.
CREATE TABLE pgml.pins (
    name     text PRIMARY KEY,
    version  int NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('pgml.model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('pgml.model_versions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgml.model_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('pgml.pins', '');
SELECT pg_catalog.pg_extension_config_dump('pgml.model_litert', '');

CREATE VIEW pgml.models AS
SELECT m.name,
       m.version,
       m.runtime,
       (SELECT jsonb_object_agg(s.key, jsonb_build_object(
                   'inputs', s.value -> 'inputs', 'outputs', s.value -> 'outputs',
                   'features', s.value -> 'features', 'plan', s.value -> 'plan',
                   -- the input forms C scores (the plans stored at registration)
                   'c_path', (SELECT coalesce(jsonb_agg(f.label ORDER BY f.n), '[]')
                                FROM (VALUES (1, 'example', 'tf.Example'),
                                             (2, 'tensor', 'float4[]')) f(n, form, label)
                               WHERE jsonb_typeof(m.native_plans -> f.form -> s.key)
                                     = 'array')))
          FROM jsonb_each(m.signatures) s) AS signature,
       m.runtimes,
       m.labels,
       m.audit,
       m.size,
       m.checksum,
       m.created,
       m.version = coalesce(p.version, max(m.version) OVER (PARTITION BY m.name)) AS current,
       coalesce(m.version = p.version, false) AS pinned
  FROM pgml.model_versions m
  LEFT JOIN pgml.pins p ON p.name = m.name
 WHERE m.signatures IS NOT NULL;
COMMENT ON VIEW pgml.models IS
    'Registered models: name, version, runtime, input/output signature, labels, op audit, size, created.';

-- What a model expects and how each signature runs, a row per version and signature:
-- its inputs, the tf.Example features it parses (with their defaults), its outputs,
-- the runtime serving it and why (LiteRT's parity check), the plan, the input forms
-- scored in C (c_path), labels and the op audit.
CREATE FUNCTION pgml.describe(model text)
RETURNS TABLE (version int, current boolean, pinned boolean, signature text,
               runtime text, why text, inputs jsonb, features jsonb, outputs jsonb,
               plan jsonb, c_path text[], labels text[], audit jsonb)
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pgml, pg_temp AS $$
    SELECT m.version, m.current, m.pinned, s.key,
           m.runtimes -> s.key ->> 'runtime', m.runtimes -> s.key ->> 'reason',
           s.value -> 'inputs', s.value -> 'features', s.value -> 'outputs',
           s.value -> 'plan', ARRAY(SELECT jsonb_array_elements_text(s.value -> 'c_path')),
           m.labels, m.audit
      FROM pgml.models m, jsonb_each(m.signature) s
     WHERE m.name = describe.model
     ORDER BY m.version, s.key
$$;
COMMENT ON FUNCTION pgml.describe(text) IS
    'Per version and signature: inputs, parsed features, outputs, runtime and why, the plan '
    'pgml scores it by (Example features parsed by pgml into the LiteRT inputs, vocabularies '
    'of string outputs, lookup tables, top k), the input forms scored in C (c_path), labels, '
    'audit.';

-- Model access for the scoring code. pgml_internal.model_ref (C) runs these as the extension's
-- owner, so scorers need no privilege on them or on the tables; nobody else may call
-- them. PARALLEL SAFE throughout: scoring runs in parallel workers too.

-- model.json, the row as the scoring code reads it: everything that decides an answer
-- but the blobs, whose checksums it holds. Its SHA-256 is the version's identity: the
-- name of its directory on each server.
CREATE FUNCTION pgml_internal.model_document(version_id bigint)
RETURNS text LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pgml, pg_temp AS $$
    SELECT jsonb_build_object(
               'id', v.id, 'name', v.name, 'version', v.version, 'runtime', v.runtime,
               'signatures', v.signatures, 'runtimes', coalesce(v.runtimes, '{}'),
               'labels', v.labels, 'options', v.options, 'size', v.size,
               'checksum', v.checksum,
               'litert', (SELECT coalesce(jsonb_object_agg(l.signature, jsonb_build_object(
                              'file', 'litert-' || l.n || '.tflite', 'checksum', l.checksum)),
                              '{}')
                            FROM (SELECT l.signature, l.checksum,
                                         row_number() OVER (ORDER BY l.signature) AS n
                                    FROM pgml.model_litert l WHERE l.model_id = v.id) l))::text
      FROM pgml.model_versions v WHERE v.id = version_id
$$;

CREATE FUNCTION pgml_internal.model_identity(version_id bigint)
RETURNS text LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pgml, pg_temp AS $$
    SELECT encode(sha256(convert_to(pgml_internal.model_document(version_id), 'UTF8')), 'hex')
$$;

-- pgml_internal.model_version('mnist' | 'mnist@3'): the row that serves a model reference now,
-- under the caller's snapshot, or a clear error. PL/pgSQL runs its queries without
-- subtransactions, so this works in parallel workers too.
CREATE FUNCTION pgml_internal.model_version(model text, OUT id bigint, OUT identity text)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pgml, pg_temp AS $$
DECLARE
    model_name text := split_part(model, '@', 1);
    wanted int;
    described boolean;
    found_version int;
    known int[];
BEGIN
    IF strpos(model, '@') > 0 THEN
        IF substr(model, strpos(model, '@') + 1) !~ '^[0-9]{1,9}$' THEN
            RAISE EXCEPTION 'pgml: bad model reference ''%''', model
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use ''name'' for the current version or ''name@N'' for version N.';
        END IF;
        wanted := substr(model, strpos(model, '@') + 1)::int;
    END IF;
    SELECT m.id, m.signatures IS NOT NULL, m.version
      INTO id, described, found_version
      FROM pgml.model_versions m
     WHERE m.name = model_name
       AND m.version = coalesce(wanted,
             (SELECT p.version FROM pgml.pins p WHERE p.name = model_name),
             (SELECT max(v.version) FROM pgml.model_versions v WHERE v.name = model_name));
    IF described THEN
        identity := pgml_internal.model_identity(id);
        RETURN;
    ELSIF FOUND THEN
        RAISE EXCEPTION 'pgml: model ''%'' v% was never described', model_name, found_version
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT array_agg(v.version ORDER BY v.version) INTO known
      FROM pgml.model_versions v WHERE v.name = model_name;
    IF known IS NOT NULL THEN
        RAISE EXCEPTION 'pgml: model ''%'' has no version %', model_name, wanted
            USING ERRCODE = 'undefined_object',
                  DETAIL = format('Versions: %s.', array_to_string(known, ', '));
    END IF;
    RAISE EXCEPTION 'pgml: model ''%'' is not registered', model_name
        USING ERRCODE = 'undefined_object',
              HINT = 'See SELECT name, version FROM pgml.models; register with '
                     'pgml_ext.register_model(...) or pgml.load_model(name, path).';
END $$;

-- The files of a model version, in the order pgml_internal.model_ref writes them: the
-- SavedModel archive (chunk by chunk), one flatbuffer per LiteRT signature, and last
-- model.json (pgml_internal.model_document). CHECKSUM: the sha256 the file must have (checked
-- as it is written); WHAT: the file's name in messages.
CREATE FUNCTION pgml_internal.model_files(version_id bigint)
RETURNS TABLE (file text, data bytea, checksum text, what text)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pgml, pg_temp AS $$
    WITH version AS (
        SELECT m.*, format('model %L v%s', m.name, m.version) AS what
          FROM pgml.model_versions m WHERE m.id = version_id)
    SELECT f.file, f.data, f.checksum, f.what FROM (
        SELECT 1 AS part, c.seq AS seq, 'savedmodel.tar' AS file, c.data, v.checksum, v.what
          FROM pgml.model_chunks c, version v WHERE c.model_id = version_id
        UNION ALL
        SELECT 2, l.n, 'litert-' || l.n || '.tflite', l.data, l.checksum,
               format('%s (LiteRT signature %s)', v.what, l.signature)
          FROM (SELECT l.*, row_number() OVER (ORDER BY l.signature) AS n
                  FROM pgml.model_litert l WHERE l.model_id = version_id) l, version v
        UNION ALL
        SELECT 3, 0, 'model.json', convert_to(pgml_internal.model_document(v.id), 'UTF8'),
               pgml_internal.model_identity(v.id), format('%s (model.json)', v.what)
          FROM version v
    ) f ORDER BY f.part, f.seq
$$;

-- Called by pgml_internal.model_ref before a version's directory is put in place: LiteRT's
-- verifier on every flatbuffer in DIR (XX001 if one is unsound), so C never maps one
-- that was not checked.
CREATE FUNCTION pgml_internal.check_model_files(dir text)
RETURNS void LANGUAGE plpython3u STRICT PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.check_model_files(dir)
$$;

-- The directory on this server that holds a model version's files, written there by
-- the first backend (or parallel worker) that needs them; resolved once per statement
-- and call site. src/pgml_ext.c says why this one function is C.
CREATE FUNCTION pgml_internal.model_ref(model text)
RETURNS text AS 'MODULE_PATHNAME', 'pgml_model_ref'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- Registration --------------------------------------------------------------------------

-- Admins change models only through these functions (SECURITY DEFINER, pinned
-- search_path): they may read the model tables, not write them, so every row and blob
-- was made by the extension's own code (registration converts, audits and checks).
-- SESSION_USER is who registers (CURRENT_USER is the owner here).

-- Step 1 of an upload: reserve the next version of NAME (serialised per name). Only a
-- superuser may ask for options.allow_unsafe_ops (see pgml_ext.indb.audit).
CREATE FUNCTION pgml_internal.begin_registration(
    name text, size bigint, checksum text, labels text[], runtime text, options jsonb)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
DECLARE
    next_version int;
    new_id bigint;
BEGIN
    PERFORM pgml_internal.check_model_name(name);
    IF coalesce((options ->> 'allow_unsafe_ops')::boolean, false)
       AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user) THEN
        RAISE EXCEPTION 'pgml: only a superuser may register a model with allow_unsafe_ops'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Graphs with file-system, network or Python ops run as the '
                           'server''s operating-system user.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pgml.model:' || name));
    SELECT coalesce(max(v.version), 0) + 1 INTO next_version
      FROM pgml.model_versions v WHERE v.name = begin_registration.name;
    INSERT INTO pgml.model_versions
           (name, version, runtime, labels, options, size, checksum, created_by)
    VALUES (name, next_version, runtime, labels, coalesce(options, '{}'), size, checksum,
            session_user)
    RETURNING id INTO new_id;
    RETURN new_id;
END $$;

-- Step 2: the archive's chunks, in order, into an upload still in progress.
CREATE FUNCTION pgml_internal.upload_chunk(model_id bigint, seq int, data bytea)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgml.model_versions m
                    WHERE m.id = upload_chunk.model_id AND m.signatures IS NULL) THEN
        RAISE EXCEPTION 'pgml: no model upload in progress with id %', model_id
            USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO pgml.model_chunks (model_id, seq, data) VALUES (model_id, seq, data);
END $$;

-- Step 3, after the chunks: check the blob, audit its ops, read its signatures,
-- convert to LiteRT where it matches TensorFlow (SAMPLES: optional numpy .npy of extra
-- inputs); returns the version.
CREATE FUNCTION pgml_internal.finish_registration(model_id bigint, samples bytea DEFAULT NULL)
RETURNS int LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
import pgml_ext.indb.api as api
return api.finish_registration(model_id, samples)
$$;

-- Reads the server's file system as its OS user: superusers and members of
-- pg_read_server_files only (checked inside), on top of EXECUTE (pgml_admin).
CREATE FUNCTION pgml.load_model(
    name text, path text, runtime text DEFAULT 'auto', labels text[] DEFAULT NULL,
    signature text DEFAULT NULL)
RETURNS int LANGUAGE plpython3u AS $$
import pgml_ext.indb.api as api
return api.load_model(name, path, runtime, labels, signature)
$$;
COMMENT ON FUNCTION pgml.load_model(text, text, text, text[], text) IS
    'Registers the SavedModel in a directory on the database server; returns the new version.';

-- Deletes one version (or all); a pin on a deleted version goes too, so the model
-- falls back to its newest remaining version. Returns the number of versions deleted.
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

CREATE FUNCTION pgml.pin_model(name text, version int)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgml.model_versions m
                    WHERE m.name = pin_model.name AND m.version = pin_model.version) THEN
        RAISE EXCEPTION 'pgml: model ''%'' has no version %', name, version
            USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO pgml.pins VALUES (name, version)
        ON CONFLICT ON CONSTRAINT pins_pkey DO UPDATE SET version = EXCLUDED.version;
END $$;

-- Pin NAME to the version before the one serving now (pinned or newest); returns it.
CREATE FUNCTION pgml.rollback_model(name text)
RETURNS int LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
DECLARE
    serving int;
    previous int;
BEGIN
    SELECT coalesce((SELECT p.version FROM pgml.pins p WHERE p.name = rollback_model.name),
                    max(m.version))
      INTO serving
      FROM pgml.model_versions m WHERE m.name = rollback_model.name;
    IF serving IS NULL THEN
        RAISE EXCEPTION 'pgml: model ''%'' is not registered', name
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT max(m.version) INTO previous
      FROM pgml.model_versions m
     WHERE m.name = rollback_model.name AND m.version < serving;
    IF previous IS NULL THEN
        RAISE EXCEPTION 'pgml: model ''%'' has no version before version %', name, serving
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'pgml.models lists its versions; pgml.pin_model pins any of them.';
    END IF;
    PERFORM pgml.pin_model(name, previous);
    RAISE NOTICE 'pgml: model ''%'' now serves version % (it served version %)',
        name, previous, serving;
    RETURN previous;
END $$;

-- True if NAME was pinned. An unknown model is an ERROR (a typo would otherwise pass).
CREATE FUNCTION pgml.unpin_model(name text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgml.model_versions m WHERE m.name = unpin_model.name) THEN
        RAISE EXCEPTION 'pgml: model ''%'' is not registered', name
            USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM pgml.pins p WHERE p.name = unpin_model.name;
    RETURN FOUND;
END $$;

-- Scoring -------------------------------------------------------------------------------
-- Each public function is a SQL wrapper that the planner inlines into the calling query:
--     pgml.classify(model, input)
--         =>  pgml_internal.classify_native(pgml_internal.model_ref(model), input,
--                                           output, signature)
-- pgml_internal.model_ref (C) resolves the model once per statement under its snapshot, so one
-- statement uses one version. pgml_internal.classify_native (C, src/native.c) scores the row
-- with LiteRT's C API when the model's plan allows it (pgml_internal.native_plan) and the row
-- is plain; otherwise, and for every error, it calls its PL/Python twin
-- pgml_internal.classify, which scores with the model loaded from that version's files. None
-- needs a subtransaction, so all of them are PARALLEL SAFE: a parallel plan scores in
-- its workers too. STABLE: same model, same snapshot, same answer. Not STRICT:
-- optional arguments default to NULL; NULL input gives NULL.

-- bytea: a serialized tf.train.Example.
CREATE FUNCTION pgml_internal.predict(ref text, input bytea, output text, signature text)
RETURNS float4[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict(ref, input, output, signature)
$$;

CREATE FUNCTION pgml_internal.classify(ref text, input bytea, output text,
                                       signature text)
RETURNS text LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.classify(ref, input, signature, output)
$$;

CREATE FUNCTION pgml_internal.predict_class(ref text, input bytea, output text,
                                            signature text)
RETURNS int LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict_class(ref, input, signature, output)
$$;

-- Arrays of numbers (real as it is; double precision, numeric and integers cast to real
-- as SQL would): packed into one bytea of float4 by pgml_internal.tensor (C) for C and
-- PL/Python, which would otherwise make a Python float of every element (~14 ns each,
-- more than scoring a small model); a NULL element is an ERROR there, and so is an
-- array of anything else.
CREATE FUNCTION pgml_internal.tensor(input anyarray, model text)
RETURNS bytea AS 'MODULE_PATHNAME', 'pgml_tensor'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION pgml_internal.predict_tensor(ref text, input bytea, output text, signature text)
RETURNS float4[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict(ref, api.tensor(input), output, signature)
$$;

CREATE FUNCTION pgml_internal.classify_tensor(ref text, input bytea, output text,
                                              signature text)
RETURNS text LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.classify(ref, api.tensor(input), signature, output)
$$;

CREATE FUNCTION pgml_internal.predict_class_tensor(ref text, input bytea, output text,
                                                   signature text)
RETURNS int LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict_class(ref, api.tensor(input), signature, output)
$$;

-- The planner's weight for a call scoring with MODEL (src/scoring_cost.c): LiteRT's
-- microseconds per row, measured at registration (the most of the serving version's
-- signatures), or NULL (TensorFlow, a version registered before, an unknown name).
CREATE FUNCTION pgml_internal.row_cost(model text)
RETURNS float8 LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pgml, pg_temp AS $$
    SELECT max((r.value ->> 'row_us')::float8)
      FROM pgml.model_versions m, jsonb_each(m.runtimes) r
     WHERE m.name = split_part(model, '@', 1)
       AND jsonb_typeof(m.runtimes) = 'object'
       AND jsonb_typeof(r.value -> 'row_us') = 'number'
       AND m.version = coalesce(
             CASE WHEN model ~ '@[0-9]{1,9}$' THEN split_part(model, '@', 2)::int END,
             (SELECT p.version FROM pgml.pins p WHERE p.name = split_part(model, '@', 1)),
             (SELECT max(v.version) FROM pgml.model_versions v
               WHERE v.name = split_part(model, '@', 1)))
$$;

-- SUPPORT of the C twins below: a call's cost per row is its model's (row_cost).
CREATE FUNCTION pgml_internal.scoring_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'pgml_scoring_support'
LANGUAGE C STRICT;

-- The C twins the public functions call (src/native.c); same arguments, same answers.
-- COST 100 (a row costs microseconds, not an operator's nanoseconds) when the model's
-- own time is not known; otherwise scoring_support gives the planner that time.
CREATE FUNCTION pgml_internal.predict_native(ref text, input bytea, output text, signature text)
RETURNS float4[] AS 'MODULE_PATHNAME', 'pgml_predict_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100
SUPPORT pgml_internal.scoring_support;

CREATE FUNCTION pgml_internal.classify_native(ref text, input bytea, output text,
                                              signature text)
RETURNS text AS 'MODULE_PATHNAME', 'pgml_classify_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100
SUPPORT pgml_internal.scoring_support;

CREATE FUNCTION pgml_internal.predict_class_native(ref text, input bytea, output text,
                                                   signature text)
RETURNS int AS 'MODULE_PATHNAME', 'pgml_predict_class_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100
SUPPORT pgml_internal.scoring_support;

CREATE FUNCTION pgml_internal.predict_tensor_native(ref text, input bytea, output text,
                                            signature text)
RETURNS float4[] AS 'MODULE_PATHNAME', 'pgml_predict_tensor_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100
SUPPORT pgml_internal.scoring_support;

CREATE FUNCTION pgml_internal.classify_tensor_native(ref text, input bytea, output text,
                                                     signature text)
RETURNS text AS 'MODULE_PATHNAME', 'pgml_classify_tensor_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100
SUPPORT pgml_internal.scoring_support;

CREATE FUNCTION pgml_internal.predict_class_tensor_native(ref text, input bytea, output text,
                                                          signature text)
RETURNS int AS 'MODULE_PATHNAME', 'pgml_predict_class_tensor_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100
SUPPORT pgml_internal.scoring_support;

-- Whether and how a model version, input form and signature can be scored natively:
-- [libLiteRt.so, flatbuffer file, signature, output, classes output, top k, only
-- feature, inputs, (input, feature, dtype, values, default) per input, lookup tables,
-- classes...] (src/native_model.c), or NULL. Registration stores them all in
-- pgml.model_versions.native_plans, which C reads through stored_plan with no Python;
-- native_plan works them out for versions registered before (called once per backend
-- and key by the functions above, through fmgr: no role may call it from SQL).
CREATE FUNCTION pgml_internal.stored_plan(version_id bigint, identity text, is_example bool,
                                          signature text)
RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pgml, pg_temp AS $$
    -- NULL: no plans stored for the row as it is now (its identity, the SHA-256 of
    -- model.json, is the one they were made for), so ask native_plan; {}: no C path
    SELECT (SELECT CASE WHEN p IS NULL THEN NULL
                        WHEN jsonb_typeof(p) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text(p))
                        ELSE '{}' END
              FROM (SELECT v.native_plans -> CASE WHEN is_example THEN 'example' ELSE 'tensor' END
                                          -> coalesce(signature, '') AS p
                      FROM pgml.model_versions v
                     WHERE v.id = version_id AND v.native_plans ->> 'identity' = identity) s)
$$;

CREATE FUNCTION pgml_internal.native_plan(ref text, is_example bool, signature text)
RETURNS text[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.native_plan(ref, is_example, signature)
$$;

CREATE FUNCTION pgml_internal.clear_native_cache()
RETURNS int AS 'MODULE_PATHNAME', 'pgml_clear_native_cache'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- The models src/native_model.c made ready in this backend, per input form and
-- signature: (ref, whether rows take C, ms to read the plan and compile the flatbuffer).
CREATE FUNCTION pgml_internal.native_models(OUT ref text, OUT usable bool, OUT load_ms float8)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'pgml_native_models'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION pgml_internal.native_status()
RETURNS text AS 'MODULE_PATHNAME', 'pgml_native_status'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION pgml.predict(model text, input bytea, output text DEFAULT NULL,
                             signature text DEFAULT NULL)
RETURNS float4[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_native(pgml_internal.model_ref(model), input, output, signature)
$$;

CREATE FUNCTION pgml.classify(model text, input bytea, signature text DEFAULT NULL,
                              output text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.classify_native(pgml_internal.model_ref(model), input, output, signature)
$$;

CREATE FUNCTION pgml.predict_class(model text, input bytea, signature text DEFAULT NULL,
                                   output text DEFAULT NULL)
RETURNS int LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_class_native(pgml_internal.model_ref(model), input, output,
                                              signature)
$$;

CREATE FUNCTION pgml.predict(model text, input anyarray, output text DEFAULT NULL,
                             signature text DEFAULT NULL)
RETURNS float4[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_tensor_native(pgml_internal.model_ref(model), pgml_internal.tensor(input, model),
                                       output, signature)
$$;

CREATE FUNCTION pgml.classify(model text, input anyarray, signature text DEFAULT NULL,
                              output text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.classify_tensor_native(pgml_internal.model_ref(model),
                                                pgml_internal.tensor(input, model), output,
                                                signature)
$$;

CREATE FUNCTION pgml.predict_class(model text, input anyarray, signature text DEFAULT NULL,
                                   output text DEFAULT NULL)
RETURNS int LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_class_tensor_native(pgml_internal.model_ref(model),
                                                     pgml_internal.tensor(input, model), output,
                                                     signature)
$$;

-- text: the input of a model whose signature takes one string that its graph does not
-- parse as a tf.Example (a Keras text model). No C twin: its rows go to PL/Python.
CREATE FUNCTION pgml_internal.predict_text(ref text, input text, output text, signature text)
RETURNS float4[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict(ref, input, output, signature)
$$;

CREATE FUNCTION pgml_internal.classify_text(ref text, input text, output text, signature text)
RETURNS text LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.classify(ref, input, signature, output)
$$;

CREATE FUNCTION pgml_internal.predict_class_text(ref text, input text, output text,
                                                 signature text)
RETURNS int LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict_class(ref, input, signature, output)
$$;

CREATE FUNCTION pgml.predict(model text, input text, output text DEFAULT NULL,
                             signature text DEFAULT NULL)
RETURNS float4[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_text(pgml_internal.model_ref(model), input, output, signature)
$$;

CREATE FUNCTION pgml.classify(model text, input text, signature text DEFAULT NULL,
                              output text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.classify_text(pgml_internal.model_ref(model), input, output, signature)
$$;

CREATE FUNCTION pgml.predict_class(model text, input text, signature text DEFAULT NULL,
                                   output text DEFAULT NULL)
RETURNS int LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_class_text(pgml_internal.model_ref(model), input, output,
                                            signature)
$$;
COMMENT ON FUNCTION pgml.predict(text, text, text, text) IS
    'Scores of a text model (one string input its graph does not parse as a tf.Example).';
COMMENT ON FUNCTION pgml.classify(text, text, text, text) IS
    'The top class label of a text model (one string input, not a tf.Example).';
COMMENT ON FUNCTION pgml.predict_class(text, text, text, text) IS
    'The top class index of a text model (one string input, not a tf.Example).';

-- The one value of a regressor's answer (pgml.predict's only element), as float4.
CREATE FUNCTION pgml_internal.only_value(scores float4[], model text)
RETURNS float4 AS 'MODULE_PATHNAME', 'pgml_only_value'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION pgml.predict_value(model text, input bytea, output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS float4 LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.only_value(pgml.predict(model, input, output, signature), model)
$$;

CREATE FUNCTION pgml.predict_value(model text, input anyarray, output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS float4 LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.only_value(pgml.predict(model, input, output, signature), model)
$$;
CREATE FUNCTION pgml.predict_value(model text, input text, output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS float4 LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.only_value(pgml.predict(model, input, output, signature), model)
$$;
COMMENT ON FUNCTION pgml.predict_value(text, text, text, text) IS
    'A text regressor''s value: pgml.predict when it gives exactly one value per row.';
COMMENT ON FUNCTION pgml.predict_value(text, bytea, text, text) IS
    'A regressor''s value: pgml.predict when it gives exactly one value per row.';
COMMENT ON FUNCTION pgml.predict_value(text, anyarray, text, text) IS
    'A regressor''s value: pgml.predict when it gives exactly one value per row.';

-- Rows by column name, and named values: a jsonb object (to_jsonb(t) of a row,
-- jsonb_build_object(...)) made into the tf.Example the model reads, each feature typed
-- as the model's signature reads it (pgml_ext.indb.signatures.example_from_document),
-- then scored as any Example (in C, in blocks). For a model with a C plan, C builds it
-- (src/row_example.c); anything else goes to the PL/Python twin, which builds it or
-- says what is wrong.
CREATE FUNCTION pgml_internal.example(ref text, features jsonb, signature text)
RETURNS bytea LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.example(ref, features, signature)
$$;

CREATE FUNCTION pgml_internal.example_native(ref text, features jsonb, signature text)
RETURNS bytea AS 'MODULE_PATHNAME', 'pgml_jsonb_example'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION pgml.example(model text, features jsonb, signature text DEFAULT NULL)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.example_native(pgml_internal.model_ref(model), features, signature)
$$;

CREATE FUNCTION pgml.predict(model text, input jsonb, output text DEFAULT NULL,
                             signature text DEFAULT NULL)
RETURNS float4[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml.predict(model, pgml.example(model, input, signature), output, signature)
$$;

CREATE FUNCTION pgml.classify(model text, input jsonb, signature text DEFAULT NULL,
                              output text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml.classify(model, pgml.example(model, input, signature), signature, output)
$$;

CREATE FUNCTION pgml.predict_class(model text, input jsonb, signature text DEFAULT NULL,
                                   output text DEFAULT NULL)
RETURNS int LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml.predict_class(model, pgml.example(model, input, signature), signature, output)
$$;

CREATE FUNCTION pgml.predict_value(model text, input jsonb, output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS float4 LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml.predict_value(model, pgml.example(model, input, signature), output, signature)
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
COMMENT ON FUNCTION pgml.example(text, jsonb, text) IS
    'A jsonb object of features (to_jsonb(row), named values) as the tf.Example the model reads.';
COMMENT ON FUNCTION pgml.predict(text, jsonb, text, text) IS
    'The scores of a row by column name: pgml.predict(model, to_jsonb(t)).';
COMMENT ON FUNCTION pgml.classify(text, jsonb, text, text) IS
    'The top class label of a row by column name: pgml.classify(model, to_jsonb(t)).';
COMMENT ON FUNCTION pgml.predict_class(text, jsonb, text, text) IS
    'The top class index of a row by column name.';
COMMENT ON FUNCTION pgml.predict_value(text, jsonb, text, text) IS
    'A regressor''s value for a row by column name.';

-- Batches: many inputs, one runtime call. bytea[] of Examples, or a 2-D array of numbers
-- with one input per row. NULL elements of a bytea[] give NULL results.
CREATE FUNCTION pgml_internal.predict_batch(ref text, inputs bytea[], output text, signature text)
RETURNS SETOF float4[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict_batch(ref, inputs, output, signature)
$$;

CREATE FUNCTION pgml_internal.predict_batch_tensor(ref text, inputs bytea, output text,
                                          signature text)
RETURNS SETOF float4[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.predict_batch(ref, api.tensor(inputs), output, signature)
$$;

CREATE FUNCTION pgml_internal.classify_batch(ref text, inputs bytea[], output text, signature text)
RETURNS text[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.top_class_batch(ref, inputs, signature, "label", output)
$$;

CREATE FUNCTION pgml_internal.classify_batch_tensor(ref text, inputs bytea, output text, signature text)
RETURNS text[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.top_class_batch(ref, api.tensor(inputs), signature, "label", output)
$$;

CREATE FUNCTION pgml_internal.predict_class_batch(ref text, inputs bytea[], output text, signature text)
RETURNS int[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.top_class_batch(ref, inputs, signature, "index", output)
$$;

CREATE FUNCTION pgml_internal.predict_class_batch_tensor(ref text, inputs bytea, output text, signature text)
RETURNS int[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS $$
import pgml_ext.indb.api as api
return api.top_class_batch(ref, api.tensor(inputs), signature, "index", output)
$$;

-- classify_batch and predict_class_batch go through C twins too (src/native.c): chunks
-- of plain inputs scored in one LiteRT call each, anything else to PL/Python.
CREATE FUNCTION pgml_internal.classify_batch_native(ref text, inputs bytea[], output text,
                                                    signature text)
RETURNS text[] AS 'MODULE_PATHNAME', 'pgml_classify_batch_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100;

CREATE FUNCTION pgml_internal.classify_batch_tensor_native(ref text, inputs bytea, output text,
                                                           signature text)
RETURNS text[] AS 'MODULE_PATHNAME', 'pgml_classify_batch_tensor_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100;

CREATE FUNCTION pgml_internal.predict_class_batch_native(ref text, inputs bytea[], output text,
                                                         signature text)
RETURNS int[] AS 'MODULE_PATHNAME', 'pgml_predict_class_batch_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100;

CREATE FUNCTION pgml_internal.predict_class_batch_tensor_native(ref text, inputs bytea, output text,
                                                                signature text)
RETURNS int[] AS 'MODULE_PATHNAME', 'pgml_predict_class_batch_tensor_native'
LANGUAGE C STABLE PARALLEL SAFE COST 100;

CREATE FUNCTION pgml.predict_batch(model text, inputs bytea[], output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS SETOF float4[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_batch(pgml_internal.model_ref(model), inputs, output, signature)
$$;

CREATE FUNCTION pgml.predict_batch(model text, inputs anyarray, output text DEFAULT NULL,
                                   signature text DEFAULT NULL)
RETURNS SETOF float4[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_batch_tensor(pgml_internal.model_ref(model), pgml_internal.tensor(inputs, model),
                                 output, signature)
$$;

CREATE FUNCTION pgml.classify_batch(model text, inputs bytea[], signature text DEFAULT NULL,
                                    output text DEFAULT NULL)
RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.classify_batch_native(pgml_internal.model_ref(model),
        inputs, output, signature)
$$;

CREATE FUNCTION pgml.classify_batch(model text, inputs anyarray, signature text DEFAULT NULL,
                                    output text DEFAULT NULL)
RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.classify_batch_tensor_native(pgml_internal.model_ref(model),
        pgml_internal.tensor(inputs, model), output, signature)
$$;

CREATE FUNCTION pgml.predict_class_batch(model text, inputs bytea[], signature text DEFAULT NULL,
                                         output text DEFAULT NULL)
RETURNS int[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_class_batch_native(pgml_internal.model_ref(model),
        inputs, output, signature)
$$;

CREATE FUNCTION pgml.predict_class_batch(model text, inputs anyarray, signature text DEFAULT NULL,
                                         output text DEFAULT NULL)
RETURNS int[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pgml_internal.predict_class_batch_tensor_native(pgml_internal.model_ref(model),
        pgml_internal.tensor(inputs, model), output, signature)
$$;

-- Score a whole table or query into TARGET (created if missing) in chunks: columns
-- key (its primary key: a second run replaces the rows of its keys), the source's KEEP
-- columns, label, class_index, scores (json {label: score} in class order) or, with
-- layout 'columns',
-- one float4 column per class, then model, version and scored_at. One transaction: all
-- rows or none. Returns rows written.
CREATE FUNCTION pgml.score_into(model text, source text, target text,
                                key text DEFAULT 'id', input text DEFAULT NULL,
                                chunk_size int DEFAULT 1000, layout text DEFAULT 'json',
                                keep text[] DEFAULT NULL)
RETURNS bigint LANGUAGE plpython3u AS $$
import pgml_ext.indb.api as api
return api.score_into(model, source, target, key, input, chunk_size, layout, keep)
$$;

-- fn_name(bytea) and fn_name(anyarray: real, double precision, numeric, integers) in the current schema, bound to MODEL, so that
-- `SELECT classify(image) FROM inputs` works as written. The SQL bodies are inlined
-- by the planner, so they cost nothing over calling pgml.* directly.
CREATE FUNCTION pgml.create_function(fn_name text, model text, kind text DEFAULT 'classify')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    result_type text;
    input_type text;
BEGIN
    result_type := CASE kind WHEN 'classify' THEN 'text'
                             WHEN 'predict' THEN 'float4[]'
                             WHEN 'predict_class' THEN 'int' END;
    IF result_type IS NULL THEN
        RAISE EXCEPTION 'pgml: unknown kind ''%''', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use classify, predict or predict_class.';
    END IF;
    -- a model that is not registered (yet) would make functions that fail on every row
    IF NOT EXISTS (SELECT 1 FROM pgml.models m
                    WHERE m.name = split_part(create_function.model, '@', 1)) THEN
        RAISE EXCEPTION 'pgml: model ''%'' is not registered', model
            USING ERRCODE = 'undefined_object',
                  HINT = 'Register it first (pgml-ext register, or pgml.load_model).';
    END IF;
    IF current_schema() IS NULL THEN
        RAISE EXCEPTION 'pgml: no current schema to create % in', fn_name
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    FOREACH input_type IN ARRAY ARRAY['bytea', 'anyarray'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION %I.%I(input %s) RETURNS %s '
            'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
            current_schema(), fn_name, input_type, result_type,
            format('SELECT pgml.%I(%L, input)', kind, model));
        EXECUTE format('COMMENT ON FUNCTION %I.%I(%s) IS %L',
            current_schema(), fn_name, input_type,
            format('pgml.%s with model %s', kind, model));
    END LOOP;
END $$;

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

-- This backend ---------------------------------------------------------------------------

CREATE FUNCTION pgml.cached_models(
    OUT name text, OUT version int, OUT runtime text, OUT load_ms float8)
RETURNS SETOF record LANGUAGE plpython3u AS $$
import pgml_ext.indb.api as api
return api.cached_models()
$$;

-- {tensorflow_imported, litert_imported, rss_mb, cached_models} of this backend.
CREATE FUNCTION pgml.backend_status()
RETURNS jsonb LANGUAGE plpython3u AS $$
import pgml_ext.indb.api as api
return api.backend_status()
$$;

-- Removes this database's model files (under the data directory, see pgml_internal.model_ref)
-- for versions that were deleted; returns the directories removed. A statement still
-- using such a version finds its files gone and asks to be run again.
CREATE FUNCTION pgml.prune_model_files()
RETURNS SETOF text LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pgml, pg_temp AS $$
import pgml_ext.indb.api as api
return api.prune_model_files()
$$;

CREATE FUNCTION pgml.clear_cache()
RETURNS int LANGUAGE plpython3u AS $$
import pgml_ext.indb.api as api
return api.clear_cache()
$$;

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

-- What \df+ and \d+ show: every public function, the view and its columns --------------

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
COMMENT ON FUNCTION pgml.distribute() IS
    'On a Citus coordinator: make the model tables reference tables and set up the model readers on every node, so distributed tables are scored on their workers.';
COMMENT ON FUNCTION pgml.stats_dropped() IS
    'Counts pgml.stats dropped for want of room (raise pgml.stats_max); NULL without shared memory.';

COMMENT ON COLUMN pgml.models.name IS 'The model''s name (calls use it, or name@version).';
COMMENT ON COLUMN pgml.models.version IS 'The version: 1, 2, ... per name, in registration order.';
COMMENT ON COLUMN pgml.models.runtime IS 'What serves it: litert, tensorflow, or litert+tensorflow (per signature).';
COMMENT ON COLUMN pgml.models.signature IS 'Per signature: inputs, outputs, parsed features, plan, and the input forms scored in C (c_path).';
COMMENT ON COLUMN pgml.models.runtimes IS 'Per signature: runtime, why (LiteRT''s parity check), largest difference from TensorFlow, LiteRT''s time per row (row_us).';
COMMENT ON COLUMN pgml.models.labels IS 'Class labels in score order, or NULL (classify answers the index or the model''s own classes).';
COMMENT ON COLUMN pgml.models.audit IS 'The op audit of the graph: op count, unsafe ops, who allowed them.';
COMMENT ON COLUMN pgml.models.size IS 'Bytes of the stored SavedModel archive.';
COMMENT ON COLUMN pgml.models.checksum IS 'SHA-256 of the stored SavedModel archive.';
COMMENT ON COLUMN pgml.models.created IS 'When this version was registered.';
COMMENT ON COLUMN pgml.models.current IS 'True on the version calls by name use: the pinned one, else the newest.';
COMMENT ON COLUMN pgml.models.pinned IS 'True on the version pinned with pgml.pin_model.';

COMMENT ON FUNCTION pgml.predict(text, bytea, text, text) IS
    'The scores of a serialized tf.Example (float4[]); output names a head.';
COMMENT ON FUNCTION pgml.predict(text, anyarray, text, text) IS
    'The scores of an array of numbers (float4[]); output names a head.';
COMMENT ON FUNCTION pgml.classify(text, bytea, text, text) IS
    'The top class label of a serialized tf.Example.';
COMMENT ON FUNCTION pgml.classify(text, anyarray, text, text) IS
    'The top class label of an array of numbers (real, double precision, numeric, integers).';
COMMENT ON FUNCTION pgml.predict_class(text, bytea, text, text) IS
    'The top class index of a serialized tf.Example.';
COMMENT ON FUNCTION pgml.predict_class(text, anyarray, text, text) IS
    'The top class index of an array of numbers.';
COMMENT ON FUNCTION pgml.predict_batch(text, bytea[], text, text) IS
    'The scores of many tf.Examples in one runtime call: a row per input, NULL for NULL.';
COMMENT ON FUNCTION pgml.predict_batch(text, anyarray, text, text) IS
    'The scores of the rows of a 2-D array of numbers in one runtime call: a row per input.';
COMMENT ON FUNCTION pgml.classify_batch(text, bytea[], text, text) IS
    'The top class labels of many tf.Examples, in one runtime call.';
COMMENT ON FUNCTION pgml.classify_batch(text, anyarray, text, text) IS
    'The top class labels of the rows of a 2-D array of numbers, in one runtime call.';
COMMENT ON FUNCTION pgml.predict_class_batch(text, bytea[], text, text) IS
    'The top class indexes of many tf.Examples, in one runtime call.';
COMMENT ON FUNCTION pgml.predict_class_batch(text, anyarray, text, text) IS
    'The top class indexes of the rows of a 2-D array of numbers, in one runtime call.';
COMMENT ON FUNCTION pgml.score_into(text, text, text, text, text, int, text, text[]) IS
    'Score a table or query into a predictions table (key, kept columns, label, class_index, scores, model, version, scored_at); a re-run replaces its keys.';
COMMENT ON FUNCTION pgml.create_function(text, text, text) IS
    'Make fn_name(bytea) and fn_name(anyarray) in the current schema, bound to a model: SELECT classify(image) FROM t.';
COMMENT ON FUNCTION pgml.delete_model(text, int, boolean) IS
    'Delete a version, or every version of a model; returns the versions deleted. The pinned version only with force => true.';
COMMENT ON FUNCTION pgml.pin_model(text, int) IS
    'Serve this version of the model to calls by name, instead of the newest.';
COMMENT ON FUNCTION pgml.unpin_model(text) IS
    'Serve the newest version again; true if the model was pinned.';
COMMENT ON FUNCTION pgml.rollback_model(text) IS
    'Pin the version before the one serving now; returns it.';
COMMENT ON FUNCTION pgml.cached_models() IS
    'The model versions this backend has loaded, by runtime, with their load time.';
COMMENT ON FUNCTION pgml.backend_status() IS
    'This backend''s runtimes, memory and rows scored in C and in PL/Python (jsonb).';
COMMENT ON FUNCTION pgml.prune_model_files() IS
    'Remove this server''s files of deleted versions; a row per directory removed.';
COMMENT ON FUNCTION pgml.clear_cache() IS
    'Forget the models this backend loaded (the next call loads them again).';

-- Privileges -----------------------------------------------------------------------------
-- pgml_scorer: score with registered models. pgml_admin (also a scorer): register,
-- delete and pin models, and pgml.load_model (reads the server's file system).
-- Everyone: see model metadata in pgml.models; nobody else reads the model blobs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgml_scorer') THEN
        CREATE ROLE pgml_scorer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgml_admin') THEN
        CREATE ROLE pgml_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('pgml_admin', 'pgml_scorer', 'MEMBER') THEN
        GRANT pgml_scorer TO pgml_admin;
    END IF;
END $$;

GRANT USAGE ON SCHEMA pgml TO PUBLIC;
-- the inlined bodies of the public functions name these: scorers look them up
GRANT USAGE ON SCHEMA pgml_internal TO pgml_scorer;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgml_internal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pgml FROM PUBLIC;
GRANT SELECT ON pgml.models TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgml FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgml.describe(text) TO PUBLIC;  -- metadata, as pgml.models
-- monitoring, as pg_stat_statements: anyone may look, admins reset
GRANT SELECT ON pgml.stats TO PUBLIC;
GRANT EXECUTE ON FUNCTION pgml_internal.stats_entries(), pgml.stats_dropped() TO PUBLIC;

-- Scorers: the public functions, and the internals their inlined bodies call (each
-- safe for any argument: C checks sizes and that a reference came from pgml_internal.model_ref
-- in the same statement). The PL/Python twins, native_plan and the model readers are
-- reached through C (fmgr, no privilege check) and granted to nobody.
GRANT EXECUTE ON FUNCTION
    pgml.predict(text, bytea, text, text), pgml.predict(text, anyarray, text, text),
    pgml.classify(text, bytea, text, text), pgml.classify(text, anyarray, text, text),
    pgml.predict_class(text, bytea, text, text), pgml.predict_class(text, anyarray, text, text),
    pgml.predict_value(text, bytea, text, text), pgml.predict_value(text, anyarray, text, text),
    pgml_internal.only_value(float4[], text),
    pgml.example(text, jsonb, text), pgml_internal.example_native(text, jsonb, text),
    pgml.example(text, record, text), pgml_internal.row_example(text, record, text),
    pgml.predict(text, record, text, text), pgml.classify(text, record, text, text),
    pgml.predict_class(text, record, text, text), pgml.predict_value(text, record, text, text),
    pgml.predict(text, jsonb, text, text), pgml.classify(text, jsonb, text, text),
    pgml.predict_class(text, jsonb, text, text), pgml.predict_value(text, jsonb, text, text),
    pgml.predict(text, text, text, text), pgml.classify(text, text, text, text),
    pgml.predict_class(text, text, text, text), pgml.predict_value(text, text, text, text),
    pgml_internal.predict_text(text, text, text, text),
    pgml_internal.classify_text(text, text, text, text),
    pgml_internal.predict_class_text(text, text, text, text),
    pgml.predict_batch(text, bytea[], text, text), pgml.predict_batch(text, anyarray, text, text),
    pgml.classify_batch(text, bytea[], text, text),
    pgml.classify_batch(text, anyarray, text, text),
    pgml.predict_class_batch(text, bytea[], text, text),
    pgml.predict_class_batch(text, anyarray, text, text),
    pgml.score_into(text, text, text, text, text, int, text, text[]),
    pgml_internal.score_row(text, bytea, boolean),
    pgml.create_function(text, text, text),
    pgml.cached_models(), pgml.backend_status(), pgml.clear_cache(),
    pgml_internal.model_ref(text), pgml_internal.tensor(anyarray, text),
    pgml_internal.native_status(), pgml_internal.clear_native_cache(),
    pgml_internal.native_models(),
    pgml_internal.predict_native(text, bytea, text, text),
    pgml_internal.predict_tensor_native(text, bytea, text, text),
    pgml_internal.classify_native(text, bytea, text, text),
    pgml_internal.classify_tensor_native(text, bytea, text, text),
    pgml_internal.predict_class_native(text, bytea, text, text),
    pgml_internal.predict_class_tensor_native(text, bytea, text, text),
    pgml_internal.classify_batch_native(text, bytea[], text, text),
    pgml_internal.classify_batch_tensor_native(text, bytea, text, text),
    pgml_internal.predict_class_batch_native(text, bytea[], text, text),
    pgml_internal.predict_class_batch_tensor_native(text, bytea, text, text),
    pgml_internal.predict_batch(text, bytea[], text, text),
    pgml_internal.predict_batch_tensor(text, bytea, text, text)
TO pgml_scorer;

GRANT EXECUTE ON FUNCTION
    pgml_internal.check_model_name(text), pgml_internal.valid_model_name(text),
    pgml_internal.begin_registration(text, bigint, text, text[], text, jsonb),
    pgml_internal.upload_chunk(bigint, int, bytea),
    pgml_internal.finish_registration(bigint, bytea),
    pgml.delete_model(text, int, boolean), pgml.pin_model(text, int), pgml.unpin_model(text),
    pgml.rollback_model(text),
    pgml.prune_model_files(),
    pgml.load_model(text, text, text, text[], text),
    pgml.stats_reset(text), pgml_internal.stats_reset(bigint[])
TO pgml_admin;
GRANT SELECT ON pgml.model_versions, pgml.model_chunks, pgml.model_litert, pgml.pins
    TO pgml_admin;
-- what version a reference means (pgml-ext export): over tables admins read anyway
GRANT EXECUTE ON FUNCTION
    pgml_internal.model_version(text), pgml_internal.model_identity(bigint), pgml_internal.model_document(bigint)
TO pgml_admin;

-- On a Citus node, the model readers as pgml.distribute() sets them: a worker added
-- after pgml.distribute() gets pgml_ext from Citus, and with it these.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM pgml_internal.citus_readers();
    END IF;
END $$;
