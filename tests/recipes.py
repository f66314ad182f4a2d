"""Models built by common recipes (not this project's), and rows to score them with.

TF Serving / TFX exports that parse Examples in their graph (TF2 serving functions and
TF1 SavedModelBuilder graphs), Keras 3 ``model.export`` with lookups on dict inputs, a
Keras text model and a two-head model. The tests build each once (conftest.built_model)
and check pgml's answers against TensorFlow's; ``benchmarks/real_models.py`` measures
them side by side with the reference MLP. Small data, no downloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def keras_named_inputs(path: str) -> None:
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


def tf1_classify_and_regress(path: str) -> None:
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


def with_default(path: str) -> None:
    import tensorflow as tf

    class Parsing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, serialized):
            spec = {
                "a": tf.io.FixedLenFeature([1], tf.float32),
                "b": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.5]),
            }
            f = tf.io.parse_example(serialized, spec)
            return {"scores": tf.concat([f["a"] * 2.0 + f["b"], -f["a"]], axis=1)}

    module = Parsing()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def bag_of_ids(path: str) -> None:
    """A VarLenFeature bag of token ids -> the mean of their embeddings -> 3 scores, and
    a dense float beside it (TF Serving / TFX style: the graph parses the Examples)."""
    import tensorflow as tf

    table = tf.constant(np.random.default_rng(7).normal(size=(100, 4)).astype(np.float32))
    head = tf.constant(np.random.default_rng(8).normal(size=(5, 3)).astype(np.float32))

    class Bag(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, serialized):
            spec = {
                "tokens": tf.io.VarLenFeature(tf.int64),
                "length": tf.io.FixedLenFeature([1], tf.float32, default_value=[1.0]),
            }
            f = tf.io.parse_example(serialized, spec)
            ids = tf.sparse.to_dense(f["tokens"], default_value=-1)
            mask = tf.cast(ids >= 0, tf.float32)
            vectors = tf.gather(table, tf.maximum(ids, 0)) * mask[..., None]
            mean = tf.reduce_sum(vectors, 1) / tf.maximum(tf.reduce_sum(mask, 1, True), 1.0)
            logits = tf.matmul(tf.concat([mean, f["length"]], 1), head)
            return {"scores": tf.nn.softmax(logits)}

    module = Bag()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def regressor(path: str) -> None:
    import tensorflow as tf

    w = tf.constant(np.linspace(-1, 1, 784, dtype=np.float32).reshape(784, 1))

    class Regressor(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
        def serve(self, x):
            return {"outputs": tf.matmul(x, w) + 0.25}

    module = Regressor()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def two_heads(path: str) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(2)
    w_digit = tf.constant(rng.standard_normal((784, 10)).astype(np.float32))
    w_shape = tf.constant(rng.standard_normal((784, 3)).astype(np.float32))

    class Heads(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
        def serve(self, x):
            return {"digit": tf.nn.softmax(x @ w_digit), "shape": tf.nn.softmax(x @ w_shape)}

    module = Heads()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def keras_text(path: str) -> None:
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


def keras_lookups(path: str) -> None:
    """Keras 3 model.export with Normalization, StringLookup and IntegerLookup on dict
    inputs: string and int64 features by name."""
    import keras

    keras.utils.set_random_seed(2)
    age = keras.Input((1,), name="age")
    region = keras.Input((1,), name="region", dtype="string")
    plan = keras.Input((1,), name="plan", dtype="int64")
    norm = keras.layers.Normalization()
    norm.adapt(np.array([[20.0], [40.0], [60.0]]))
    regions = keras.layers.StringLookup(
        vocabulary=["north", "south", "east"], output_mode="one_hot"
    )
    plans = keras.layers.IntegerLookup(vocabulary=[1, 2, 3], output_mode="one_hot")
    x = keras.layers.Concatenate()(
        [norm(age), keras.layers.Flatten()(regions(region)), keras.layers.Flatten()(plans(plan))]
    )
    x = keras.layers.Dense(8, activation="relu")(x)
    keras.Model(
        {"age": age, "region": region, "plan": plan}, keras.layers.Dense(3, "softmax")(x)
    ).export(path)


Features = dict[str, Any]  # one row: feature name -> its values


@dataclass(frozen=True)
class RealModel:
    """A recipe as the real-models benchmark scores it."""

    name: str
    build: Callable[[str], None]
    fixture: str  # its directory under $PGML_EXT_HOME/fixtures (conftest.built_model)
    rows: Callable[[np.random.Generator, int], list[Features]]
    output: str  # the scores TensorFlow's signature gives
    signature: str = "serving_default"
    score: str = "pgml.predict('{model}', example)"  # SQL; returns the scores

    def tensorflow(self, path: str | Path, rows: list[Features]) -> np.ndarray:
        """TensorFlow's own answers for ROWS: serialized Examples for a signature that
        parses them, else each input's values by name."""
        import tensorflow as tf

        from pgml_ext.indb import examples

        fn = tf.saved_model.load(str(path)).signatures[self.signature]
        spec = fn.structured_input_signature[1]
        if (
            len(spec) == 1
            and next(iter(spec.values())).dtype == tf.string
            and (next(iter(spec)) not in rows[0])
        ):
            feeds = {next(iter(spec)): tf.constant([examples.encode(r) for r in rows])}
        else:
            feeds = {
                k: tf.constant([list(r[k]) for r in rows], dtype=s.dtype) for k, s in spec.items()
            }
        return fn(**feeds)[self.output].numpy().reshape(len(rows), -1)


def _customers(rng: np.random.Generator, n: int) -> list[Features]:
    rows = []
    for i in range(n):
        row = {"age": rng.random(1, np.float32), "income": rng.random(1, np.float32)}
        row["plan"] = np.array([i % 4])
        if i % 5 == 0:
            del row["income"]  # the graph's default stands in
        rows.append(row)
    return rows


def _heads_rows(rng: np.random.Generator, n: int) -> list[Features]:
    rows = []
    for i in range(n):
        row = {"f": rng.standard_normal(3).astype(np.float32), "k": np.array([i % 5])}
        if i % 4 == 0:
            del row["k"]
        rows.append(row)
    return rows


def _lookup_rows(rng: np.random.Generator, n: int) -> list[Features]:
    regions = [b"north", b"south", b"east", b"west", b""]
    return [
        {
            "age": rng.uniform(18, 80, 1).astype(np.float32),
            "region": [regions[i % len(regions)]],
            "plan": np.array([i % 5]),
        }
        for i in range(n)
    ]


def _texts(rng: np.random.Generator, n: int) -> list[Features]:
    words = ["good", "bad", "movie", "film", "great", "awful", "acting", "plot"]
    return [
        {"text": [" ".join(rng.choice(words, int(rng.integers(1, 6)))).encode()]} for _ in range(n)
    ]


def _digits(rng: np.random.Generator, n: int) -> list[Features]:
    from pgml_ext import reference

    x, _ = reference.digits()
    return [{"x": x[i % len(x)]} for i in range(n)]


def _tf_serving_mnist(path: str) -> None:
    from pgml_ext import reference

    reference.export_serving_mnist(path)


REAL_MODELS = [
    RealModel("tf_serving_mnist", _tf_serving_mnist, "serving-mnist", _digits, "scores"),
    RealModel(
        "serving_parse_3_inputs",
        keras_named_inputs,
        "serving-keras-named-inputs",
        _customers,
        "probabilities",
    ),
    RealModel("tf1_classify", tf1_classify_and_regress, "serving-tf1-heads", _heads_rows, "scores"),
    RealModel(
        "tf1_regress",
        tf1_classify_and_regress,
        "serving-tf1-heads",
        _heads_rows,
        "outputs",
        signature="regression",
        score="ARRAY[pgml.predict_value('{model}', example, signature => 'regression')]",
    ),
    RealModel("keras_lookups", keras_lookups, "keras-lookups", _lookup_rows, "output_0"),
    RealModel("keras_text", keras_text, "text-model", _texts, "output_0"),
    RealModel(
        "two_heads",
        two_heads,
        "real-two-heads",
        _digits,
        "digit",
        score="pgml.predict('{model}', example, output => 'digit')",
    ),
]
