"""Bad input gives a clear ERROR (SQLSTATE, model named, what was expected and given),
never a crash, and the session stays usable (sql_error checks that every time)."""

import numpy as np
import pytest

from conftest import new_engine, sql_error
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
        "has feature 'x' as int64",
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
        "'/nonexistent' is not a directory on the database server",
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


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_clear_error(engine, case):
    sql, params, sqlstate, message = CASES[case]
    code, text, _ = sql_error(engine, sql, **params)
    assert code == sqlstate, text
    assert text.startswith("pgml: ") or code == "42883", text
    assert message in text
    assert "Traceback" not in text


def test_errors_do_not_restart_the_server(engine):
    before = engine.connect()
    pid = before.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    for sql, params, _, _ in CASES.values():
        sql_error(engine, sql, **params)
    assert before.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid
    before.close()


def test_load_model_needs_superuser(engine, db_url):
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS scorer")
        conn.exec_driver_sql("CREATE ROLE scorer LOGIN")
        conn.exec_driver_sql("GRANT USAGE ON SCHEMA pgml TO scorer")
    scorer = new_engine(db_url.replace("postgres@", "scorer@"))
    code, text, _ = sql_error(scorer, "SELECT pgml.load_model('x', '/tmp')")
    assert code == "42501"  # insufficient_privilege
    scorer.dispose()
