"""Versioning and the per-backend cache, across two connections."""

import os
import threading
import time

import pytest
import sqlalchemy as sa

from conftest import committed, model_files, new_engine, rows, scalar, sql_error
from pgml_ext import client

pytestmark = pytest.mark.usefixtures("models", "inputs")


def labels(prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(10)]


def classify_one(conn, model: str) -> str:
    return conn.execute(
        sa.text("SELECT pgml.classify(:m, pixels) FROM inputs WHERE id = 4"), {"m": model}
    ).scalar()


def test_new_version_is_used_from_the_next_statement(db_url, mlp_dir):
    a, b = new_engine(db_url), new_engine(db_url)
    assert client.register_model(b, "ver", mlp_dir, labels=labels("a")) == 1
    with a.connect() as conn_a:
        assert classify_one(conn_a, "ver") == "a4"
        assert client.register_model(b, "ver", mlp_dir, labels=labels("b")) == 2
        conn_a.commit()
        assert classify_one(conn_a, "ver") == "b4"
        cached = conn_a.execute(sa.text("SELECT name, version FROM pgml.cached_models()")).all()
        assert ("ver", 2) in cached
        # an explicit version still reaches the old one
        assert classify_one(conn_a, "ver@1") == "a4"


def test_plpgsql_sees_a_new_version_from_its_next_statement(db_url, engine, mlp_dir):
    """PL/pgSQL keeps simple expressions for the whole transaction; the model they name
    is still resolved again for each top-level statement."""
    a, b = new_engine(db_url), new_engine(db_url)
    assert client.register_model(b, "verpl", mlp_dir, labels=labels("a")) == 1
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION classify_verpl(x float4[]) RETURNS text "
            "LANGUAGE plpgsql AS $$ DECLARE r text; "
            "BEGIN r := pgml.classify('verpl', x); RETURN r; END $$"
        )
    one = "SELECT classify_verpl(pixels) FROM inputs WHERE id = 4"
    with a.connect() as conn_a:  # one transaction (READ COMMITTED) throughout
        assert conn_a.exec_driver_sql(one).scalar() == "a4"
        assert client.register_model(b, "verpl", mlp_dir, labels=labels("b")) == 2
        assert conn_a.exec_driver_sql(one).scalar() == "b4"


def test_one_statement_never_mixes_versions(db_url, mlp_dir):
    a, b = new_engine(db_url), new_engine(db_url)
    client.register_model(b, "mix", mlp_dir, labels=labels("old"))
    results: list = []

    def slow_statement():
        with a.connect() as conn:
            results.extend(
                conn.execute(
                    sa.text(
                        "SELECT pgml.classify('mix', pixels), pg_sleep(0.05) FROM inputs "
                        "WHERE id < 60 ORDER BY id"
                    )
                ).all()
            )

    worker = threading.Thread(target=slow_statement)
    worker.start()
    time.sleep(1.0)  # mid-statement: commit a new version
    client.register_model(b, "mix", mlp_dir, labels=labels("new"))
    worker.join()
    prefixes = {label[:3] for label, _ in results}
    assert len(results) == 60 and len(prefixes) == 1
    with a.connect() as conn:
        assert classify_one(conn, "mix").startswith("new")


def test_pin_and_unpin(engine, mlp_dir):
    client.register_model(engine, "pinned", mlp_dir, labels=labels("one"))
    client.register_model(engine, "pinned", mlp_dir, labels=labels("two"))
    with engine.connect() as conn:
        assert classify_one(conn, "pinned") == "two4"
    committed(engine, "SELECT pgml.pin_model('pinned', 1)")
    with engine.connect() as conn:
        assert classify_one(conn, "pinned") == "one4"
    assert rows(
        engine,
        "SELECT version, current, pinned FROM pgml.models WHERE name = 'pinned' ORDER BY version",
    ) == [(1, True, True), (2, False, False)]  # only the pinned version
    committed(engine, "SELECT pgml.unpin_model('pinned')")
    with engine.connect() as conn:
        assert classify_one(conn, "pinned") == "two4"


def test_delete_falls_back_to_previous_version(engine, mlp_dir):
    client.register_model(engine, "gone", mlp_dir, labels=labels("v1-"))
    client.register_model(engine, "gone", mlp_dir, labels=labels("v2-"))
    assert committed(engine, "SELECT pgml.delete_model('gone', 2)") == 1
    with engine.connect() as conn:
        assert classify_one(conn, "gone") == "v1-4"
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM pgml.model_chunks c JOIN pgml.model_versions m "
            "ON m.id = c.model_id WHERE m.name = 'gone' AND m.version = 2",
        )
        == 0
    )
    assert committed(engine, "SELECT pgml.delete_model('gone')") == 1


def test_cache_is_bounded_by_a_setting(db_url):
    with new_engine(db_url).connect() as conn:
        conn.execute(sa.text("SET pgml.model_cache_size = 1"))
        for model in ("mlp", "mnist", "mlp_labels"):
            classify_one(conn, model)
        cached = conn.execute(sa.text("SELECT name FROM pgml.cached_models()")).scalars().all()
        assert cached == ["mlp_labels"]
        conn.execute(sa.text("SET pgml.model_cache_size = 3"))
        for model in ("mlp", "mnist"):
            classify_one(conn, model)
        cached = conn.execute(sa.text("SELECT name FROM pgml.cached_models()")).scalars().all()
        assert sorted(cached) == ["mlp", "mlp_labels", "mnist"]


def test_versions_increase_per_name(engine, mlp_dir):
    first = client.register_model(engine, "counter", mlp_dir)
    second = client.register_model(engine, "counter", mlp_dir)
    assert (first, second) == (1, 2)


def test_prune_removes_the_files_of_deleted_versions_only(engine, mlp_dir):
    from pgml_ext.sqlalchemy import prune_model_files

    version = client.register_model(engine, "pruned", mlp_dir)
    kept = model_files(engine, "mlp")
    gone = model_files(engine, f"pruned@{version}")
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pgml.delete_model('pruned')"))
        removed = conn.execute(sa.select(prune_model_files())).scalars().all()
    assert os.path.basename(gone) in removed  # with those of versions deleted earlier
    live = rows(
        engine, "SELECT id || '-' || pgml_internal.model_identity(id) FROM pgml.model_versions"
    )
    assert not {r[0] for r in live} & set(removed)
    assert not os.path.exists(gone) and os.path.exists(f"{kept}/model.json")
    assert scalar(engine, "SELECT pgml.predict_class('mlp', pixels) FROM inputs WHERE id = 4") == 4


def test_labels_must_name_every_class(engine, mlp_dir):
    """Three labels for ten classes used to be taken (classify then answered 'a', 'c',
    '7'); now registration refuses them, and no version is made."""
    with pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(engine, "few_labels", mlp_dir, labels=["a", "b", "c"])
    fields = info.value.orig.args[0]
    assert fields["C"] == "22023"
    assert "scores 10 classes, but 3 labels were given" in fields["M"]
    assert "Give 10 labels" in fields.get("H", "")
    with pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(engine, "few_labels", mlp_dir, labels=["a"] * 10)
    assert "labels must differ" in info.value.orig.args[0]["M"]
    assert scalar(engine, "SELECT count(*) FROM pgml.models WHERE name = 'few_labels'") == 0
    assert client.register_model(engine, "few_labels", mlp_dir, labels=labels("d")) >= 1


def test_model_management_says_what_it_did(engine, mlp_dir):
    """unpin of a model that was not pinned, or is not registered, and deleting the
    pinned version used to pass in silence (now it needs force => true, and says it
    unpinned); create_function took any model name."""
    client.register_model(engine, "managed", mlp_dir)
    client.register_model(engine, "managed", mlp_dir)
    assert client.pin_model(engine, "managed", None) is False  # was not pinned
    code, message, _ = sql_error(engine, "SELECT pgml.unpin_model('no_such_model')")
    assert code == "42704" and "not registered" in message
    client.pin_model(engine, "managed", 1)
    # the pinned version serves: deleting it is refused unless forced
    code, message, hint = sql_error(engine, "SELECT pgml.delete_model('managed', 1)")
    assert code == "55006" and "version 1 of model 'managed' is pinned" in message
    assert "force => true" in hint and "pgml.pin_model('managed', N)" in hint
    assert scalar(engine, "SELECT version FROM pgml.models WHERE name = 'managed' AND current") == 1
    assert client.delete_model(engine, "managed", 2) == 1  # another version: no force needed
    assert client.register_model(engine, "managed", mlp_dir) == 2  # the next after 1
    with engine.begin() as conn:
        deleted = conn.execute(sa.text("SELECT pgml.delete_model('managed', 1, force => true)"))
        assert deleted.scalar() == 1
        notices = list(conn.connection.dbapi_connection.notices)
    assert any("was pinned to version 1, which is deleted" in str(n) for n in notices), notices
    assert rows(
        engine, "SELECT version, current, pinned FROM pgml.models WHERE name = 'managed'"
    ) == [(2, True, False)]
    code, message, hint = sql_error(engine, "SELECT pgml.create_function('f_typo', 'managd')")
    assert code == "42704" and "'managd' is not registered" in message and "Register" in hint
    committed(engine, "SELECT pgml.create_function('f_managed', 'managed@2')")
    assert scalar(engine, "SELECT f_managed(pixels) FROM inputs WHERE id = 4") == "4"


def test_rollback_in_sql_pins_the_version_before_the_serving_one(engine, mlp_dir):
    for _ in range(3):
        client.register_model(engine, "rolled", mlp_dir)
    assert committed(engine, "SELECT pgml.rollback_model('rolled')") == 2
    assert scalar(engine, "SELECT version FROM pgml.models WHERE name = 'rolled' AND current") == 2
    assert committed(engine, "SELECT pgml.rollback_model('rolled')") == 1  # from the pinned one
    code, message, hint = sql_error(engine, "SELECT pgml.rollback_model('rolled')")
    assert code == "22023" and "no version before version 1" in message and "pin_model" in hint
    code, message, _ = sql_error(engine, "SELECT pgml.rollback_model('never_registered')")
    assert code == "42704" and "not registered" in message
    committed(engine, "SELECT pgml.unpin_model('rolled')")
    assert client.rollback_model(engine, "rolled") == 2  # the client calls the same function
    committed(engine, "SELECT pgml.delete_model('rolled')")


def test_labels_carry_to_a_new_version_that_has_as_many_classes(db_url, engine, mlp_dir):
    """Re-registering without labels used to change answers from 'seven' to '7': the
    previous version's labels carry over (a NOTICE says so) when they name every class,
    an empty list drops them, and a model of other classes does not take them."""
    from recipes import keras_named_inputs

    from conftest import built_model

    named = labels("c")
    current_labels = "SELECT labels FROM pgml.models WHERE name = 'carried' AND current"
    client.register_model(engine, "carried", mlp_dir, labels=named)
    with new_engine(db_url).connect() as conn:
        raw = conn.connection.driver_connection
        client.register_model(conn, "carried", mlp_dir)
        conn.commit()
        notices = [n.get(b"M", n.get("M", "")) for n in getattr(raw, "notices", [])]
    assert any("keeps the labels of v1" in str(n) for n in notices), notices
    got = rows(engine, "SELECT version, labels FROM pgml.models WHERE name = 'carried' ORDER BY 1")
    assert got == [(1, named), (2, named)]
    with engine.connect() as conn:
        assert classify_one(conn, "carried") == "c4"
    client.register_model(engine, "carried", mlp_dir, labels=[])
    assert scalar(engine, current_labels) is None
    client.register_model(engine, "carried", mlp_dir, labels=named)
    other = built_model("serving-keras-named-inputs", keras_named_inputs)
    client.register_model(engine, "carried", other)  # its classes are not ten
    assert scalar(engine, current_labels) is None
    committed(engine, "SELECT pgml.delete_model('carried')")
