"""What `register` takes besides a SavedModel directory: a LiteRT .tflite file (served as
given) and a Keras .keras file (exported to a SavedModel first); and every wrong path a
user gives gets its own message saying what to pass."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import committed, rows, scalar, sql_error

pytestmark = pytest.mark.usefixtures("models", "inputs")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "pgml_ext.cli", *args], capture_output=True, text=True
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_a_tflite_file_is_served_by_litert_as_given(engine, db_url, mlp_tflite, tmp_path):
    done = cli("register", "lite", str(mlp_tflite), "--url", db_url)
    assert "registered lite version 1" in done.stdout
    # the server's part said so, on a log (not a terminal): one line before, one after
    assert "the server checks and converts it ..." in done.stderr
    described = rows(
        engine, "SELECT runtime, why, c_path FROM pgml.describe('lite') WHERE version = 1"
    )
    assert [tuple(r) for r in described] == [
        (
            "litert",
            "registered as a LiteRT flatbuffer (.tflite): served as given, no TensorFlow to "
            "compare with",
            ["tf.Example", "float4[]"],
        )
    ]
    assert scalar(engine, "SELECT audit ->> 'format' FROM pgml.models WHERE name = 'lite'") == (
        "tflite"
    )
    same = (
        "SELECT count(*) FILTER (WHERE pgml.predict_class('lite', {c}) "
        "= pgml.predict_class('mlp', {c})) FROM inputs"
    )
    n = scalar(engine, "SELECT count(*) FROM inputs")
    assert scalar(engine, same.format(c="pixels")) == n
    assert scalar(engine, same.format(c="example")) == n
    with engine.connect() as conn:  # PL/Python's LiteRT answers the same
        conn.exec_driver_sql("SET pgml.native_scoring = off")
        assert conn.exec_driver_sql(same.format(c="pixels")).scalar() == n
    # exported back as it came
    done = cli("export", "lite", str(tmp_path / "back"), "--url", db_url)
    assert (tmp_path / "back" / "model.tflite").read_bytes() == mlp_tflite.read_bytes()
    # a server path too
    assert committed(engine, f"SELECT pgml.load_model('lite', '{mlp_tflite}')") == 2
    assert scalar(engine, "SELECT pgml.predict_class('lite@2', pixels) FROM inputs LIMIT 1") == (
        scalar(engine, "SELECT pgml.predict_class('mlp', pixels) FROM inputs LIMIT 1")
    )


def test_a_flatbuffer_litert_cannot_read_is_a_clean_error(engine, tmp_path, db_url):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"TFL3" + bytes(range(256)) * 8)
    done = cli("register", "junk", str(junk), "--url", db_url, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is not a LiteRT flatbuffer LiteRT can read" in done.stderr
    assert scalar(engine, "SELECT count(*) FROM pgml.model_versions WHERE name = 'junk'") == 0


def test_a_tflite_file_cannot_run_on_tensorflow(db_url, mlp_tflite):
    done = cli("register", "lite_tf", str(mlp_tflite), "--runtime", "tensorflow", "--url",
               db_url, check=False)  # fmt: skip
    assert done.returncode == 1 and "runs on LiteRT only" in done.stderr


def test_a_keras_file_is_exported_then_registered(engine, db_url, tmp_path, digits):
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    path = tmp_path / "small.keras"
    model.save(path)
    done = cli("register", "small_keras", str(path), "--url", db_url)
    assert "exported small.keras to a SavedModel" in done.stderr
    x = digits[0][:20].astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = np.array(
        [
            scalar(engine, "SELECT pgml.predict('small_keras', CAST(:x AS float4[]))", x=r.tolist())
            for r in x
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_every_wrong_path_says_what_to_pass(db_url, tmp_path, mlp_dir):
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "model.keras").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("no model here")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(holder): "Pass one of the models in it: model.keras",
        str(mlp_dir / "saved_model.pb"): f"Pass its directory, '{mlp_dir}'",
        str(tmp_path / "notes.txt"): "is not a model pgml_ext can register",
        str(tmp_path / "broken.keras"): "Keras cannot read",
    }
    seen = set()
    for path, says in cases.items():
        done = cli("register", "wrong", path, "--url", db_url, check=False)
        assert done.returncode == 1, path
        assert says in done.stderr, (path, done.stderr)
        assert "Traceback" not in done.stderr
        seen.add(done.stderr)
    assert len(seen) == len(cases)  # not the same line for every mistake


def test_load_model_refuses_what_is_neither(engine):
    state, message, _ = sql_error(engine, "SELECT pgml.load_model('x', '/etc/hostname')")
    assert state == "22023" and "or a .tflite file" in message
