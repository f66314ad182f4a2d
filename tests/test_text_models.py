"""Text models: a signature whose string input is text, not a serialized Example.

A Keras model with TextVectorization takes a string tensor that its graph does not
parse as a tf.Example. It used to be fed the whole serialized Example as its text (a
wrong answer, no error); now the Example's bytes feature of the input's name (or its
only feature) is the text, and the answers are TensorFlow's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from conftest import built_model, rows, sql_error
from pgml_ext import client
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models")

TEXTS = ["good movie", "awful acting", "great film", "bad movie", "film", ""]


def _build(path: str) -> None:
    import keras

    keras.utils.set_random_seed(0)
    vec = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=6)
    vec.adapt(["good movie", "bad movie", "great film", "awful film", "good film", "acting"])
    inp = keras.Input(shape=(1,), dtype="string", name="text")
    x = vec(inp)
    x = keras.layers.Embedding(
        51, 4, embeddings_initializer=keras.initializers.RandomUniform(-3, 3)
    )(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    keras.Model(inp, out).export(path)


@pytest.fixture(scope="module")
def text_model(engine) -> Path:
    out = built_model("text-model", _build)
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
