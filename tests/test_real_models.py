"""Models built by common recipes, not by this project: answers must be TensorFlow's.

- A TF2 serving function that parses Examples with a FixedLenFeature default: an
  Example that omits the feature is scored with the default, as TensorFlow does.
- A regressor (one value per row): pgml.predict gives its value; classify and
  predict_class refuse it instead of answering '0' for every row.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from recipes import REAL_MODELS, RealModel, regressor, two_heads, with_default
from sqlalchemy import select

from conftest import built_model, numbered_table, rows, scalar, sql_error
from pgml_ext import client
from pgml_ext.indb import examples
from pgml_ext.sqlalchemy import predict_value

pytestmark = pytest.mark.usefixtures("models", "inputs")


def test_a_missing_feature_with_a_default_is_scored_as_tensorflow_does(engine):
    client.register_model(engine, "with_default", built_model("real-with-default", with_default))
    spec = scalar(engine, "SELECT signature FROM pgml.models WHERE name = 'with_default'")
    features = spec["serving_default"]["features"]
    assert features["b"]["default"] == [0.5] and features["a"]["default"] is None
    query = "SELECT pgml.predict('with_default', CAST(:e AS bytea))"
    only_a = examples.encode({"a": np.array([3.0], dtype=np.float32)})
    assert scalar(engine, query, e=only_a) == [6.5, -3.0]
    both = examples.encode({"a": np.array([3.0], np.float32), "b": np.array([1.0], np.float32)})
    assert scalar(engine, query, e=both) == [7.0, -3.0]
    only_b = examples.encode({"b": np.array([1.0], dtype=np.float32)})
    code, message, _ = sql_error(engine, query, e=only_b)
    assert code == "22023" and "no feature 'a'" in message


def test_a_regressor_has_a_value_not_a_class(engine, digits):
    client.register_model(engine, "regressor", built_model("real-regressor", regressor))
    x = digits[0][:5]
    want = x @ np.linspace(-1, 1, 784, dtype=np.float32) + 0.25
    got = rows(
        engine, "SELECT pgml.predict('regressor', pixels) FROM inputs WHERE id < 5 ORDER BY id"
    )
    assert np.abs(np.array([g[0] for g in got]).ravel() - want).max() <= 1e-4
    inputs = sa.table("inputs", sa.column("example"), sa.column("id"))
    with engine.connect() as conn:
        values = conn.execute(
            select(predict_value("regressor", inputs.c.example))
            .where(inputs.c.id < 5)
            .order_by(inputs.c.id)
        ).scalars()
        assert np.abs(np.array(list(values)) - want).max() <= 1e-4
    code, message, hint = sql_error(
        engine, "SELECT pgml.predict_value('mlp', pixels) FROM inputs LIMIT 1"
    )
    assert code == "42809" and "10 values per row" in message and "predict" in hint
    for native in ("on", "off"):
        for sql in (
            "SELECT pgml.classify('regressor', pixels) FROM inputs LIMIT 1",
            "SELECT pgml.predict_class('regressor', example) FROM inputs LIMIT 1",
            "SELECT pgml.classify_batch('regressor', array_agg(pixels)) FROM inputs",
            "SELECT pgml.predict_class_batch('regressor', array_agg(example)) FROM inputs",
        ):
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
                with pytest.raises(sa.exc.DatabaseError) as info:
                    conn.exec_driver_sql(sql).all()
                fields = info.value.orig.args[0]
                assert fields["C"] == "42809" and "one value per row" in fields["M"], sql
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS regressed")
        n = conn.exec_driver_sql(
            "SELECT pgml.score_into('regressor', 'SELECT id, pixels FROM inputs WHERE id < 5', "
            "'regressed', input => 'pixels')"
        ).scalar()
    assert n == 5
    written = rows(engine, "SELECT label, class_index, scores FROM regressed ORDER BY key")
    assert all(r[0] is None and r[1] is None for r in written)


def test_classify_a_named_head_of_a_multi_head_model(engine):
    client.register_model(engine, "two_heads", built_model("real-two-heads", two_heads))
    for native in ("on", "off"):
        for column in ("pixels", "example"):
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
                for head in ("digit", "shape"):
                    got = conn.exec_driver_sql(
                        f"SELECT pgml.predict('two_heads', {column}, output => '{head}'), "
                        f"pgml.classify('two_heads', {column}, output => '{head}'), "
                        f"pgml.predict_class('two_heads', {column}, output => '{head}') "
                        "FROM inputs WHERE id < 20 ORDER BY id"
                    ).all()
                    for scores, label, index in got:
                        assert index == int(np.argmax(scores)) and label == str(index)
                    assert len({len(g[0]) for g in got}) == 1
                    labels, indices = conn.exec_driver_sql(
                        f"SELECT pgml.classify_batch('two_heads', array_agg({column} ORDER BY "
                        f"id), output => '{head}'), pgml.predict_class_batch('two_heads', "
                        f"array_agg({column} ORDER BY id), output => '{head}') "
                        "FROM inputs WHERE id < 20"
                    ).one()
                    assert indices == [g[2] for g in got] and labels == [g[1] for g in got]
    code, message, _ = sql_error(
        engine, "SELECT pgml.classify('two_heads', pixels, output => 'nope') FROM inputs LIMIT 1"
    )
    assert code == "42704" and "nope" in message


def test_describe_shows_what_each_signature_expects_and_runs_on(engine, users_bob):
    got = rows(
        users_bob,
        "SELECT signature, runtime, why, inputs, features, outputs, plan, c_path "
        "FROM pgml.describe('mnist') "
        "WHERE current ORDER BY signature",
    )
    by_signature = {r[0]: r for r in got}
    assert set(by_signature) == {"predict_images", "serving_default"}
    images = by_signature["predict_images"]
    assert images[1] == "litert" and "matches TensorFlow" in images[2]
    assert images[3] == {"images": {"dtype": "float32", "shape": [None, 784]}}
    classify = by_signature["serving_default"]
    assert classify[1] == "litert" and "parsed by pgml" in classify[2]
    assert classify[4]["x"]["shape"] == [784] and set(classify[5]) >= {"scores", "classes"}
    # cut after its ParseExample: pgml parses feature x into the LiteRT input, and the
    # top-k class keys are looked up in the vocabulary read from TensorFlow's answers
    assert classify[6]["parse"] == [
        {"name": "input_0", "feature": "x", "dtype": "float32", "shape": [784], "default": None}
    ]
    assert classify[6]["vocabularies"] == {"classes": [str(i) for i in range(10)]}
    assert images[6] is None
    # the input forms C scores, by the plans stored at registration
    assert images[7] == ["tf.Example", "float4[]"] and classify[7] == ["tf.Example"]
    assert rows(users_bob, "SELECT count(*) FROM pgml.describe('no_such_model')") == [(0,)]


@pytest.fixture(scope="module")
def users_bob(engine, db_url):
    """A role with no pgml role at all: metadata is for everybody."""
    from conftest import new_engine

    with engine.begin() as conn:
        if not conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = 'meta'").scalar():
            conn.exec_driver_sql("CREATE ROLE meta LOGIN")
    return new_engine(db_url.replace("postgres@", "meta@"))


@pytest.mark.parametrize("recipe", REAL_MODELS, ids=lambda r: r.name)
def test_every_real_model_gives_tensorflows_answers(engine, recipe: RealModel):
    """The benchmark's real models (benchmarks/real_models.py), each scored from bytea
    Examples through the server on the runtime registration chose: TensorFlow's
    answers within 1e-5, the same arg-max; LiteRT for every one whose ops it has."""
    path = built_model(recipe.fixture, recipe.build)
    client.register_model(engine, f"real_{recipe.name}", path)
    batch = recipe.rows(np.random.default_rng(11), 40)
    want = recipe.tensorflow(path, batch)
    table = f"real_rows_{recipe.name}"
    numbered_table(engine, table, "example bytea", [examples.encode(r) for r in batch])
    score = recipe.score.format(model=f"real_{recipe.name}")
    got = np.array([r[0] for r in rows(engine, f"SELECT {score} FROM {table} ORDER BY id")])
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    runtime = scalar(
        engine,
        "SELECT runtime FROM pgml.describe(:m) WHERE current AND signature = :s",
        m=f"real_{recipe.name}",
        s=recipe.signature,
    )
    assert runtime == ("tensorflow" if recipe.name == "keras_text" else "litert"), runtime
