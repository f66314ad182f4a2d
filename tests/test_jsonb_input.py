"""A jsonb object of features (to_jsonb(t), jsonb_build_object(...)) built into the
tf.Example a model reads: in C for a model with a C plan (src/row_example.c), by the
PL/Python twin otherwise and for whatever C leaves to it, which decides what fits.
Both must build the same Example from any document, or give the same ERROR."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recipes import keras_lookups, keras_named_inputs
from test_native import SERVER_EXAMPLES, outcome, python_loaded

from conftest import built_model, ddl, new_engine
from pgml_ext import client
from pgml_ext.indb import examples

CHURN = "churn_json"  # age, income (default 0.5) floats, plan int64: the plan parses Examples
LOOKUPS = "lookups_json"  # age floats, region bytes and plan int64 looked up by C's tables


@pytest.fixture(scope="module")
def json_conn(engine, db_url):
    client.register_model(
        engine, CHURN, built_model("serving-keras-named-inputs", keras_named_inputs)
    )
    client.register_model(engine, LOOKUPS, built_model("keras-lookups", keras_lookups))
    conn_engine = new_engine(db_url)
    with conn_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        yield c
    conn_engine.dispose()


def built(conn, model: str, document: str, native: bool):
    """('ok', {feature: its values' bytes}) or ('error', SQLSTATE, message): pgml.example
    of DOCUMENT (json text) on the chosen path, the Example decoded (C and PL/Python may
    write the features in another order)."""
    got = outcome(
        conn, "SELECT pgml.example(:m, CAST(:d AS jsonb))", native=native, m=model, d=document
    )
    if got[0] != "ok":
        return got
    (value,) = got[1][0]
    if value is None:
        return ("ok", None)
    decoded = examples.decode(bytes(value))
    return ("ok", {k: (v.dtype.kind, v.tolist() if v.dtype == object else v.tobytes())
                   for k, v in decoded.items()})  # fmt: skip


def test_c_builds_what_pl_python_builds_for_values_at_the_edges(json_conn):
    """Numbers as Python's json reads them: an integer is exact (2**53 + 1 stays odd), a
    whole float is that integer; a float or an integer beyond int64 for an int64 feature,
    a string for a number, a number for a string, a bool, a missing feature with no
    default: the PL/Python twin's ERROR, the same on both paths."""
    documents = [
        {"age": 0.5, "plan": 2},
        {"age": 0.5, "income": None, "plan": 2},  # null: the default
        {"age": [0.5], "income": [1e-45, 3.4e38], "plan": [2**53 + 1, -(2**63), 2**63 - 1]},
        {"age": 0.1, "plan": 1.0},
        {"age": 7, "plan": 2, "other": {"any": ["thing"]}},
        {"age": 1e39, "plan": 1},  # beyond float's range: infinity, as numpy casts it
        {"age": int("9" * 400), "plan": 1},  # beyond double's too
        {"age": [[0.5]], "plan": 1},  # nested: flattened by PL/Python
        {"age": [], "plan": 1},
        {"age": 0.5, "plan": 1.5},
        {"age": 0.5, "plan": 2**63},
        {"age": 0.5, "plan": 1e19},
        {"age": "old", "plan": 1},
        {"age": True, "plan": 1},
        {"age": [0.5, None], "plan": 1},
        {"plan": 1},
        [1, 2],
        "age",
    ]
    for document in documents:
        text = json.dumps(document)
        assert built(json_conn, CHURN, text, True) == built(json_conn, CHURN, text, False), text
    for document in [
        {"age": 33.0, "region": "south", "plan": 2},
        {"age": 33.0, "region": ["sü∂", ""], "plan": [1, 2]},
        {"age": 33.0, "region": 7, "plan": 2},
        {"age": 33.0, "region": "north", "plan": "2"},
    ]:
        text = json.dumps(document)
        assert built(json_conn, LOOKUPS, text, True) == built(json_conn, LOOKUPS, text, False)
    ok = built(json_conn, CHURN, json.dumps({"age": 0.5, "plan": 2**53 + 1}), True)
    assert np.frombuffer(ok[1]["plan"][1], np.int64).tolist() == [2**53 + 1]
    error = built(json_conn, CHURN, json.dumps({"age": 0.5, "plan": 2**63}), True)
    assert error[:2] == ("error", "22023") and "must be integers (int64)" in error[2]


def test_a_new_backend_builds_and_scores_jsonb_rows_without_python(engine, db_url, json_conn):
    """SELECT pgml.classify('churn', to_jsonb(c)) FROM customers c: built in C and scored
    in C, with the same answers as the PL/Python path; no PL/Python in the backend."""
    ddl(
        engine,
        "DROP TABLE IF EXISTS json_customers; "
        "CREATE TABLE json_customers AS SELECT i AS id, (i % 7) / 7.0 AS age, "
        "CASE WHEN i % 5 = 0 THEN NULL ELSE (i % 3) / 3.0 END AS income, i % 4 AS plan, "
        "'not read' AS note FROM generate_series(1, 300) i",
    )
    sql = (
        f"SELECT pgml.predict('{CHURN}', to_jsonb(c)), pgml.classify('{CHURN}', to_jsonb(c)) "
        "FROM json_customers c ORDER BY id"
    )
    session = new_engine(db_url)
    try:
        with session.connect() as c:
            c.execute(
                sa.text(f"SELECT pgml.predict('{CHURN}', '{{\"age\": 1, \"plan\": 1}}'::jsonb)")
            )
        with session.connect() as c:  # a new backend; the version's files are written
            native = c.execute(sa.text(sql)).all()
            assert not python_loaded(c)
    finally:
        session.dispose()
    general = outcome(json_conn, sql, native=False)
    assert general == ("ok", [tuple(r) for r in native]) and len(native) == 300


JSON_SCALARS = (
    st.integers(-(2**70), 2**70)
    | st.integers(-3, 5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
    | st.text(max_size=6)
    | st.sampled_from(["north", "south", "east"])
)
JSON_VALUES = (
    JSON_SCALARS
    | st.lists(JSON_SCALARS, max_size=3)
    | st.lists(st.lists(JSON_SCALARS, max_size=2), max_size=2)
)


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    document=st.dictionaries(
        st.sampled_from(["age", "income", "plan", "region", "other"]), JSON_VALUES
    )
    | JSON_VALUES,
    model=st.sampled_from([CHURN, LOOKUPS]),
)
def test_c_and_pl_python_build_any_document_alike(json_conn, document, model):
    """The differential (make fuzz runs more): any JSON document, on both paths, the same
    Example or the same ERROR, and never a crash."""
    text = json.dumps(document)
    assert built(json_conn, model, text, True) == built(json_conn, model, text, False), text


def test_a_var_len_feature_is_read_from_jsonb_and_described(engine):
    """A VarLenFeature bag of ids: pgml.predict(m, jsonb) dropped the key without a word,
    so {"tokens": [5]}, {"tokens": [42, 62, 38]} and no key scored alike (arg-max 61%
    of TensorFlow's); pgml.describe left the feature out."""
    from recipes import bag_of_ids

    client.register_model(engine, "bag_json", built_model("bag-of-ids", bag_of_ids))
    documents = [
        {"tokens": [5], "length": 1.0},
        {"tokens": [42, 62, 38], "length": 3.0},
        {"tokens": [], "length": 0.0},
        {"length": 2.0},
        {"tokens": [7, 7, 7, 7, 99]},
    ]
    with engine.connect() as conn:
        features = conn.exec_driver_sql("SELECT features FROM pgml.describe('bag_json')").scalar()
        assert features["tokens"]["dtype"] == "int64" and features["tokens"]["var_len"]
        for doc in documents:
            from_json = conn.execute(
                sa.text("SELECT pgml.predict('bag_json', CAST(:d AS jsonb))"),
                {"d": json.dumps(doc)},
            ).scalar()
            encoded = {k: np.asarray(v, np.int64 if k == "tokens" else np.float32)
                       for k, v in doc.items()}  # fmt: skip
            from_bytes = conn.execute(
                sa.text("SELECT pgml.predict('bag_json', :b)"), {"b": examples.encode(encoded)}
            ).scalar()
            assert np.allclose(from_json, from_bytes, atol=1e-6), doc
        scores = [
            conn.execute(
                sa.text("SELECT pgml.predict('bag_json', CAST(:d AS jsonb))"),
                {"d": json.dumps(doc)},
            ).scalar()
            for doc in documents[:2]
        ]
        assert not np.allclose(scores[0], scores[1])
        code = None
        try:
            conn.execute(
                sa.text("SELECT pgml.predict('bag_json', CAST(:d AS jsonb))"),
                {"d": json.dumps({"tokens": ["a"]})},
            ).scalar()
        except sa.exc.DatabaseError as e:
            code = e.orig.args[0]["C"]
        assert code == "22023"
