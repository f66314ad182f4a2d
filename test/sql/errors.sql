-- pg_regress: errors are clear and name the model; NULL gives NULL.
\set VERBOSITY terse
SELECT pgml.classify('mlp', NULL::bytea) IS NULL AS null_in_null_out;
SELECT pgml.classify('no_such_model', array_fill(0::float4, ARRAY[784]));
SELECT pgml.classify('mlp@7', array_fill(0::float4, ARRAY[784]));
SELECT pgml.predict('mlp', ARRAY[1, 2, 3]::float4[]);
SELECT pgml.predict('mlp', ARRAY[1, NULL]::float4[]);
SELECT pgml.predict('mnist', '\xdeadbeef'::bytea);
SELECT pgml.predict('mnist', ''::bytea);
SELECT pgml.predict('mnist', array_fill(0::float4, ARRAY[784]), output => 'nope');
SELECT pgml.predict('mnist', array_fill(0::float4, ARRAY[784]), signature => 'nope');
SELECT pgml.create_function('f', 'mnist', 'regress');
SELECT pgml.load_model('x', '/nonexistent/dir');
-- the session still works
SELECT count(*) AS models FROM pgml.models;
