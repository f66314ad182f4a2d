"""Batch forms (arrays in, a set or arrays out) and scoring a query into a table."""

import json

import pytest
import sqlalchemy as sa

from conftest import LABELS, committed, ddl, force_parallel_plans, rows, scalar, sql_error

pytestmark = pytest.mark.usefixtures("models", "inputs")


@pytest.mark.parametrize("model", ["mlp", "mnist"])
@pytest.mark.parametrize("column", ["example", "pixels"])
def test_predict_batch_equals_per_row(engine, model, column):
    per_row = rows(
        engine, f"SELECT pgml.predict('{model}', {column}) FROM inputs WHERE id < 64 ORDER BY id"
    )
    batch = rows(
        engine,
        f"SELECT s FROM pgml.predict_batch('{model}', "
        f"(SELECT array_agg({column} ORDER BY id) FROM inputs WHERE id < 64)) s",
    )
    assert len(batch) == 64
    for (a,), (b,) in zip(per_row, batch, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_batch_with_ordinality_and_nulls(engine):
    got = rows(
        engine,
        "SELECT n, s IS NULL FROM pgml.predict_batch('mlp', "
        "ARRAY[(SELECT example FROM inputs WHERE id = 1), NULL, "
        "(SELECT example FROM inputs WHERE id = 2)]) WITH ORDINALITY AS t(s, n)",
    )
    assert got == [(1, False), (2, True), (3, False)]


def test_classify_and_predict_class_batch(engine):
    labels = scalar(
        engine,
        "SELECT pgml.classify_batch('mlp_labels', array_agg(pixels ORDER BY id)) "
        "FROM inputs WHERE id < 10",
    )
    assert labels[:3] == ["zero", "one", "two"]
    idx = scalar(
        engine,
        "SELECT pgml.predict_class_batch('mnist', array_agg(example ORDER BY id)) "
        "FROM inputs WHERE id < 10",
    )
    assert idx[:5] == [0, 1, 2, 3, 4]
    agree = scalar(
        engine,
        """
        SELECT avg((b.c = i.label)::int) FROM inputs i
          JOIN unnest((SELECT pgml.predict_class_batch('mlp', array_agg(pixels ORDER BY id))
                         FROM inputs)) WITH ORDINALITY AS b(c, n) ON b.n = i.id + 1""",
    )
    assert agree > 0.95


def test_score_into_json(engine):
    n = committed(
        engine,
        "SELECT pgml.score_into('mlp', 'inputs', 'preds_json', input => 'example', "
        "chunk_size => 250)",
    )
    assert n == 1797
    assert (
        scalar(
            engine,
            "SELECT avg((p.class_index = i.label)::int) FROM preds_json p "
            "JOIN inputs i ON i.id = p.key",
        )
        > 0.95
    )
    doc = scalar(engine, "SELECT scores FROM preds_json WHERE key = 0")
    assert set(doc) == {str(i) for i in range(10)} and abs(sum(doc.values()) - 1) < 1e-4


def test_score_into_json_keeps_the_classes_order(engine):
    """json, not jsonb (which sorts keys by length): the scores of 'zero', 'one', ...
    'nine' read in class order. An older target's jsonb column still takes them."""
    committed(
        engine,
        "SELECT pgml.score_into('mlp_labels', 'inputs', 'preds_ordered', input => 'example')",
    )
    text = scalar(engine, "SELECT scores::text FROM preds_ordered WHERE key = 0")
    assert list(json.loads(text)) == LABELS
    assert scalar(engine, "SELECT pg_typeof(scores)::text FROM preds_ordered LIMIT 1") == "json"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE preds_jsonb (key int PRIMARY KEY, label text, class_index int, "
            "scores jsonb)"
        )
    committed(
        engine, "SELECT pgml.score_into('mlp_labels', 'inputs', 'preds_jsonb', input => 'pixels')"
    )
    assert scalar(engine, "SELECT count(*) FROM preds_jsonb WHERE scores ? 'seven'") == 1797


def test_score_into_columns_from_a_query(engine):
    n = committed(
        engine,
        """SELECT pgml.score_into('mlp_labels',
        'SELECT id, pixels FROM inputs WHERE id < 300', 'preds_cols', layout => 'columns',
        chunk_size => 64)""",
    )
    assert n == 300
    cols = [
        c
        for (c,) in rows(
            engine,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'preds_cols' ORDER BY ordinal_position",
        )
    ]
    assert cols[:3] == ["key", "label", "class_index"] and "p_seven" in cols
    assert scalar(engine, "SELECT label FROM preds_cols WHERE key = 7") == "seven"
    assert scalar(engine, "SELECT p_three > 0.5 FROM preds_cols WHERE key = 3")


def test_score_into_twice_replaces_the_rows_of_its_keys(engine):
    """A re-run used to append (40,000 rows for 20,000 keys); now it replaces by key."""
    sql = (
        "SELECT pgml.score_into('mlp', 'SELECT id, pixels FROM inputs WHERE id < {n}', "
        "'preds_again', layout => '{layout}')"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS preds_again")
        conn.exec_driver_sql(
            "CREATE TABLE preds_nokey (key int, label text, class_index int, scores jsonb)"
        )
    assert committed(engine, sql.format(n=50, layout="json")) == 50
    first = rows(engine, "SELECT key, label, scores FROM preds_again ORDER BY key")
    assert committed(engine, sql.format(n=80, layout="json")) == 80
    again = rows(engine, "SELECT key, label, scores FROM preds_again ORDER BY key")
    assert len(again) == 80 and again[:50] == first
    # float32's shortest text, not its float64 expansion
    text = scalar(engine, "SELECT scores::text FROM preds_again WHERE key = 0")
    values = [v.split(",")[0].strip(" }") for v in text.split(":")[1:]]
    significant = [v.lower().split("e")[0].replace(".", "").lstrip("0") for v in values]
    assert all(len(d) <= 9 for d in significant), text  # was 0.00000006113010186936663
    code, message, hint = sql_error(
        engine, "SELECT pgml.score_into('mlp', 'inputs', 'preds_nokey', input => 'pixels')"
    )
    assert code == "22023" and "no unique column 'key'" in message and "PRIMARY KEY" in hint


def test_score_into_errors(engine):
    code, message, _ = sql_error(
        engine, "SELECT pgml.score_into('mlp', 'inputs', 'x', layout => 'csv')"
    )
    assert code == "22023" and "layout" in message
    code, message, _ = sql_error(
        engine,
        "SELECT pgml.score_into('mlp', 'inputs', 'x')".replace(
            "'inputs'", "'SELECT id, label FROM inputs'"
        ),
    )
    assert code == "22023" and "no bytea or number array column" in message
    code, message, _ = sql_error(
        engine, "SELECT pgml.score_into('mlp', 'inputs', 'x', key => 'nope')"
    )
    assert code == "42704" and "no key column 'nope'" in message


def test_score_into_is_cancelled_between_chunks_and_leaves_nothing(engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE big AS SELECT g AS id, i.example FROM inputs i, "
                "generate_series(1, 100) g0, LATERAL (SELECT g0 * 10000 + i.id AS g) q"
            )
        )
    with engine.connect() as conn:
        conn.execute(sa.text("SET statement_timeout = '1s'"))
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.execute(
                sa.text("SELECT pgml.score_into('mlp', 'big', 'big_preds', chunk_size => 100)")
            )
        assert info.value.orig.args[0]["C"] == "57014"  # query_canceled
        conn.rollback()
    assert rows(engine, "SELECT 1 FROM pg_tables WHERE tablename = 'big_preds'") == []


def test_forced_parallel_plans_still_score(engine):
    """The scoring functions keep queries serial (see sql/pgml_ext.sql): forcing
    parallel plans must not break them."""
    with engine.connect() as conn:
        force_parallel_plans(conn)
        agree = conn.execute(
            sa.text("SELECT avg((pgml.predict_class('mlp', pixels) = label)::int) FROM inputs")
        ).scalar()
    assert agree > 0.95


def test_score_into_orders_classify_signature_scores_by_class(engine):
    """TF Serving's classify signature returns sorted top-k scores with their classes;
    the predictions table keeps one entry per class, whatever the order."""
    committed(
        engine,
        "SELECT pgml.score_into('mnist', 'SELECT id, example FROM inputs "
        "WHERE id < 20', 'mnist_preds', input => 'example')",
    )
    for key in (3, 7):
        doc = scalar(engine, "SELECT scores FROM mnist_preds WHERE key = :k", k=key)
        assert set(doc) == {str(i) for i in range(10)}
        assert max(doc, key=doc.get) == str(key)


@pytest.mark.parametrize(
    ("column", "damage", "words"),
    [
        ("pixels", "pixels[1:783]", "783"),
        ("example", "'\\x0a0b0c'::bytea", "not a serialized tf.train.Example"),
    ],
)
def test_score_into_names_the_row_it_cannot_score(engine, column, damage, words):
    """A user's bad row in a bulk path is a clean ERROR with the row's key, not an
    "internal error" about array shapes; nothing is written."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS odd_rows, odd_scored")
        conn.exec_driver_sql(
            f"CREATE TABLE odd_rows AS SELECT id, {column} FROM inputs WHERE id < 40"
        )
        conn.exec_driver_sql(f"UPDATE odd_rows SET {column} = {damage} WHERE id = 17")
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql("SELECT pgml.score_into('mlp', 'odd_rows', 'odd_scored')")
        fields = info.value.orig.args[0]
        conn.rollback()
    assert fields["C"] in ("22023", "22P03"), fields
    assert words in fields["M"] and "internal" not in fields["M"]
    assert "key 17" in fields.get("D", ""), fields
    assert scalar(engine, "SELECT to_regclass('odd_scored')") is None


def test_score_into_keeps_columns_and_says_which_version_scored(engine):
    ddl(engine, "DROP TABLE IF EXISTS kept")
    source = (
        "SELECT id, pixels, label AS digit, label::float8 / 2 AS half FROM inputs WHERE id < 30"
    )
    scored = (
        f"SELECT pgml.score_into('mlp_labels', '{source}', 'kept', keep => ARRAY['digit', 'half'])"
    )
    assert committed(engine, scored) == 30
    types = dict(
        rows(
            engine,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'kept'",
        )
    )
    assert types["digit"] == "integer" and types["half"] == "double precision"
    assert types["model"] == "text" and types["version"] == "integer"
    assert types["scored_at"] == "timestamp with time zone"
    got = rows(
        engine,
        "SELECT k.digit = i.label, k.half = i.label / 2.0, k.model, k.version, "
        "k.scored_at > now() - interval '1 minute' "
        "FROM kept k JOIN inputs i ON i.id = k.key ORDER BY k.key",
    )
    version = scalar(
        engine, "SELECT version FROM pgml.models WHERE name = 'mlp_labels' AND current"
    )
    assert got == [(True, True, "mlp_labels", version, True)] * 30
    first = scalar(engine, "SELECT max(scored_at) FROM kept")
    assert committed(engine, scored) == 30  # replaced, stamped anew
    assert scalar(engine, "SELECT count(*) FROM kept") == 30
    assert scalar(engine, "SELECT min(scored_at) FROM kept") > first


def test_score_into_refuses_columns_it_cannot_keep(engine):
    code, message, hint = sql_error(
        engine, "SELECT pgml.score_into('mlp', 'inputs', 'kept_bad', keep => ARRAY['label'])"
    )
    assert code == "22023" and "cannot keep column 'label'" in message and "AS" in hint
    code, message, _ = sql_error(
        engine, "SELECT pgml.score_into('mlp', 'inputs', 'kept_bad', keep => ARRAY['nope'])"
    )
    assert code == "42704" and "no column to keep 'nope'" in message


def test_score_into_an_older_target_gets_the_new_columns_and_double_arrays(engine):
    ddl(engine, "DROP TABLE IF EXISTS older_target")
    ddl(
        engine,
        "CREATE TABLE older_target "
        "(key int PRIMARY KEY, label text, class_index int, scores jsonb)",
    )
    source = "SELECT id, pixels::float8[] AS x FROM inputs WHERE id < 20"
    assert committed(engine, f"SELECT pgml.score_into('mlp', '{source}', 'older_target')") == 20
    got = rows(engine, "SELECT key, label, model FROM older_target ORDER BY key")
    want = rows(
        engine,
        "SELECT id, pgml.classify('mlp', pixels), 'mlp' FROM inputs WHERE id < 20 ORDER BY id",
    )
    assert got == want


# -- found by the round-3 probe ------------------------------------------------------------


def test_score_into_keeps_what_its_columns_hold(engine):
    """Kept columns lost their length (char(6) -> char(1), bit(3) -> bit(1)) and floats
    their digits under extra_float_digits = -3."""
    ddl(engine, "DROP TABLE IF EXISTS typed_src, typed_out")
    ddl(
        engine,
        "CREATE TABLE typed_src AS SELECT id, ('c' || id)::char(6) AS tag, B'101'::bit(3) AS b, "
        "id / 7.0::float8 AS f, pixels FROM inputs WHERE id < 20",
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL extra_float_digits = -3")
        written = conn.exec_driver_sql(
            "SELECT pgml.score_into('mlp', 'typed_src', 'typed_out', "
            "keep => ARRAY['tag', 'b', 'f'])"
        ).scalar()
        assert written == 20
        assert conn.exec_driver_sql("SHOW extra_float_digits").scalar() == "-3"
    got = rows(
        engine,
        "SELECT o.tag = s.tag AND o.b = s.b AND o.f = s.f FROM typed_out o "
        "JOIN typed_src s ON s.id = o.key",
    )
    assert got == [(True,)] * 20
    assert scalar(engine, "SELECT max(length(tag)) FROM typed_out") == 3  # 'c10'..'c19'


def test_score_into_runs_one_query_of_the_source_only(engine):
    """A source that closes its subquery and adds statements of its own ran them (a
    sequence moved, a DROP TABLE ran) before the call failed."""
    ddl(engine, "DROP SEQUENCE IF EXISTS injected; CREATE SEQUENCE injected")
    source = (
        "select id, pixels from inputs) s; select nextval(''injected''); "
        "select id, pixels from (select id, pixels from inputs"
    )
    code, message, hint = sql_error(
        engine, f"SELECT pgml.score_into('mlp', '{source}', 'injected_out')"
    )
    assert code == "42P11" and "source cannot be read" in message and "one query" in hint
    assert scalar(engine, "SELECT is_called FROM injected") is False


def test_score_into_says_which_arguments_are_null_and_which_keys_repeat(engine):
    given = {"source": "'inputs'", "target": "'nulls_out'"}
    for argument in ("source", "target", "key", "chunk_size", "layout"):
        named = ", ".join(f"{k} => {v}" for k, v in {**given, argument: "NULL"}.items())
        code, message, _ = sql_error(engine, f"SELECT pgml.score_into(model => 'mlp', {named})")
        assert code == "22004" and argument in message, (argument, message)
    code, message, _ = sql_error(
        engine,
        "SELECT pgml.score_into('mlp', 'SELECT id % 10 AS id, pixels FROM inputs', 'dup_out')",
    )
    assert code == "21000" and "same key" in message


def test_nan_scores_name_no_class(engine):
    """Scores with NaN (inputs far beyond the training range overflow the MLP) gave
    class 0 as if confident, and broke score_into's json."""
    huge = "array_fill(1e38::real, ARRAY[784])"
    assert all(
        v != v for v in scalar(engine, f"SELECT pgml.predict('mlp', {huge})")
    )  # the scores themselves are what the model gives
    for native in ("on", "off"):
        for call in (f"pgml.classify('mlp', {huge})", f"pgml.predict_class('mlp', {huge})"):
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
                with pytest.raises(sa.exc.DatabaseError) as info:
                    conn.exec_driver_sql(f"SELECT {call}").all()
                fields = info.value.orig.args[0]
                assert fields["C"] == "22003" and "NaN" in fields["M"], (native, call)
    code, message, _ = sql_error(
        engine,
        f"SELECT pgml.score_into('mlp', 'SELECT 1 AS id, {huge} AS pixels', 'nan_out')",
    )
    assert code == "22003" and "NaN" in message


def test_number_arrays_of_a_domain_score_as_their_base_type(engine):
    ddl(engine, "DROP DOMAIN IF EXISTS posreal CASCADE; DROP DOMAIN IF EXISTS pixels784 CASCADE")
    ddl(engine, "CREATE DOMAIN posreal AS real CHECK (VALUE >= 0)")
    ddl(engine, "CREATE DOMAIN pixels784 AS real[] CHECK (cardinality(VALUE) = 784)")
    ddl(engine, "DROP TYPE IF EXISTS digit_row; CREATE TYPE digit_row AS (pixels pixels784)")
    got = rows(
        engine,
        "SELECT pgml.classify('mlp', pixels::posreal[]), "
        "pgml.classify('mlp', ROW(pixels::pixels784)::digit_row), pgml.classify('mlp', pixels) "
        "FROM inputs WHERE id < 30 ORDER BY id",
    )
    assert all(a == b == c for a, b, c in got) and len(got) == 30
    ddl(engine, "DROP TYPE digit_row; DROP DOMAIN pixels784; DROP DOMAIN posreal")


def test_a_document_nested_too_deeply_is_a_clean_error(engine):
    deep = '\'{"pixels": ' + "[" * 5000 + "1" + "]" * 5000 + "}'"
    code, message, _ = sql_error(engine, f"SELECT pgml.classify('mlp', {deep}::jsonb)")
    assert code in ("54001", "22023"), message
    assert "internal error" not in message
