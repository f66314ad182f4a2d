"""Text models: a signature whose string input is text, not a serialized Example.

A Keras model with TextVectorization takes a string tensor that its graph does not
parse as a tf.Example. It used to be fed the whole serialized Example as its text (a
wrong answer, no error); now the Example's bytes feature of the input's name (or its
only feature) is the text, and the answers are TensorFlow's own.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from recipes import keras_lookups, keras_text
from test_native import SERVER_EXAMPLES, examples_around, outcome, status

from conftest import LABELS, built_model, new_engine, numbered_table, rows, sql_error
from pgml_ext import client
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models")

TEXTS = ["good movie", "awful acting", "great film", "bad movie", "film", ""]


@pytest.fixture(scope="module")
def text_model(engine) -> Path:
    out = built_model("text-model", keras_text)
    client.register_model(engine, "sentiment", out)
    return out


def _expected(path: Path) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    return fn(text=tf.constant([[t] for t in TEXTS]))["output_0"].numpy()


def test_text_input_is_fed_from_a_bytes_feature_not_the_whole_example(engine, text_model):
    described = rows(engine, "SELECT signature, runtime FROM pgml.models WHERE name = 'sentiment'")
    assert described[0][1] == "tensorflow"  # TextVectorization needs TensorFlow's ops
    want = _expected(text_model)
    with engine.connect() as conn:
        for i, text in enumerate(TEXTS):
            for name in ("text", "review"):  # by the input's name, or the only feature
                example = examples.encode({name: np.array([text.encode()], dtype=object)})
                got = conn.execute(
                    sa.text("SELECT pgml.predict('sentiment', CAST(:e AS bytea))"), {"e": example}
                ).scalar()
                assert np.abs(np.array(got) - want[i]).max() <= 1e-5, (text, name)
        batch = [examples.encode({"text": np.array([t.encode()], dtype=object)}) for t in TEXTS]
        classes = conn.execute(
            sa.text("SELECT pgml.predict_class_batch('sentiment', CAST(:b AS bytea[]))"),
            {"b": batch},
        ).scalar()
    assert classes == want.argmax(axis=1).tolist()
    assert len(set(want.argmax(axis=1).tolist())) > 1 or np.ptp(want[:, 0]) > 0.01


def test_a_text_column_feeds_a_text_model_directly(engine, text_model):
    """pgml.predict/classify/predict_class(model, text): no tf.Example to build."""
    want = _expected(text_model)
    numbered_table(engine, "reviews", "body text", TEXTS)
    got = rows(
        engine,
        "SELECT pgml.predict('sentiment', body), pgml.predict_class('sentiment', body), "
        "pgml.classify('sentiment', body) FROM reviews ORDER BY id",
    )
    scores = np.array([g[0] for g in got])
    assert np.abs(scores - want).max() <= 1e-5
    assert [g[1] for g in got] == want.argmax(axis=1).tolist()
    assert [g[2] for g in got] == [str(c) for c in want.argmax(axis=1)]
    assert rows(engine, "SELECT pgml.predict('sentiment', NULL::text)") == [(None,)]
    code, message, _ = sql_error(engine, "SELECT pgml.predict_value('sentiment', 'good')")
    assert code == "42809", message  # three scores: not a regressor


def test_text_for_a_model_without_a_text_input_says_what_it_takes(engine, text_model):
    code, message, hint = sql_error(engine, "SELECT pgml.predict('mlp', 'some words')")
    assert code == "42809" and "has no signature that takes text" in message, message
    assert "::bytea" in hint  # an unknown literal resolves to text: say how to pass bytes


def test_numbers_for_a_text_input_are_a_clean_error(engine, text_model):
    example = examples.encode({"text": np.array([1.0, 2.0], dtype=np.float32)})
    code, message, _ = sql_error(
        engine, "SELECT pgml.predict('sentiment', CAST(:e AS bytea))", e=example
    )
    assert code == "22023" and "reads text" in message


def test_tensorflow_errors_keep_their_cause():
    import tensorflow as tf

    from pgml_ext.indb.runtimes.tensorflow import error_cause

    @tf.function
    def parse(serialized):
        spec = {"x": tf.io.FixedLenFeature([2], tf.int64)}
        return tf.io.parse_example(serialized, spec)

    bad = examples.encode({"x": np.array([1.0, 2.0], dtype=np.float32)})
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        parse(tf.constant([bad]))
    cause, where = error_cause(info.value.message)
    assert "Graph execution error" not in cause
    assert "int64" in cause and "float" in cause, cause
    assert where is None or where.startswith("In TensorFlow op ")


def test_string_and_integer_lookups_run_on_litert_with_pgml_applying_the_tables(engine, db_url):
    """They used to fail: "has feature 'region' as bytes, the model reads numbers".
    LiteRT's converter has no hash tables: registration cuts the lookups off, pgml maps
    the features to ids by the tables in the plan, LiteRT runs the rest. The answers are
    TensorFlow's, unknown strings and ids included (the lookups' OOV bucket)."""
    import tensorflow as tf

    path = built_model("keras-lookups", keras_lookups)
    client.register_model(engine, "lookups", path)
    ((runtime, why, plan),) = rows(
        engine,
        "SELECT runtime, why, plan FROM pgml.describe('lookups') "
        "WHERE current AND signature = 'serving_default'",
    )
    assert runtime == "litert" and why.startswith("lookups by pgml"), why
    tables = {t["input"]: dict(zip(t["keys"], t["values"], strict=True)) for t in plan["lookups"]}
    assert set(tables["region"]) == {"north", "south", "east"} and set(tables["plan"]) == {1, 2, 3}
    described = subprocess.run(
        [sys.executable, "-m", "pgml_ext.cli", "describe", "lookups", "--url", db_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "looks up input region in 3 keys" in described, described
    cases = [
        (33.0, b"south", 2),
        (61.5, b"north", 1),
        (20.0, b"nowhere", 9),
        (45.0, b"", 3),
        (50.0, b"\xff\xfe", -(2**63)),  # bytes that are no UTF-8: unknown, as in TensorFlow
        (52.0, b"east", 2**63 - 1),
    ]
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    want = fn(
        age=tf.constant([[a] for a, _, _ in cases]),
        region=tf.constant([[r] for _, r, _ in cases]),
        plan=tf.constant([[p] for _, _, p in cases], tf.int64),
    )["output_0"].numpy()
    with engine.connect() as conn:
        before = status(conn)["native_rows"]
        for (age, region, plan), expected in zip(cases, want, strict=True):
            data = examples.encode(
                {"age": np.array([age], np.float32), "region": [region], "plan": np.array([plan])}
            )
            got = conn.execute(
                sa.text("SELECT pgml.predict('lookups', CAST(:e AS bytea))"), {"e": data}
            ).scalar()
            assert np.abs(np.array(got) - expected).max() <= 1e-5
        # the tables applied in C: no PL/Python per row
        assert status(conn)["native_rows"] - before == len(cases)
    code, message, _ = sql_error(
        engine,
        "SELECT pgml.predict('lookups', CAST(:e AS bytea))",
        e=examples.encode({"age": [1.0], "region": [1.0], "plan": [1]}),
    )
    assert code == "22023" and "'region'" in message, message


@pytest.fixture(scope="module")
def lookups_conn(engine, db_url):
    client.register_model(engine, "lookups_fuzz", built_model("keras-lookups", keras_lookups))
    conn_engine = new_engine(db_url)
    with conn_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        yield c
    conn_engine.dispose()


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=examples_around(["age", "region", "plan"], [b"north", b"south", b"east", b"", b"\xff"]))
def test_c_and_pl_python_look_up_any_example_alike(lookups_conn, data):
    """C's lookups (bytes and int64 keys by the plan's tables) against PL/Python's: the
    same scores and class, or the same ERROR, and never a crash."""
    sql = "SELECT pgml.predict('lookups_fuzz', :d), pgml.predict_class('lookups_fuzz', :d)"
    assert outcome(lookups_conn, sql, native=True, d=data) == outcome(
        lookups_conn, sql, native=False, d=data
    )


def test_bytes_a_driver_sends_untyped_score_as_the_example(engine, digits):
    """pg8000 sends bytes untyped: the parameter resolves to the text forms, holding
    bytea's text form; for a model with no text input that is the Example itself."""
    example = examples.encode({"x": digits[0][5]})
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        cur.execute(
            "SELECT pgml.classify('mlp_labels', %s), pgml.predict_class(%s, %s)",
            (example, "mlp", example),
        )
        untyped = cur.fetchone()
        cur.execute(
            "SELECT pgml.classify('mlp_labels', %s::bytea), pgml.predict_class('mlp', %s::bytea)",
            (example, example),
        )
        typed = list(cur.fetchone())
        assert list(untyped) == typed and typed[0] == LABELS[typed[1]]
    finally:
        raw.close()
