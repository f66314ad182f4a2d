"""TensorFlow and PostgreSQL's JIT never share a process (src/jit_guard.c, indb/child.py).

TensorFlow carries its own LLVM: with PostgreSQL's JIT provider loaded too, a backend
segfaults in either order and the postmaster restarts every connection. Registration
runs TensorFlow in a child process; pgml's statements are planned without JIT; once
TensorFlow is in a backend, jit stays off there; a backend that has loaded LLVM refuses
TensorFlow with an ERROR. The crash matrix runs the public scoring functions in
backends that did other things first, with JIT forced on and off, serial and parallel,
completed and cancelled, and looks for a crash after each case.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from conftest import force_parallel_plans, new_engine

FORCE_JIT = [
    "SET jit = on",
    "SET jit_above_cost = 0",
    "SET jit_inline_above_cost = 0",
    "SET jit_optimize_above_cost = 0",
]
NO_JIT = ["SET jit = off"]
SERIAL = ["SET max_parallel_workers_per_gather = 0"]
# A query PostgreSQL JIT-compiles under FORCE_JIT, with no pgml in it.
PLAIN = "SELECT count(*) FROM generate_series(1, 300000) g WHERE g % 7 = 3"
# One row in 18 of the reference digits: a full scan (parallel where asked), 100 rows.
SOME = "FROM inputs WHERE id % 18 = 0"
# Enough rows that no model scores them before the statement_timeout (ids unique).
MANY = (
    "FROM (SELECT i.id * 1000 + g AS id, i.pixels, i.example, i.label "
    "FROM inputs i, generate_series(1, 400) g OFFSET 0) AS inputs WHERE true"
)
CANCEL_MS = 150


@pytest.fixture(scope="module")
def tf_model(engine, mlp_dir) -> str:
    """The reference MLP served by TensorFlow (each backend that scores it imports TF)."""
    from pgml_ext import client

    client.register_model(engine, "mlp_tf", mlp_dir, runtime="tensorflow")
    return "mlp_tf"


@pytest.fixture
def settled(cluster, crash_witness):
    """Asserts after the test, a moment later, that nothing crashed: a crash can land
    just after the client got its answer."""
    yield
    time.sleep(0.3)
    assert not crash_witness.crashes(), "\n".join(crash_witness.crashes())
    assert crash_witness.alive(), "the server restarted"


def _tensorflow_in(conn) -> bool:
    return conn.exec_driver_sql("SELECT pgml.backend_status()").scalar()["tensorflow_imported"]


def _error(conn, sql: str) -> tuple[str, str, str]:
    with pytest.raises(sa.exc.DatabaseError) as info:
        conn.exec_driver_sql(sql)
    fields = info.value.orig.args[0]
    conn.rollback()
    return fields["C"], fields["M"], fields.get("H", "")


def _uses_jit(conn, sql: str) -> bool:
    plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT TEXT) {sql}").scalars().all()
    return any(line.startswith("JIT:") for line in plan)


def test_the_issue_repro_no_longer_crashes(db_url, settled):
    """import tensorflow in a DO block, then a JIT-costed query: it crashed the cluster."""
    with new_engine(db_url).connect() as conn:
        conn.exec_driver_sql("DO $$ import tensorflow $$ LANGUAGE plpython3u")
        for s in FORCE_JIT[1:]:
            conn.exec_driver_sql(s)
        assert conn.exec_driver_sql(PLAIN).scalar() == 42857
        assert not _uses_jit(conn, PLAIN)
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        code, message, hint = _error(conn, "SET jit = on")
        assert code == "55000"
        assert "loaded TensorFlow" in message and "new session" in hint
        conn.exec_driver_sql("RESET jit")
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        assert conn.exec_driver_sql(PLAIN).scalar() == 42857


def test_jit_set_on_before_tensorflow_is_turned_off_by_it(
    db_url, models, inputs, tf_model, settled
):
    with new_engine(db_url).connect() as conn:
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        assert (
            conn.exec_driver_sql(
                f"SELECT count(pgml.classify('{tf_model}', example)) {SOME}"
            ).scalar()
            == 100
        )
        assert _tensorflow_in(conn)
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        assert not _uses_jit(conn, PLAIN)
        # a statement prepared before, run after: still no JIT
        conn.exec_driver_sql("PREPARE big AS " + PLAIN)
        assert conn.exec_driver_sql("EXECUTE big").scalar() == 42857


def test_registration_runs_tensorflow_outside_the_backend(db_url, mlp_dir, inputs, settled):
    """register, then on the same connection a JIT-costed scoring of 200,000 rows: it
    segfaulted every time."""
    from pgml_ext import client

    engine = new_engine(db_url)
    with engine.connect() as conn:
        conn.exec_driver_sql("SET client_min_messages = warning")
        version = conn.execute(
            sa.text("SELECT pgml.load_model('mlp_jit', :p)"), {"p": str(mlp_dir)}
        ).scalar()
        conn.commit()
        assert version >= 1
        assert not _tensorflow_in(conn)
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        assert conn.exec_driver_sql(PLAIN).scalar() == 42857
        assert _uses_jit(conn, PLAIN)  # LLVM is in this backend now
        n = conn.exec_driver_sql(
            "SELECT count(pgml.classify('mlp_jit', example)) FROM inputs, generate_series(1, 112)"
        ).scalar()
        assert n == 1797 * 112
        # and registering again in a backend with LLVM loaded works: TF is in a child
        conn.exec_driver_sql("SET client_min_messages = warning")
        assert client.register_model(db_url, "mlp_jit", mlp_dir) == version + 1
        assert not _tensorflow_in(conn)
    engine.dispose()


def test_pgml_statements_are_planned_without_jit(db_url, models, inputs, settled):
    with new_engine(db_url).connect() as conn:
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        assert _uses_jit(conn, "SELECT count(*) FROM inputs WHERE label % 3 = 1")
        assert not _uses_jit(conn, "SELECT count(pgml.classify('mlp', example)) FROM inputs")
        assert not _uses_jit(
            conn, "SELECT id FROM inputs WHERE pgml.predict_class('mlp', pixels) = label"
        )


def test_tensorflow_refuses_a_backend_with_llvm_loaded(db_url, models, inputs, tf_model, settled):
    """JIT first (LLVM loaded by a query without pgml), then a TensorFlow-served model:
    a clean ERROR that says what to do, the session usable, LiteRT models still served."""
    with new_engine(db_url).connect() as conn:
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        assert _uses_jit(conn, PLAIN)
        code, message, hint = _error(conn, f"SELECT pgml.classify('{tf_model}', example) {SOME}")
        assert code == "55000", message
        assert "JIT-compiled" in message and "TensorFlow" in message
        assert "new session" in hint
        assert not _tensorflow_in(conn)
        assert (
            conn.exec_driver_sql(f"SELECT count(pgml.classify('mlp', example)) {SOME}").scalar()
            == 100
        )


def test_a_pgml_call_anywhere_in_the_plan_keeps_its_statement_off_jit(
    db_url, models, inputs, tf_model, settled
):
    """In an index condition, a join clause or a LIMIT the call was missed: the
    statement was JIT-compiled, loaded LLVM, and TensorFlow was then refused."""
    calls = [
        f"SELECT id FROM inputs WHERE id = pgml.predict_class('{tf_model}', "
        "(SELECT example FROM inputs WHERE id = 7))",
        f"SELECT a.id FROM inputs a JOIN inputs b ON a.id = pgml.predict_class('{tf_model}', "
        "b.example) WHERE b.id < 3",
        f"SELECT id FROM inputs LIMIT pgml.predict_class('{tf_model}', "
        "(SELECT example FROM inputs WHERE id = 3))",
    ]
    for sql in calls:
        with new_engine(db_url).connect() as conn:
            for s in [*FORCE_JIT, "SET enable_seqscan = off"]:
                conn.exec_driver_sql(s)
            conn.exec_driver_sql(sql).all()
            assert not _uses_jit(conn, sql)


def test_a_failed_pgml_statement_leaves_no_mark_behind(db_url, models, inputs, settled):
    with new_engine(db_url).connect() as conn:
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        conn.exec_driver_sql(
            "DO $$ BEGIN PERFORM pgml.predict_class('no_such_model', example) FROM inputs; "
            "EXCEPTION WHEN others THEN NULL; END $$"
        )
        conn.exec_driver_sql("PREPARE plain AS " + PLAIN)
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE) EXECUTE plain").scalars().all()
        assert any(line.startswith("JIT:") for line in plan)
        conn.commit()


def test_settings_for_later_sessions_may_turn_jit_on(db_url, models, inputs, tf_model, settled):
    """ALTER ROLE / DATABASE ... SET jit = on only check the value: a session that loaded
    TensorFlow may run them; its own jit stays off."""
    with new_engine(db_url).connect() as conn:
        conn.exec_driver_sql(f"SELECT pgml.classify('{tf_model}', example) FROM inputs LIMIT 1")
        conn.exec_driver_sql("ALTER ROLE CURRENT_USER SET jit = on")
        conn.exec_driver_sql("ALTER ROLE CURRENT_USER RESET jit")
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        conn.commit()


# -- the crash matrix ------------------------------------------------------------------

CALLS = {
    "predict(bytea)": "SELECT count(pgml.predict('{m}', example)) {rows}",
    "classify(float4[])": "SELECT count(pgml.classify('{m}', pixels)) {rows}",
    "predict_class in WHERE": "SELECT count(*) {rows} AND pgml.predict_class('{m}', example) >= 0",
    "classify(jsonb)": "SELECT count(pgml.classify('{m}', "
    "jsonb_build_object('pixels', pixels))) {rows}",
    "predict_batch": "SELECT count(*) FROM pgml.predict_batch('{m}', "
    "(SELECT array_agg(example) {rows}))",
    "classify_batch": "SELECT cardinality(pgml.classify_batch('{m}', array_agg(pixels))) {rows}",
    "score_into": "SELECT pgml.score_into('{m}', $$SELECT id, example {rows}$$, 'matrix_out')",
}
# TensorFlow is slow to load (each parallel worker imports it per query): fewer forms.
TF_CALLS = ["predict(bytea)", "classify(jsonb)", "predict_batch", "score_into"]
STATES = ["fresh", "registered a model", "scored a TensorFlow-served model"]


def _prepare(conn, state: str, mlp_dir, tf_model: str) -> None:
    if state == "registered a model":
        conn.exec_driver_sql("SET client_min_messages = warning")
        conn.execute(sa.text("SELECT pgml.load_model('mlp_matrix', :p)"), {"p": str(mlp_dir)})
        conn.commit()
        conn.exec_driver_sql("RESET client_min_messages")
    elif state == "scored a TensorFlow-served model":
        conn.exec_driver_sql(f"SELECT pgml.classify('{tf_model}', example) FROM inputs LIMIT 1")
        conn.commit()


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("jit", [True, False], ids=["jit-forced", "jit-off"])
@pytest.mark.parametrize("state", STATES)
def test_crash_matrix(
    db_url, models, inputs, tf_model, mlp_dir, crash_witness, state, jit, parallel
):
    engine = new_engine(db_url)
    done = []
    with engine.connect() as conn:
        _prepare(conn, state, mlp_dir, tf_model)
        settings = FORCE_JIT if jit else NO_JIT
        if jit and state == "scored a TensorFlow-served model":
            code, _, _ = _error(conn, settings[0])  # jit stays off in this backend
            assert code == "55000"
            settings = settings[1:]
        for s in settings + (SERIAL if not parallel else []):
            conn.exec_driver_sql(s)
        if parallel:
            force_parallel_plans(conn)
        conn.commit()
        for model in (tf_model, "mlp"):
            for name, template in CALLS.items():
                if model == tf_model and name not in TF_CALLS:
                    continue
                case = f"{state} / {name} on {model}"
                conn.exec_driver_sql("DROP TABLE IF EXISTS matrix_out")
                got = conn.exec_driver_sql(template.format(m=model, rows=SOME)).scalar()
                assert got == 100, (case, got)
                conn.commit()
                conn.exec_driver_sql(f"SET statement_timeout = {CANCEL_MS}")
                code, message, _ = _error(conn, template.format(m=model, rows=MANY))
                assert code == "57014", (case, message)
                conn.exec_driver_sql("SET statement_timeout = 0")
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1, case
                assert not crash_witness.crashes(), case
                done.append(case)
        conn.exec_driver_sql("DROP TABLE IF EXISTS matrix_out")
        conn.commit()
    engine.dispose()
    time.sleep(0.3)  # a crash can land just after the answer
    assert not crash_witness.crashes(), "\n".join(crash_witness.crashes())
    assert crash_witness.alive(), "the server restarted"
    assert len(done) == len(CALLS) + len(TF_CALLS)
