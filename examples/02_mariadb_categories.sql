-- The MariaDB flow (seed 004): one probability column per class, joined to a table of
-- categories, without pulling a single row out of the database.
-- Run: psql -f examples/02_mariadb_categories.sql "<URL of pgml_examples>"
\set ON_ERROR_STOP on
DROP TABLE IF EXISTS digit_probabilities;

SELECT pgml.score_into('digits', 'SELECT id, pixels FROM digits WHERE id < 15',
                       'digit_probabilities', layout => 'columns') AS rows_scored;

SELECT p.key AS id, c.name AS category, d.label AS actual,
       round(p.p_0::numeric, 3) AS p_zero, round(p.p_1::numeric, 3) AS p_one,
       round(greatest(p.p_0, p.p_1, p.p_2, p.p_3, p.p_4, p.p_5, p.p_6, p.p_7, p.p_8,
                      p.p_9)::numeric, 3) AS p_best
  FROM digit_probabilities p
  JOIN categories c ON c.id = p.class_index
  JOIN digits d ON d.id = p.key
 ORDER BY p.key;

-- the same in one statement, no predictions table: classify inline
SELECT c.name AS category, count(*) AS images
  FROM digits d JOIN categories c ON c.id = pgml.predict_class('digits', d.pixels)
 GROUP BY c.name, c.id ORDER BY c.id;
