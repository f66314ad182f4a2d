"""Cancel, terminate and restart: the server and the data stay intact."""

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa

from conftest import new_engine, rows, scalar
from pgml_ext import client

pytestmark = pytest.mark.usefixtures("models", "inputs")

LONG_SCORE = "SELECT count(pgml.classify('mlp', example)) FROM inputs, generate_series(1, 400)"


def _run_in_thread(url: str, sql: str, outcome: dict) -> tuple[threading.Thread, int]:
    engine = new_engine(url)
    conn = engine.connect()
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    def target():
        started = time.perf_counter()
        try:
            conn.execute(sa.text(sql)).all()
            outcome["result"] = "finished"
        except sa.exc.DBAPIError as e:
            fields = e.orig.args[0] if e.orig.args and isinstance(e.orig.args[0], dict) else {}
            outcome["result"] = fields.get("C", type(e.orig).__name__)
        outcome["ended"] = time.perf_counter()
        outcome["elapsed"] = outcome["ended"] - started
        with contextlib.suppress(Exception):
            conn.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, pid


@pytest.mark.parametrize("how", ["pg_cancel_backend", "statement_timeout"])
def test_cancel_stops_scoring_promptly(db_url, engine, how):
    outcome: dict = {}
    sql = (
        LONG_SCORE if how == "pg_cancel_backend" else f"SET statement_timeout = '1s'; {LONG_SCORE}"
    )
    thread, pid = _run_in_thread(db_url, sql, outcome)
    time.sleep(1.5)
    if how == "pg_cancel_backend":
        asked = time.perf_counter()
        assert scalar(engine, "SELECT pg_cancel_backend(:p)", p=pid)
    thread.join(timeout=60)
    assert outcome["result"] == "57014"  # query_canceled
    if how == "pg_cancel_backend":
        latency = outcome["ended"] - asked
        print(f"cancel latency {latency * 1000:.0f} ms")
        assert latency < 5  # generous on a noisy machine; typically a few ms


def test_backend_stays_usable_after_cancel(db_url):
    with new_engine(db_url).connect() as conn:
        conn.exec_driver_sql("SET statement_timeout = '500ms'")
        with pytest.raises(sa.exc.DBAPIError):
            conn.execute(sa.text(LONG_SCORE)).all()
        conn.rollback()
        conn.exec_driver_sql("SET statement_timeout = 0")
        assert (
            conn.execute(
                sa.text("SELECT pgml.classify('mlp', pixels) FROM inputs WHERE id = 1")
            ).scalar()
            == "1"
        )


def test_terminated_registration_leaves_no_model(db_url, engine, wrapped_dir):
    """Terminate the backend while the server converts and checks the model."""
    errors: list = []

    def register():
        try:
            client.register_model(new_engine(db_url), "half", wrapped_dir)
        except Exception as e:  # expected: the connection is terminated
            errors.append(e)

    thread = threading.Thread(target=register)
    thread.start()
    deadline = time.time() + 30
    victim = None
    while time.time() < deadline and victim is None:
        found = rows(
            engine,
            "SELECT pid FROM pg_stat_activity WHERE query LIKE "
            "'%_finish_registration%' AND pid <> pg_backend_pid() "
            "AND state = 'active'",
        )
        victim = found[0][0] if found else None
        time.sleep(0.05)
    assert victim is not None, "registration never reached the server's check"
    assert scalar(engine, "SELECT pg_terminate_backend(:p)", p=victim)
    thread.join(timeout=60)
    assert errors
    assert rows(engine, "SELECT 1 FROM pgml.model_versions WHERE name = 'half'") == []
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM pgml.model_chunks c LEFT JOIN "
            "pgml.model_versions m ON m.id = c.model_id WHERE m.id IS NULL",
        )
        == 0
    )


def test_terminated_score_into_leaves_no_predictions(db_url, engine):
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS many AS SELECT (g * 10000 + i.id) AS id, "
                "i.example FROM inputs i, generate_series(1, 100) g"
            )
        )
    outcome: dict = {}
    thread, pid = _run_in_thread(
        db_url, "SELECT pgml.score_into('mlp', 'many', 'many_preds', chunk_size => 200)", outcome
    )
    time.sleep(2)
    assert scalar(engine, "SELECT pg_terminate_backend(:p)", p=pid)
    thread.join(timeout=60)
    assert outcome["result"] != "finished"
    assert rows(engine, "SELECT 1 FROM pg_tables WHERE tablename = 'many_preds'") == []


@pytest.mark.restarts_server
def test_server_restart_keeps_models(cluster, engine, db_url):
    before = scalar(engine, "SELECT count(*) FROM pgml.model_versions")
    engine.dispose()
    cluster.stop()
    cluster.start()
    after_engine = new_engine(db_url)
    assert scalar(after_engine, "SELECT count(*) FROM pgml.model_versions") == before
    assert (
        scalar(after_engine, "SELECT pgml.classify('mlp', pixels) FROM inputs WHERE id = 2") == "2"
    )
    assert (
        scalar(after_engine, "SELECT pgml.classify('mnist', example) FROM inputs WHERE id = 2")
        == "2"
    )
    engine.dispose()  # pooled connections died with the old server


def test_cancel_reaches_a_large_batch(db_url):
    """Batches are scored in chunks with an interrupt check in between (Python code never
    sees PostgreSQL's cancel flag). With one-row chunks this batch takes seconds; a
    400 ms statement_timeout must stop it inside the scoring loop."""
    with new_engine(db_url).connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TEMP TABLE batch_in AS SELECT i.example FROM inputs i, "
                "generate_series(1, 20)"
            )
        )
        conn.execute(sa.text("SET pgml.batch_chunk_rows = 1"))
        conn.commit()
        conn.execute(sa.text("SET statement_timeout = '400ms'"))
        started = time.perf_counter()
        with pytest.raises(sa.exc.DBAPIError) as info:
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pgml.predict_batch('mlp', "
                    "(SELECT array_agg(example) FROM batch_in))"
                )
            ).all()
        elapsed = time.perf_counter() - started
        assert info.value.orig.args[0]["C"] == "57014"
        print(f"batch cancelled after {elapsed * 1000:.0f} ms (timeout 400 ms)")
        conn.rollback()  # also undoes the statement_timeout
        # and without the timeout the same batch completes
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pgml.predict_batch('mlp', "
                    "(SELECT array_agg(example) FROM batch_in))"
                )
            ).scalar()
            == 35940
        )
