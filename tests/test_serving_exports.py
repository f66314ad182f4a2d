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
from test_fuzz import inputs as fuzz_inputs
from test_native import SERVER_EXAMPLES, outcome

from conftest import built_model, new_engine, numbered_table, rows, sql_error
from pgml_ext import client
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models")


def _keras_named_inputs(path: str) -> None:
    """parse_example -> a Keras model with three named inputs (float, float, int64)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    age = keras.Input((1,), name="age")
    income = keras.Input((1,), name="income")
    plan = keras.Input((1,), name="plan", dtype="int64")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(4, 3)(plan))
    x = keras.layers.Concatenate()([age, income, embedded])
    x = keras.layers.Dense(8, activation="relu")(x)
    model = keras.Model(
        {"age": age, "income": income, "plan": plan}, keras.layers.Dense(3, "softmax")(x)
    )
    spec = {
        "age": tf.io.FixedLenFeature([1], tf.float32),
        "income": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.5]),
        "plan": tf.io.FixedLenFeature([1], tf.int64),
    }

    class Serving(tf.Module):
        def __init__(self, model) -> None:
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            return {"probabilities": self.model(tf.io.parse_example(examples, spec))}

    module = Serving(model)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def _tf1_classify_and_regress(path: str) -> None:
    """A TF1 graph (SavedModelBuilder) with Estimator-style heads over parsed float and
    int64 features: classify (constant class names) and regress."""
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        serialized = v1.placeholder(tf.string, [None], name="input_example_tensor")
        parsed = v1.parse_example(
            serialized,
            {
                "f": v1.FixedLenFeature([3], tf.float32),
                "k": v1.FixedLenFeature([1], tf.int64, default_value=[2]),
            },
        )
        x = tf.concat([parsed["f"], tf.cast(parsed["k"], tf.float32)], axis=1)
        w = v1.Variable(rng.standard_normal((4, 2)).astype(np.float32), name="w")
        r = v1.Variable(rng.standard_normal((4, 1)).astype(np.float32), name="r")
        scores = tf.nn.softmax(tf.matmul(x, w))
        classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(scores)[0], 1])
        value = tf.matmul(x, r) + 0.5
        sess.run(v1.global_variables_initializer())
        sig = v1.saved_model.signature_def_utils
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(
            sess,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map={
                "serving_default": sig.classification_signature_def(serialized, classes, scores),
                "regression": sig.regression_signature_def(serialized, value),
            },
        )
        builder.save()


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
    path = built_model("serving-keras-named-inputs", _keras_named_inputs)
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
        engine, "churn_types", built_model("serving-keras-named-inputs", _keras_named_inputs)
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
    path = built_model("serving-tf1-heads", _tf1_classify_and_regress)
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


@st.composite
def _customer_examples(draw) -> bytes:
    """Examples around the churn model's spec: its features present or not, of each
    kind and of odd lengths, odd values, other features; sometimes mutated bytes."""
    ex = examples.example_class()()
    names = draw(st.lists(st.sampled_from(["age", "income", "plan", "other"]), max_size=4))
    for name in names:
        feature = ex.features.feature[name]
        kind = draw(st.sampled_from(["float_list", "int64_list", "bytes_list"]))
        size = draw(st.sampled_from([1, 1, 1, 0, 2]))
        if kind == "float_list":
            feature.float_list.value.extend(
                draw(st.lists(st.floats(width=32), min_size=size, max_size=size))
            )
        elif kind == "int64_list":
            feature.int64_list.value.extend(
                draw(
                    st.lists(
                        st.integers(-(2**63), 2**63 - 1) | st.integers(0, 3),
                        min_size=size,
                        max_size=size,
                    )
                )
            )
        else:
            feature.bytes_list.value.extend([b"x"] * size)
    data = ex.SerializeToString()
    if draw(st.booleans()):
        return data
    return (
        draw(fuzz_inputs) + data if draw(st.booleans()) else data[: draw(st.integers(0, len(data)))]
    )


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=_customer_examples())
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
        engine, "churn_fuzz", built_model("serving-keras-named-inputs", _keras_named_inputs)
    )
    conn_engine = new_engine(db_url)
    with conn_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        yield c
    conn_engine.dispose()
