"""The reference workload of DESIGN.md: digits data and the models that score it.

Used by the demo, the tests and the benchmarks, so all three measure the same thing.
Data: scikit-learn's bundled ``load_digits`` (real handwriting, no download), each 8x8
image upsampled to 28x28 floats in [0, 1]. Models:
- ``train_mlp``: Flatten -> Dense 128 relu -> Dense 10 softmax (the MariaDB seed),
  exported with Keras 3 ``model.export``.
- ``export_serving_mnist``: the TensorFlow Serving MNIST export of the SAP HANA seed,
  built the same way (TF1 graph, SavedModelBuilder): ``predict_images`` takes float
  images, ``serving_default`` is a classification signature on serialized tf.Examples
  with ``classes`` (strings) and ``scores`` outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pgml_ext.indb import examples

FEATURE = "x"  # the tf.Example float_list feature holding the 784 pixels
N_DIGITS = 1797


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [1797, 784], labels int64 [1797])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([np.kron(img, np.ones((4, 4)))[2:30, 2:30] / 16 for img in d.images])
    return imgs.reshape(len(imgs), 784).astype(np.float32), d.target.astype(np.int64)


def cycled(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits()
    idx = np.arange(n) % len(x)
    return x[idx], y[idx]


def serialize(pixels: np.ndarray) -> bytes:
    return examples.encode({FEATURE: pixels})


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    return tf


def train_mlp(out_dir: str | os.PathLike, epochs: int = 8, seed: int = 0) -> Path:
    """Train the reference MLP on digits and export it with Keras 3 ``model.export``."""
    tf = _quiet_tf()
    import keras

    keras.utils.set_random_seed(seed)
    x, y = digits()
    model = keras.Sequential(
        [
            keras.Input(shape=(784,), name="pixels"),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, validation_split=0.0)
    out = Path(out_dir)
    model.export(str(out), format="tf_saved_model", verbose=False)
    del tf
    return out


def train_cnn(out_dir: str | os.PathLike, epochs: int = 3, seed: int = 0) -> Path:
    """The ECL seed's CNN (conv 5x5x32, pool, conv 5x5x64, pool, dense 1024, dense 10)."""
    _quiet_tf()
    import keras

    keras.utils.set_random_seed(seed)
    x, y = digits()
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="image"),
            keras.layers.Conv2D(32, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.reshape(-1, 28, 28, 1), y, epochs=epochs, batch_size=64, verbose=0)
    out = Path(out_dir)
    model.export(str(out), format="tf_saved_model", verbose=False)
    return out


def export_serving_mnist(out_dir: str | os.PathLike) -> Path:
    """TF Serving's mnist_saved_model.py export: softmax regression on digits.

    Weights come from a multinomial logistic regression (scikit-learn), so building it
    takes a second; the graph and signatures are the tutorial's, op for op.
    """
    tf = _quiet_tf()
    from sklearn.linear_model import LogisticRegression

    x, y = digits()
    clf = LogisticRegression(max_iter=300).fit(x, y)
    w = clf.coef_.T.astype(np.float32)
    b = clf.intercept_.astype(np.float32)
    v1 = tf.compat.v1
    out = Path(out_dir)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        spec = {FEATURE: v1.FixedLenFeature(shape=[784], dtype=tf.float32)}
        parsed = v1.parse_example(serialized, spec)
        xs = tf.identity(parsed[FEATURE], name="x")
        weights = v1.Variable(w, name="weights")
        bias = v1.Variable(b, name="bias")
        scores = tf.nn.softmax(tf.matmul(xs, weights) + bias, name="y")
        values, indices = tf.nn.top_k(scores, 10)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(range(10)), dtype=tf.int64),
                tf.constant([str(i) for i in range(10)]),
            ),
            default_value="UNK",
        )
        classes = table.lookup(tf.cast(indices, tf.int64))
        sess.run(v1.global_variables_initializer())
        sess.run(v1.tables_initializer())
        u = v1.saved_model.utils
        sig = v1.saved_model.signature_def_utils
        classification = sig.build_signature_def(
            inputs={"inputs": u.build_tensor_info(serialized)},
            outputs={
                "classes": u.build_tensor_info(classes),
                "scores": u.build_tensor_info(values),
            },
            method_name=v1.saved_model.signature_constants.CLASSIFY_METHOD_NAME,
        )
        prediction = sig.build_signature_def(
            inputs={"images": u.build_tensor_info(xs)},
            outputs={"scores": u.build_tensor_info(scores)},
            method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        builder = v1.saved_model.Builder(str(out))
        builder.add_meta_graph_and_variables(
            sess,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map={"predict_images": prediction, "serving_default": classification},
            main_op=v1.tables_initializer(),
            strip_default_attrs=True,
        )
        builder.save()
    return out


def copy_rows(dbapi_conn, table: str, x: np.ndarray, y: np.ndarray, start: int = 0) -> None:
    """COPY rows (id, pixels float4[], example bytea, label int) through a pg8000
    DB-API connection: one round trip instead of one per row."""
    import io

    lines = []
    for i, (pixels, label) in enumerate(zip(x, y, strict=True)):
        arr = "{" + ",".join(f"{v:.9g}" for v in pixels.tolist()) + "}"
        lines.append(f"{start + i}\t{arr}\t\\\\x{serialize(pixels).hex()}\t{int(label)}\n")
    cur = dbapi_conn.cursor()
    cur.execute(
        f"COPY {table} (id, pixels, example, label) FROM STDIN",
        stream=io.BytesIO("".join(lines).encode()),
    )
    cur.close()


def load_table(engine, table: str, rows: int) -> str:
    """Create ``table`` with the reference data cycled to ``rows`` rows; return the SQL
    that did the cycling (the demo prints it)."""
    import sqlalchemy as sa

    x, y = digits()
    sql = (
        f"INSERT INTO {table}\nSELECT g, d.pixels, d.example, d.label\n"
        f"  FROM generate_series(0, {rows - 1}) g JOIN {table}_distinct d ON d.id = g % {len(x)}"
    )
    ddl = "(id int PRIMARY KEY, pixels float4[], example bytea, label int)"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}, {table}_distinct"))
        conn.execute(sa.text(f"CREATE TABLE {table}_distinct {ddl}"))
        conn.execute(sa.text(f"CREATE TABLE {table} {ddl}"))
        copy_rows(conn.connection.driver_connection, f"{table}_distinct", x, y)
        conn.execute(sa.text(sql))
        conn.execute(sa.text(f"ANALYZE {table}"))
    return sql


def export_wrapped_keras(out_dir: str | os.PathLike) -> Path:
    """A SavedModel whose TFLite conversion is silently wrong (DESIGN.md): a tf.Module
    wrapping a Keras 3 model converts to a flatbuffer without the weights. TensorFlow
    scores it correctly; LiteRT gives wrong scores, so registration must fall back."""
    tf = _quiet_tf()
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )

    class Wrapped(tf.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="x")])
        def serve(self, x):
            return {"scores": self.inner(x)}

    wrapped = Wrapped(model)
    out = Path(out_dir)
    tf.saved_model.save(wrapped, str(out), signatures={"serving_default": wrapped.serve})
    return out
