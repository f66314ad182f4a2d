"""TF Serving / TFX style exports: signatures that parse serialized Examples in the graph.

Built by the usual recipes (not this project's): a TF2 serving function that parses
Examples into a Keras model with named inputs of several types, and a TF1 graph with
classification and regression SignatureDefs. Registration cuts each graph after its
parse and runs the rest on LiteRT; pgml parses the Examples by the spec read from the
graph (defaults included). Every answer must be TensorFlow's own.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recipes import keras_named_inputs, tf1_classify_and_regress
from test_native import SERVER_EXAMPLES, examples_around, outcome

from conftest import built_model, ddl, new_engine, numbered_table, rows, sql_error
from pgml_ext import client
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models")


def _tensorflow(path: Path, signature: str, batch: list[bytes]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures[signature]
    name = next(iter(fn.structured_input_signature[1]))
    return {k: v.numpy() for k, v in fn(**{name: tf.constant(batch)}).items()}


@pytest.fixture(scope="module")
def customers(engine) -> list[bytes]:
    rng = np.random.default_rng(7)
    batch = []
    for i in range(40):
        features = {
            "age": rng.random(1, np.float32),
            "income": rng.random(1, np.float32),
            "plan": np.array([i % 4]),
        }
        if i % 5 == 0:
            del features["income"]  # the graph's default, 0.5, stands in
        batch.append(examples.encode(features))
    numbered_table(engine, "customers", "example bytea", batch)
    return batch


def test_keras_model_behind_parse_example_runs_on_litert_with_tensorflow_answers(engine, customers):
    path = built_model("serving-keras-named-inputs", keras_named_inputs)
    client.register_model(engine, "churn", path)
    ((runtime, plan),) = rows(
        engine, "SELECT runtime, plan FROM pgml.describe('churn') WHERE current"
    )
    assert runtime == "litert"
    parsed = {i["feature"]: i for i in plan["parse"]}
    assert parsed["plan"]["dtype"] == "int64" and parsed["income"]["default"] == [0.5]
    want = _tensorflow(path, "serving_default", customers)["probabilities"]
    for native in ("on", "off"):
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
            before = conn.exec_driver_sql("SELECT pgml.backend_status()").scalar()
            got = conn.exec_driver_sql(
                "SELECT pgml.predict('churn', example), pgml.predict_class('churn', example) "
                "FROM customers ORDER BY id"
            ).all()
            batch = (
                conn.exec_driver_sql(
                    "SELECT pgml.predict_batch('churn', array_agg(example ORDER BY id)) "
                    "FROM customers"
                )
                .scalars()
                .all()
            )
            status = conn.exec_driver_sql("SELECT pgml.backend_status()").scalar()
        # native on: every row parsed and scored in C, defaults included (src/native_model.c)
        in_c = len(customers) * 2 if native == "on" else 0
        assert status["native_rows"] - before["native_rows"] == in_c, status
        scores = np.array([g[0] for g in got])
        assert np.abs(scores - want).max() <= 1e-5
        assert [g[1] for g in got] == want.argmax(1).tolist()
        assert np.abs(np.array(batch) - want).max() <= 1e-5


def test_a_wrong_feature_type_names_the_feature(engine, customers):
    client.register_model(
        engine, "churn_types", built_model("serving-keras-named-inputs", keras_named_inputs)
    )
    bad = examples.encode({"age": [0.5], "income": [0.5], "plan": np.array([1.0], np.float32)})
    code, message, detail = sql_error(
        engine, "SELECT pgml.predict('churn_types', CAST(:e AS bytea))", e=bad
    )
    assert code == "22023" and "'plan' as floats, the model reads integers" in message
    missing = examples.encode({"income": [0.5], "plan": [1]})
    code, message, _ = sql_error(
        engine, "SELECT pgml.predict('churn_types', CAST(:e AS bytea))", e=missing
    )
    assert code == "22023" and "no feature 'age'" in message


def test_tf1_classification_and_regression_signatures(engine):
    path = built_model("serving-tf1-heads", tf1_classify_and_regress)
    client.register_model(engine, "heads", path)
    described = dict(
        rows(engine, "SELECT signature, runtime FROM pgml.describe('heads') WHERE current")
    )
    assert described == {"serving_default": "litert", "regression": "litert"}
    rng = np.random.default_rng(5)
    batch = [
        examples.encode({"f": rng.random(3, np.float32), "k": [i % 3]})
        if i % 4
        else examples.encode({"f": rng.random(3, np.float32)})  # k defaults to 2
        for i in range(12)
    ]
    classified = _tensorflow(path, "serving_default", batch)
    regressed = _tensorflow(path, "regression", batch)["outputs"].ravel()
    with engine.connect() as conn:
        for i, example in enumerate(batch):
            label, scores, value = conn.execute(
                sa.text(
                    "SELECT pgml.classify('heads', CAST(:e AS bytea)), "
                    "pgml.predict('heads', CAST(:e AS bytea)), "
                    "pgml.predict_value('heads', CAST(:e AS bytea), signature => 'regression')"
                ),
                {"e": example},
            ).one()
            want = classified["scores"][i]
            assert np.abs(np.array(scores) - want).max() <= 1e-5
            assert label == classified["classes"][i][want.argmax()].decode()
            assert abs(value - regressed[i]) <= 1e-5
    code, message, _ = sql_error(
        engine,
        "SELECT pgml.classify('heads', CAST(:e AS bytea), signature => 'regression')",
        e=batch[0],
    )
    assert code == "42809" and "one value per row" in message


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=examples_around(["age", "income", "plan"], [b"x"]))
def test_c_and_pl_python_parse_any_customer_example_alike(native_conn, data):
    """The C parse of a multi-feature plan (float and int64 features, a default) against
    PL/Python's: the same scores and class, or the same ERROR, and never a crash."""
    sql = "SELECT pgml.predict('churn_fuzz', :d), pgml.predict_class('churn_fuzz', :d)"
    assert outcome(native_conn, sql, native=True, d=data) == outcome(
        native_conn, sql, native=False, d=data
    )


@pytest.fixture(scope="module")
def native_conn(engine, db_url):
    client.register_model(
        engine, "churn_fuzz", built_model("serving-keras-named-inputs", keras_named_inputs)
    )
    conn_engine = new_engine(db_url)
    with conn_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        yield c
    conn_engine.dispose()


def test_a_value_the_model_refuses_is_the_same_clean_error_every_time(native_conn):
    """plan = 4 is beyond the churn model's embedding table (4 ids): LiteRT refuses it.
    That is the input's fault (22023, saying what LiteRT says), the same on both paths
    and however often it happens (LiteRT's reporter keeps earlier failures)."""
    data = examples.encode({"age": np.array([0.5], np.float32), "plan": np.array([4])})
    sql = "SELECT pgml.predict('churn_fuzz', :d)"
    seen = {outcome(native_conn, sql, native=n, d=data) for n in (True, False, True, False)}
    assert len(seen) == 1, seen
    ((kind, code, message),) = seen
    assert kind == "error" and code == "22023" and "gather index out of bounds" in message
    assert message.count("failed to invoke") == 1, message


@pytest.fixture(scope="module")
def churn_rows(engine) -> str:
    path = built_model("serving-keras-named-inputs", keras_named_inputs)
    client.register_model(engine, "churn_rows", path)
    return "churn_rows"


@pytest.fixture(scope="module")
def customer_rows(engine, customers) -> str:
    """customer_rows(id, age float8, income numeric, plan int, note text): the
    customers' Examples as columns (income NULL where the Example has none)."""
    decoded = [examples.decode(e) for e in customers]
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS customer_rows")
        conn.exec_driver_sql(
            "CREATE TABLE customer_rows (id int, age float8, income numeric, plan int, note text)"
        )
        conn.execute(
            sa.text("INSERT INTO customer_rows VALUES (:i, :a, :n, :p, 'not read')"),
            [
                {
                    "i": i,
                    "a": float(d["age"][0]),
                    "n": float(d["income"][0]) if "income" in d else None,
                    "p": int(d["plan"][0]),
                }
                for i, d in enumerate(decoded)
            ],
        )
    return "customer_rows"


@pytest.mark.usefixtures("churn_rows", "customer_rows")
def test_rows_by_column_name_score_as_their_examples(engine, customers):
    """SELECT pgml.predict('churn', to_jsonb(c)) FROM customers c: each column feeds the
    feature of its name, typed as the model reads it (float8 and numeric columns into
    float features, int into int64), a NULL column is a missing feature (its default),
    other columns are not read; the same answers as the Examples, scored in C."""
    by_name = rows(
        engine,
        "SELECT pgml.predict('churn_rows', to_jsonb(c)), pgml.classify('churn_rows', to_jsonb(c)), "
        "pgml.predict_class('churn_rows', to_jsonb(c)) FROM customer_rows c ORDER BY id",
    )
    by_example = rows(
        engine,
        "SELECT pgml.predict('churn_rows', example), pgml.classify('churn_rows', example), "
        "pgml.predict_class('churn_rows', example) FROM customers ORDER BY id",
    )
    assert by_name == by_example and len(by_name) == len(customers)
    with engine.connect() as conn:  # the Examples built in PL/Python are scored in C
        status = "SELECT pgml.backend_status()"
        before = conn.exec_driver_sql(status).scalar()["native_rows"]
        conn.exec_driver_sql(
            "SELECT pgml.classify('churn_rows', to_jsonb(c)) FROM customer_rows c"
        ).all()
        assert conn.exec_driver_sql(status).scalar()["native_rows"] - before == len(customers)
    named = "jsonb_build_object('age', 0.5, 'income', 0.25, 'plan', 2)"
    assert rows(engine, f"SELECT pgml.classify('churn_rows', {named})") == rows(
        engine,
        f"SELECT pgml.classify('churn_rows', pgml.example('churn_rows', {named}))",
    )


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("jsonb_build_object('income', 0.25, 'plan', 2)", "no value for feature 'age'"),
        (
            "jsonb_build_object('age', 0.5, 'plan', 'gold')",
            "'plan' of model 'churn_rows' must be integers",
        ),
        ("jsonb_build_object('age', 0.5, 'plan', 1.5)", "must be integers (int64), not 1.5"),
        (
            "jsonb_build_object('age', 'old', 'plan', 1)",
            "'age' of model 'churn_rows' must be numbers",
        ),
        ("'[1, 2]'::jsonb", "takes a jsonb object"),
    ],
)
@pytest.mark.usefixtures("churn_rows")
def test_a_row_that_does_not_fit_names_the_column(engine, document, words):
    code, message, _ = sql_error(engine, f"SELECT pgml.predict('churn_rows', {document})")
    assert code == "22023" and words in message


@pytest.mark.usefixtures("churn_rows")
def test_a_row_value_scores_as_its_example_converted_in_c(engine, customers, customer_rows):
    """SELECT pgml.classify('churn', c) FROM customers c: the row itself, each column
    feeding the feature of its name as the model's plan reads it (float8 and numeric into
    floats, int into int64s), built into a tf.Example in C; a NULL column is a missing
    feature (its default), other columns are not read."""
    answers = "pgml.predict('churn_rows', {x}), pgml.classify('churn_rows', {x}), " + (
        "pgml.predict_class('churn_rows', {x})"
    )
    by_row = rows(engine, f"SELECT {answers.format(x='c')} FROM customer_rows c ORDER BY id")
    by_example = rows(engine, f"SELECT {answers.format(x='example')} FROM customers ORDER BY id")
    assert by_row == by_example and len(by_row) == len(customers)
    # the Example C builds holds what the stored Example holds
    built = [
        examples.decode(bytes(r[0]))
        for r in rows(
            engine, "SELECT pgml.example('churn_rows', c) FROM customer_rows c ORDER BY id"
        )
    ]
    for mine, theirs in zip(built, (examples.decode(e) for e in customers), strict=True):
        assert sorted(mine) == sorted(theirs)
        for name, values in theirs.items():
            np.testing.assert_array_equal(mine[name], values.astype(mine[name].dtype))
    # a subset of the columns, as a composite
    ddl(
        engine, "DROP TYPE IF EXISTS churn_input; CREATE TYPE churn_input AS (age float8, plan int)"
    )
    subset = rows(
        engine,
        "SELECT pgml.predict_class('churn_rows', ROW(c.age, c.plan)::churn_input), "
        "pgml.predict_class('churn_rows', jsonb_build_object('age', c.age, 'plan', c.plan)) "
        "FROM customer_rows c ORDER BY id",
    )
    assert all(a == b for a, b in subset)
    with engine.connect() as conn:  # built in C, scored in C: no Python on the way
        status = "SELECT pgml.backend_status()"
        before = conn.exec_driver_sql(status).scalar()
        conn.exec_driver_sql("SELECT pgml.classify('churn_rows', c) FROM customer_rows c").all()
        after = conn.exec_driver_sql(status).scalar()
        assert after["native_rows"] - before["native_rows"] == len(customers)
        assert after["general_rows"] == before["general_rows"]


@pytest.mark.usefixtures("churn_rows")
def test_a_row_is_built_in_c_and_scored_over_blocks(engine, customer_rows):
    """The planner sees pgml.classify(model, row) as its body (src/row_support.c): the
    row built by row_example in C, scored by the C scorer over blocks of rows, no
    PL/pgSQL call per row; named arguments land where they should. Row by row
    (pgml.block_rows = 1) gives the same answers."""
    sql = (
        "SELECT pgml.predict('churn_rows', c), pgml.classify('churn_rows', c), "
        "pgml.predict_class('churn_rows', c, signature => 'serving_default'), "
        "pgml.predict('churn_rows', c, output => 'probabilities') "
        "FROM customer_rows c ORDER BY id"
    )
    with engine.connect() as conn:
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN VERBOSE {sql}").scalars())
        assert "PgmlBlockScan" in plan and "row_example" in plan, plan
        assert "pgml.classify(" not in plan and "pgml.example(" not in plan, plan
        assert "'serving_default'" in plan and "'probabilities'" in plan, plan
        blocks = conn.exec_driver_sql(sql).all()
        conn.exec_driver_sql("SET pgml.block_rows = 1")
        assert conn.exec_driver_sql(sql).all() == blocks
    assert len(blocks) == 40 and {r[2] for r in blocks} <= {0, 1, 2}
    assert all(r[0] == r[3] for r in blocks)


@pytest.mark.parametrize(
    ("row", "code", "words"),
    [
        ("ROW(0.5::float8, 1)", "42703", "a ROW(...) needs a composite type"),
        ("(SELECT r FROM (SELECT 0.5::float8 AS age, 'gold'::text AS plan) r)", "42804",
         'column "plan" is text, and the model reads feature "plan" as integers'),
        ("(SELECT r FROM (SELECT 0.5::float8 AS age, 1.5::float8 AS plan) r)", "42804",
         "cast a number column to bigint"),
        ("(SELECT r FROM (SELECT ARRAY[0.5, NULL]::float8[] AS age, 1 AS plan) r)", "22004",
         'column "age" has a NULL element'),
        ("(SELECT r FROM (SELECT 1 AS plan) r)", "42703", "SELECT ... AS age"),
        ("(SELECT r FROM (SELECT NULL::float8 AS age, 1 AS plan) r)", "42703", "not NULL"),
    ],
)  # fmt: skip
@pytest.mark.usefixtures("churn_rows")
def test_a_row_that_does_not_fit_says_which_column(engine, row, code, words):
    got, message, hint = sql_error(engine, f"SELECT pgml.predict('churn_rows', {row})")
    assert got == code and words in f"{message} {hint}", (message, hint)


@pytest.fixture(scope="module")
def churn_tf_rows(engine) -> str:
    """The churn model served by TensorFlow: no C plan."""
    path = built_model("serving-keras-named-inputs", keras_named_inputs)
    client.register_model(engine, "churn_tf_rows", path, runtime="tensorflow")
    return "churn_tf_rows"


@pytest.mark.usefixtures("churn_tf_rows")
def test_a_row_for_a_model_tensorflow_serves_is_typed_by_its_columns(
    engine, customers, customer_rows
):
    """With no C plan (TensorFlow serves every signature), each column feeds the feature
    of its name typed by its own type; the model's parse decides."""
    ddl(
        engine,
        "DROP TYPE IF EXISTS churn_tf; "
        "CREATE TYPE churn_tf AS (age real, income real, plan bigint)",
    )
    by_row = rows(
        engine,
        "SELECT pgml.predict_class('churn_tf_rows', ROW(c.age, c.income, c.plan)::churn_tf) "
        "FROM customer_rows c ORDER BY id",
    )
    by_example = rows(
        engine, "SELECT pgml.predict_class('churn_tf_rows', example) FROM customers ORDER BY id"
    )
    assert by_row == by_example


ROW_COLUMNS = {  # column -> (SQL type, hypothesis strategy of its values)
    "age": ("float8", st.floats(allow_nan=True, allow_infinity=True)),
    "income": ("numeric", st.decimals(allow_nan=False, places=6, min_value=-1e9, max_value=1e9)),
    "plan": ("bigint", st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    "small": ("smallint", st.integers(min_value=-(2**15), max_value=2**15 - 1)),
    "flag": ("boolean", st.booleans()),
    "tags": (
        "text[]",
        # pg8000 sends a list as an array literal, where an unquoted NULL is a NULL
        st.lists(
            st.text(max_size=8).filter(lambda t: "\x00" not in t and t.strip().lower() != "null"),
            max_size=4,
        ),
    ),
    "blob": ("bytea", st.binary(max_size=16)),
    "weights": ("real[]", st.lists(st.floats(width=32, allow_nan=False), max_size=5)),
}


@pytest.mark.usefixtures("churn_rows", "churn_tf_rows")
@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    row=st.fixed_dictionaries({}, optional={k: s for k, (_, s) in ROW_COLUMNS.items()}),
    model=st.sampled_from(["churn_rows", "churn_tf_rows"]),
)
def test_the_c_example_of_any_row_is_what_protobuf_reads(native_conn, row, model):
    """src/row_example.c's encoding against protobuf's decoder (upb): the Example built
    for any row holds exactly the row's values, typed as the plan reads them (churn_rows:
    age and income floats, plan int64s, the rest not read) or by the columns' own types
    (churn_tf_rows, served by TensorFlow); or it is a clean ERROR (a type the feature
    cannot take), never a crash."""
    if not row:
        row = {"plan": 1}
    columns = ", ".join(f"CAST(:{k} AS {ROW_COLUMNS[k][0]}) AS {k}" for k in row)
    params = {k: (list(v) if isinstance(v, list) else v) for k, v in row.items()}
    try:
        built = native_conn.execute(
            sa.text(f"SELECT pgml.example(:m, r) FROM (SELECT {columns}) r"), {"m": model, **params}
        ).scalar()
    except sa.exc.DatabaseError as e:
        fields = e.orig.args[0]
        assert fields["C"] in ("42804", "42703"), fields  # a column the plan cannot take
        assert model == "churn_rows"
        return
    got = examples.decode(bytes(built))
    planned = {"age": np.float32, "income": np.float32, "plan": np.int64}
    expected = {}
    for k, v in row.items():
        if model == "churn_rows" and k not in planned:
            continue
        values = v if isinstance(v, list) else [v]
        kind = planned.get(k) if model == "churn_rows" else None
        if kind is None:
            sql_type = ROW_COLUMNS[k][0].rstrip("[]")
            kind = {
                "float8": np.float32,
                "numeric": np.float32,
                "real": np.float32,
                "bigint": np.int64,
                "smallint": np.int64,
                "boolean": np.int64,
            }.get(sql_type)
        if kind is None:  # text, bytea: bytes
            expected[k] = [t.encode() if isinstance(t, str) else bytes(t) for t in values]
        elif kind is np.float32:
            with np.errstate(over="ignore"):  # a double beyond float's range: infinity
                expected[k] = np.array([float(x) for x in values], np.float64).astype(np.float32)
        else:
            expected[k] = np.array([int(x) for x in values], np.int64)
    assert sorted(got) == sorted(expected)
    for k, want in expected.items():
        if isinstance(want, list):
            assert list(got[k]) == want
        elif k == "income":  # numeric goes to float through its text: within an ulp
            np.testing.assert_array_max_ulp(got[k], want, maxulp=1)
        else:
            np.testing.assert_array_equal(got[k], want)
