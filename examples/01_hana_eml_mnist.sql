-- The SAP HANA EML flow (seed 000/001), with no model server: tf.Example BLOBs in a
-- table, scored by TF Serving's MNIST export into a table of classes and scores.
-- Run: psql -f examples/01_hana_eml_mnist.sql "$(pgml-ext db url | sed 's/+pg8000//; s/postgres$/pgml_examples/')"
\set ON_ERROR_STOP on
DROP TABLE IF EXISTS mnist_results;

-- one call: every BLOB through the model's classify signature, results into a table
SELECT pgml.score_into('mnist', 'SELECT id, image FROM mnist_images', 'mnist_results')
       AS rows_scored;

SELECT r.key AS id, r.label AS predicted, i.label AS actual,
       round((r.scores ->> r.label)::numeric, 4) AS score
  FROM mnist_results r JOIN mnist_images i ON i.id = r.key
 ORDER BY r.key LIMIT 5;

SELECT round(avg((r.label = i.label::text)::int), 4) AS accuracy
  FROM mnist_results r JOIN mnist_images i ON i.id = r.key;
