"""Runtime choice at registration: LiteRT where it matches TensorFlow, TensorFlow where
conversion is impossible or wrong, and what each backend then loads."""

import numpy as np
import pytest
import sqlalchemy as sa

from conftest import new_engine, rows, sql_error
from pgml_ext import client
from pgml_ext.indb.conversion import TOLERANCE

pytestmark = pytest.mark.usefixtures("models", "inputs")


def runtimes(engine, name: str) -> tuple[str, dict]:
    ((runtime, notes),) = rows(
        engine, "SELECT runtime, runtimes FROM pgml.models WHERE name = :n AND current", n=name
    )
    return runtime, notes


def test_keras_export_runs_on_litert(engine):
    runtime, notes = runtimes(engine, "mlp")
    assert runtime == "litert"
    assert notes["serving_default"]["runtime"] == "litert"
    assert notes["serving_default"]["max_abs_diff"] <= TOLERANCE


def test_serving_export_runs_both_signatures_on_litert(engine):
    # the classify signature parses Examples in its graph: cut after the parse, pgml
    # parses them and LiteRT runs the rest (pgml_ext/indb/cutting.py)
    runtime, notes = runtimes(engine, "mnist")
    assert runtime == "litert"
    assert notes["predict_images"]["runtime"] == "litert"
    assert notes["serving_default"]["runtime"] == "litert"
    assert "parsed by pgml" in notes["serving_default"]["reason"]
    assert notes["serving_default"]["max_abs_diff"] <= TOLERANCE


def test_wrong_conversion_falls_back_to_tensorflow(engine, wrapped_dir, digits):
    version = client.register_model(engine, "wrapped", wrapped_dir)
    runtime, notes = runtimes(engine, "wrapped")
    assert runtime == "tensorflow"
    assert "does not match TensorFlow" in notes["serving_default"]["reason"]
    import tensorflow as tf

    x, _ = digits
    expected = (
        tf.saved_model.load(str(wrapped_dir))
        .signatures["serving_default"](x=tf.constant(x[:20]))["scores"]
        .numpy()
    )
    got = rows(
        engine, f"SELECT pgml.predict('wrapped@{version}', pixels) FROM inputs ORDER BY id LIMIT 20"
    )
    assert np.max(np.abs(np.asarray([r[0] for r in got]) - expected)) <= 1e-5


def test_forcing_litert_on_a_wrong_conversion_is_an_error(engine, wrapped_dir):
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DatabaseError) as info:
            client.register_model(conn, "wrapped_lite", wrapped_dir, runtime="litert")
        conn.rollback()
    fields = info.value.orig.args[0]
    assert fields["C"] == "42809" and "cannot run on LiteRT" in fields["M"]
    assert rows(engine, "SELECT 1 FROM pgml.model_versions WHERE name = 'wrapped_lite'") == []


def test_forcing_tensorflow(engine, mlp_dir):
    client.register_model(engine, "mlp_tf", mlp_dir, runtime="tensorflow")
    runtime, notes = runtimes(engine, "mlp_tf")
    assert runtime == "tensorflow" and "requested" in notes["serving_default"]["reason"]


def test_user_samples_join_the_parity_check(engine, mlp_dir, digits):
    x, _ = digits
    client.register_model(engine, "mlp_samples", mlp_dir, samples=x[:50])
    assert runtimes(engine, "mlp_samples")[0] == "litert"


def test_litert_backend_never_imports_tensorflow(engine, db_url, mlp_dir):
    if not rows(engine, "SELECT 1 FROM pgml.models WHERE name = 'mlp_tf'"):
        client.register_model(engine, "mlp_tf", mlp_dir, runtime="tensorflow")
    with new_engine(db_url).connect() as conn:
        for column in ("pixels", "example"):
            conn.execute(sa.text(f"SELECT pgml.classify('mlp', {column}) FROM inputs")).all()
        status = conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()
        assert status["litert_imported"] and not status["tensorflow_imported"]
        assert (
            conn.execute(
                sa.text("SELECT runtime FROM pgml.cached_models() WHERE name = 'mlp'")
            ).scalar()
            == "litert"
        )
        # a signature on TensorFlow loads it, in the same backend, alongside LiteRT
        for model in ("mnist", "mlp_tf"):
            conn.execute(sa.text(f"SELECT pgml.classify('{model}', example) FROM inputs LIMIT 3"))
        status = conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()
        assert status["tensorflow_imported"]
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM inputs WHERE pgml.classify('mlp', pixels) = label::text"
                )
            ).scalar()
            > 1700
        )


def test_threads_setting(db_url):
    with new_engine(db_url).connect() as conn:
        conn.execute(sa.text("SET pgml.threads = 2"))
        got = conn.execute(
            sa.text("SELECT pgml.predict('mlp', pixels) FROM inputs WHERE id = 9")
        ).scalar()
    assert max(range(10), key=got.__getitem__) == 9


def test_corrupt_litert_blob_is_caught(engine, mlp_dir):
    version = client.register_model(engine, "corrupt", mlp_dir)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE pgml.model_litert "
                "SET data = set_byte(data, 100, (get_byte(data, 100) + 1) % 256) "
                "WHERE model_id = (SELECT id FROM pgml.model_versions WHERE name = 'corrupt')"
            )
        )
    code, message, _ = sql_error(
        new_engine(engine.url.render_as_string(hide_password=False)),
        f"SELECT pgml.classify('corrupt@{version}', pixels) FROM inputs",
    )
    assert code == "XX001" and "corrupt" in message
