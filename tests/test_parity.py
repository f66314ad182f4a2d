"""Scores from the database equal TensorFlow run directly in the client on the
reference data: max abs diff <= 1e-5 and the same arg-max, for every digit."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import rows

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def client_scores(mlp_dir, serving_dir, digits):
    x, _ = digits
    mlp = tf.saved_model.load(str(mlp_dir)).signatures["serving_default"]
    serving = tf.saved_model.load(str(serving_dir)).signatures["predict_images"]
    return {
        "mlp": mlp(pixels=tf.constant(x))["output_0"].numpy(),
        "mnist": serving(images=tf.constant(x))["scores"].numpy(),
    }


@pytest.mark.usefixtures("models", "inputs")
@pytest.mark.parametrize("model", ["mlp", "mnist"])
@pytest.mark.parametrize("column", ["pixels", "example"])
def test_database_scores_equal_client_tensorflow(engine, client_scores, model, column):
    signature = ", signature => 'predict_images'" if model == "mnist" else ""
    got = rows(
        engine, f"SELECT pgml.predict('{model}', {column}{signature}) FROM inputs ORDER BY id"
    )
    db = np.asarray([r[0] for r in got], dtype=np.float32)
    expected = client_scores[model]
    assert db.shape == expected.shape == (1797, 10)
    assert np.max(np.abs(db - expected)) <= TOLERANCE
    assert (db.argmax(axis=1) == expected.argmax(axis=1)).all()


@pytest.mark.usefixtures("models", "inputs")
@pytest.mark.parametrize("column", ["pixels", "example"])
def test_fast_path_equals_general_path(engine, column):
    """Per row, the fast path (rowpath.RowPath) answers; naming the output sends the
    same row through the general path. Both must give the same scores and classes."""
    got = rows(
        engine,
        f"SELECT pgml.predict('mlp', {column}), pgml.predict('mlp', {column}, 'output_0'), "
        f"pgml.predict_class('mlp', {column}), pgml.classify('mlp', {column}) "
        "FROM inputs ORDER BY id",
    )
    fast = np.asarray([r[0] for r in got], dtype=np.float32)
    general = np.asarray([r[1] for r in got], dtype=np.float32)
    assert fast.shape == (1797, 10) and np.array_equal(fast, general)
    assert [r[2] for r in got] == list(general.argmax(axis=1))
    assert [r[3] for r in got] == [str(c) for c in general.argmax(axis=1)]
