"""Bad input gives a clear ERROR (SQLSTATE, model named, what was expected and given),
never a crash, and the session stays usable (sql_error checks that every time)."""

import os
import shutil
import tempfile

import numpy as np
import pytest
import sqlalchemy as sa

from conftest import committed, new_engine, rows, sql_error
from pgml_ext import client
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models", "inputs")


def ex(**features) -> bytes:
    return examples.encode(features)


CASES = {
    "unknown model": (
        "SELECT pgml.classify('nope', pixels) FROM inputs LIMIT 1",
        {},
        "42704",
        "model 'nope' is not registered",
    ),
    "unknown version": (
        "SELECT pgml.classify('mlp@9', pixels) FROM inputs LIMIT 1",
        {},
        "42704",
        "model 'mlp' has no version 9",
    ),
    "bad reference": (
        "SELECT pgml.classify('mlp@x', pixels) FROM inputs LIMIT 1",
        {},
        "22023",
        "bad model reference",
    ),
    "array too short": (
        "SELECT pgml.predict('mlp', ARRAY[1,2,3]::float4[])",
        {},
        "22023",
        "model 'mlp' expects input 'pixels' with 784 values",
    ),
    "array too long": (
        "SELECT pgml.predict('mnist', array_fill(0::float4, ARRAY[785]))",
        {},
        "22023",
        "with 784 values",
    ),
    "NULL element": (
        "SELECT pgml.predict('mlp', array_fill(NULL::float4, ARRAY[784]))",
        {},
        "22004",
        "contains NULL elements",
    ),
    "NULL element in a 2-D array": (
        "SELECT pgml.classify_batch('mlp', ARRAY[[1, NULL], [1, 1]]::float4[])",
        {},
        "22004",
        "contains NULL elements",
    ),
    "garbage bytea": (
        "SELECT pgml.classify('mnist', '\\xdeadbeef'::bytea)",
        {},
        "22P03",
        "not a serialized tf.train.Example",
    ),
    "missing feature": (
        "SELECT pgml.classify('mnist', CAST(:e AS bytea))",
        {"e": ex(y=np.ones(784, np.float32))},
        "22023",
        "model 'mnist' has no feature 'x'",
    ),
    "wrong-typed feature": (
        "SELECT pgml.classify('mnist', CAST(:e AS bytea))",
        {"e": ex(x=np.ones(784, np.int64))},
        "22023",
        "has feature 'x' as integers",
    ),
    "wrong-length feature": (
        "SELECT pgml.classify('mnist', CAST(:e AS bytea))",
        {"e": ex(x=np.ones(10, np.float32))},
        "22023",
        "has feature 'x' with 10 values, the model reads 784",
    ),
    "empty example for a tensor model": (
        "SELECT pgml.classify('mlp', ''::bytea)",
        {},
        "22023",
        "model 'mlp' has no feature 'pixels'",
    ),
    "unknown output": (
        "SELECT pgml.predict('mnist', pixels, output => 'nope') FROM inputs LIMIT 1",
        {},
        "42704",
        "has no output 'nope'",
    ),
    "unknown signature": (
        "SELECT pgml.predict('mnist', pixels, signature => 'nope') FROM inputs LIMIT 1",
        {},
        "42704",
        "model 'mnist' has no signature 'nope'",
    ),
    "text output to predict": (
        "SELECT pgml.predict('mnist', example, output => 'classes') FROM inputs LIMIT 1",
        {},
        "22023",
        "output 'classes' of model 'mnist' is",
    ),
    "NaN element": (
        "SELECT pgml.predict('mlp', array_fill('NaN'::float4, ARRAY[784]))",
        {},
        "22023",
        "contains NaN or Infinity",
    ),
    "Infinity element": (
        "SELECT pgml.classify('mnist', array_fill('Infinity'::float4, ARRAY[784]))",
        {},
        "22023",
        "contains NaN or Infinity",
    ),
    "NaN feature, tensor model": (
        "SELECT pgml.classify('mlp', CAST(:e AS bytea))",
        {"e": ex(x=np.full(784, np.nan, np.float32))},
        "22023",
        "contains NaN or Infinity",
    ),
    "NaN feature, classify signature": (
        "SELECT pgml.classify('mnist', CAST(:e AS bytea))",
        {"e": ex(x=np.full(784, np.inf, np.float32))},
        "22023",
        "has NaN or Infinity in feature 'x'",
    ),
    "bytes feature, tensor model": (
        "SELECT pgml.classify('mlp', CAST(:e AS bytea))",
        {"e": ex(x=np.array([b"a"] * 784, dtype=object))},
        "22023",
        "as bytes, the model reads numbers",
    ),
    "two-dimensional array, wrong size": (
        "SELECT pgml.predict('mlp', array_fill(0::float4, ARRAY[2, 784]))",
        {},
        "22023",
        "with 784 values (shape [?,784]), got 1568",
    ),
    "empty array": ("SELECT pgml.predict('mlp', '{}'::float4[])", {}, "22023", "got 0"),
    "truncated bytea": (
        "SELECT pgml.classify('mnist', substring(example FROM 1 FOR 100)) FROM inputs LIMIT 1",
        {},
        ("22P03", "22023"),
        "model 'mnist'",
    ),
    "oversized garbage bytea (20 MB)": (
        "SELECT pgml.classify('mnist', decode(repeat('ff', 20000000), 'hex'))",
        {},
        "22P03",
        "not a serialized tf.train.Example (20000000 bytes)",
    ),
    "oversized array (10M elements)": (
        "SELECT pgml.predict('mlp', array_fill(0::float4, ARRAY[10000000]))",
        {},
        "22023",
        "got 10000000",
    ),
    "batch with a bad row": (
        "SELECT pgml.classify_batch('mlp', ARRAY[(SELECT example FROM inputs LIMIT 1), "
        "'\\x00ff'::bytea])",
        {},
        ("22P03", "22023"),
        "model 'mlp'",
    ),
    "float4[] to a model without a float signature": (
        "SELECT pgml.classify('unusable', array_fill(0::float4, ARRAY[784]))",
        {},
        "42809",
        "model 'unusable' has no signature that takes a float4[]",
    ),
    "tf.Example to a model whose signature wants other inputs": (
        "SELECT pgml.classify('unusable', CAST(:e AS bytea))",
        {"e": ex(x=np.ones(784, np.float32))},
        "22023",
        "has no feature 'a'",
    ),
    "unknown kind": (
        "SELECT pgml.create_function('f', 'mlp', 'nope')",
        {},
        "22023",
        "unknown kind",
    ),
    "pin unknown version": ("SELECT pgml.pin_model('mlp', 99)", {}, "42704", "has no version 99"),
    "load_model bad path": (
        "SELECT pgml.load_model('x', '/nonexistent')",
        {},
        "22023",
        "'/nonexistent' is not a directory (or a .tflite file) on the database server",
    ),
    "load_model not a SavedModel": (
        "SELECT pgml.load_model('x', '/tmp')",
        {},
        "22023",
        "is not a SavedModel directory",
    ),
    "load_model bad runtime": (
        "SELECT pgml.load_model('x', '/tmp', 'gpu')",
        {},
        "22023",
        "unknown runtime 'gpu'",
    ),
}


@pytest.fixture(scope="module", autouse=True)
def unusable_model(engine, tmp_path_factory):
    """A model whose only signature takes two strings: no float4[] path, and a
    tf.Example cannot feed it (no features named after its inputs)."""
    import tensorflow as tf

    class TwoStrings(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="a"),
                tf.TensorSpec([None], tf.string, name="b"),
            ]
        )
        def serve(self, a, b):
            return {"joined": tf.strings.join([a, b])}

    module = TwoStrings()
    path = tmp_path_factory.mktemp("unusable") / "model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    client.register_model(engine, "unusable", path)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_clear_error(engine, case):
    sql, params, sqlstate, message = CASES[case]
    code, text, _ = sql_error(engine, sql, **params)
    assert code in ((sqlstate,) if isinstance(sqlstate, str) else sqlstate), text
    assert text.startswith("pgml: ") or code == "42883", text
    assert message in text
    assert "Traceback" not in text


@pytest.mark.parametrize("native", ["on", "off"])
def test_scoring_errors_carry_no_python_traceback(engine, native):
    """A row's ERROR from pgml.predict/classify/predict_class says what is wrong in its
    message, detail and hint; its CONTEXT has no PL/Python traceback (which reads like
    a crash in psql), whichever path scored it."""
    bad = examples.encode({"x": np.zeros(5, np.float32)})
    for fn in ("predict", "classify", "predict_class"):
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
            with pytest.raises(sa.exc.DatabaseError) as info:
                conn.execute(sa.text(f"SELECT pgml.{fn}('mlp', CAST(:e AS bytea))"), {"e": bad})
        fields = info.value.orig.args[0]
        assert fields["C"] == "22023" and "784" in fields["M"], fields
        assert "Traceback" not in fields.get("W", "") and "line " not in fields.get("W", "")


def test_errors_do_not_restart_the_server(engine):
    before = engine.connect()
    pid = before.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    for sql, params, _, _ in CASES.values():
        sql_error(engine, sql, **params)
    assert before.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid
    before.close()


def test_catalogue_is_large_enough():
    assert len(CASES) + len(MODEL_CASES) >= 30


MODEL_CASES = [
    "deleted model",
    "deleted pinned version",
    "corrupt SavedModel blob",
    "corrupt LiteRT blob",
    "invalid model name",
]


def test_deleted_model_and_deleted_pinned_version(engine, mlp_dir):
    client.register_model(engine, "doomed", mlp_dir)
    committed(engine, "SELECT pgml.delete_model('doomed')")
    code, text, _ = sql_error(engine, "SELECT pgml.classify('doomed', pixels) FROM inputs LIMIT 1")
    assert code == "42704" and "model 'doomed' is not registered" in text
    for _ in range(3):
        client.register_model(engine, "pin_gone", mlp_dir)
    committed(engine, "SELECT pgml.pin_model('pin_gone', 2)")
    assert client.delete_model(engine, "pin_gone", 2, force=True) == 1
    # the pin went with its version: the newest remaining version serves
    current = rows(engine, "SELECT version FROM pgml.models WHERE name = 'pin_gone' AND current")
    assert current == [(3,)]
    code, text, _ = sql_error(engine, "SELECT pgml.classify('pin_gone@2', pixels) FROM inputs")
    assert code == "42704" and "has no version 2" in text


def test_corrupt_savedmodel_blob_is_caught_by_its_checksum(engine, db_url, mlp_dir):
    version = client.register_model(engine, "rotten", mlp_dir, runtime="tensorflow")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE pgml.model_chunks SET data = set_byte(data, 5000, "
                "(get_byte(data, 5000) + 1) % 256) WHERE model_id = "
                "(SELECT id FROM pgml.model_versions WHERE name = 'rotten')"
            )
        )
    code, text, hint = sql_error(
        new_engine(db_url), f"SELECT pgml.classify('rotten@{version}', pixels) FROM inputs"
    )
    assert code == "XX001" and "stored model is corrupt" in text and "Register" in hint


@pytest.mark.parametrize("name", ["bad name; drop", "mlp@2", "", "9lives", "x" * 64])
def test_invalid_model_name_is_refused_before_any_upload(engine, mlp_dir, name, tmp_path):
    """A name the table would refuse is a clear ERROR (42602) from load_model and from
    the client before the model is read: a directory that does not exist is not even
    looked at."""
    code, text, hint = sql_error(engine, "SELECT pgml.load_model(:n, :p)", n=name, p=str(mlp_dir))
    assert code == "42602" and "is not a model name" in text and "name@N" in hint
    with pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(engine, name, tmp_path / "not there")
    assert info.value.orig.args[0]["C"] == "42602"


def test_extra_features_are_ignored(engine):
    from conftest import scalar

    data = ex(x=np.zeros(784, np.float32), extra=np.ones(3, np.float32), note=np.array([b"hi"]))
    assert scalar(engine, "SELECT pgml.classify('mnist', CAST(:e AS bytea))", e=data) is not None


def test_multidimensional_array_with_the_right_count_is_reshaped(engine):
    from conftest import scalar

    flat = scalar(engine, "SELECT pgml.predict('mlp', pixels) FROM inputs WHERE id = 3")
    square = scalar(
        engine,
        "SELECT pgml.predict('mlp', (SELECT array_agg(r) FROM (SELECT "
        "pixels[i * 28 + 1 : i * 28 + 28] AS r FROM inputs, "
        "generate_series(0, 27) i WHERE id = 3 ORDER BY i) q)) ",
    )
    # array_agg of 28 slices of 28 is a 28x28 float4[]
    assert np.allclose(flat, square, atol=1e-6)


@pytest.mark.parametrize("damage", ["corrupt saved_model.pb", "no variables/"])
def test_a_savedmodel_tensorflow_cannot_read_is_the_users_error(engine, mlp_dir, tmp_path, damage):
    """Not an "internal error ... a bug in pgml_ext" showing a server temp path: what is
    wrong, and how to export it again."""
    broken = tmp_path / "broken"
    shutil.copytree(mlp_dir, broken)
    if damage == "no variables/":
        shutil.rmtree(broken / "variables")
    else:
        (broken / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\xff this is no protobuf")
    with pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(engine, "broken", broken)
    fields = info.value.orig.args[0]
    assert fields["C"] == "22023", fields
    assert "is not a SavedModel TensorFlow can read" in fields["M"]
    assert "registering-" not in fields["M"] and "bug" not in fields["M"]
    assert "saved_model.pb and variables/" in fields["H"]
    assert rows(engine, "SELECT 1 FROM pgml.model_versions WHERE name = 'broken'") == []


def test_load_model_from_a_directory_the_server_cannot_read(engine, mlp_dir):
    base = tempfile.mkdtemp()
    try:
        os.chmod(base, 0o711)  # the server may pass through, not list
        private = os.path.join(base, "private")
        shutil.copytree(mlp_dir, private)
        os.chmod(private, 0o700)  # root's: the server runs as another user
        code, text, hint = sql_error(engine, "SELECT pgml.load_model('private', :p)", p=private)
    finally:
        shutil.rmtree(base)
    assert code == "42501" and "cannot read" in text and "operating-system user" in text
    assert "register_model" in hint


@pytest.mark.usefixtures("models")
def test_errors_of_pl_python_functions_carry_no_traceback(engine):
    """score_into, registration, text and jsonb inputs are PL/Python only: their pgml
    errors reach psql without PL/Python's traceback in CONTEXT (src/messages.c)."""
    cases = [
        "SELECT pgml.score_into('mlp', 'SELECT 1 AS id, ''\\x0a02''::bytea AS example', "
        "'no_such_predictions', 'id')",
        "SELECT pgml.load_model('x', '/nonexistent')",
        "SELECT pgml.example('mlp', '[1, 2]'::jsonb)",
        # raised by SQL (model_ref) under PL/Python: not "spiexceptions.UndefinedObject: "
        "SELECT pgml.score_into('no_such_model', 'inputs', 'no_such_predictions', 'id')",
        "SELECT pgml.predict_batch('no_such_model', ARRAY['\\x0a00'::bytea])",
        "SELECT pgml.score_into('mlp', 'no_such_table', 'no_such_predictions', 'id')",
        "SELECT pgml.score_into('mlp', 'SELECT FROM WHERE', 'no_such_predictions', 'id')",
    ]
    for sql in cases:
        with engine.connect() as conn:
            with pytest.raises(sa.exc.DatabaseError) as info:
                conn.exec_driver_sql(sql)
            fields = info.value.orig.args[0]
        assert fields["M"].startswith("pgml: "), fields
        assert "Traceback" not in fields.get("W", ""), (sql, fields.get("W"))
