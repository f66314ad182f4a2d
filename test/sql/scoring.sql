-- pg_regress: the SQL API end to end. Models come from the paths in the environment
-- (the pytest fixture builds them); inputs are a few fixed vectors.
\getenv mlp_dir PGML_TEST_MLP_DIR
\getenv serving_dir PGML_TEST_SERVING_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgml_ext CASCADE;
RESET client_min_messages;

SELECT pgml.load_model('mlp', :'mlp_dir');
SELECT pgml.load_model('mnist', :'serving_dir', labels => ARRAY['0','1','2','3','4','5','6','7','8','9']);
SELECT name, version, runtime, current, pinned FROM pgml.models ORDER BY name;
SELECT name, jsonb_object_keys(signature) AS signature FROM pgml.models ORDER BY 1, 2;

-- an all-zero image and a NULL
CREATE TABLE inputs (id int, pixels float4[]);
INSERT INTO inputs VALUES (1, array_fill(0::float4, ARRAY[784])), (2, NULL);

SELECT id, pgml.predict_class('mnist', pixels) IS NOT NULL AS scored,
       array_length(pgml.predict('mnist', pixels), 1) AS n_scores,
       round(( SELECT sum(s) FROM unnest(pgml.predict('mlp', pixels)) s)::numeric, 3) AS total
  FROM inputs ORDER BY id;

-- create_function: classify(image) as written
SELECT pgml.create_function('classify', 'mnist');
SELECT id, classify(pixels) = pgml.classify('mnist', pixels) AS same FROM inputs ORDER BY id;

-- pinning and per-call versions
SELECT pgml.load_model('mlp', :'mlp_dir');
SELECT pgml.pin_model('mlp', 1);
SELECT name, version, current, pinned FROM pgml.models WHERE name = 'mlp' ORDER BY version;
SELECT pgml.predict_class('mlp@2', pixels) = pgml.predict_class('mlp', pixels) AS same
  FROM inputs WHERE id = 1;
SELECT pgml.unpin_model('mlp');
SELECT pgml.delete_model('mlp', 2);
SELECT name, version, current FROM pgml.models WHERE name = 'mlp';

-- The public functions are inlined SQL wrappers: the plan calls the C resolver and the
-- C scorer (with its PL/Python twin) directly, and all are parallel safe. The scorers
-- cost 100 cpu_operator_cost (C functions default to 1), or what their model's rows take
-- (src/scoring_cost.c), so big tables get parallel plans. A PgmlBlockScan over the scan
-- runs the scorer over blocks of rows (src/block_scan.c), 64 for a model this fast.
EXPLAIN (COSTS OFF, VERBOSE) SELECT pgml.classify('mnist', pixels) FROM inputs;
EXPLAIN (COSTS OFF, VERBOSE) SELECT classify(pixels) FROM inputs;
SELECT n.nspname, p.proname, p.proparallel, p.procost
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('pgml', 'pgml_internal') AND p.proname IN ('classify', 'predict',
       'predict_class', 'predict_batch', 'classify_batch', 'predict_class_batch',
       'model_ref', 'model_version', 'model_files', 'tensor', 'classify_tensor',
       'predict_tensor', 'predict_class_tensor', 'classify_native', 'predict_native',
       'predict_class_native', 'classify_tensor_native', 'predict_tensor_native',
       'predict_class_tensor_native', 'native_plan')
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2;
