"""The JIT crash of DESIGN.md must be impossible.

With jit = on and its costs forced to zero, PostgreSQL loads LLVM into the backend; a
plain TensorFlow import after that (or a JIT-compiled query after TensorFlow) segfaults
and the postmaster restarts every connection. Here both orders must score correctly in
a fresh backend while a witness connection proves the server never restarted.
"""

import pytest
import sqlalchemy as sa

from conftest import new_engine

pytestmark = pytest.mark.usefixtures("models", "inputs")

FORCE_JIT = [
    "SET jit = on",
    "SET jit_above_cost = 0",
    "SET jit_inline_above_cost = 0",
    "SET jit_optimize_above_cost = 0",
]
SCORE = "SELECT avg((pgml.classify('mlp', example) = label::text)::int) FROM inputs"


@pytest.fixture
def witness(engine):
    conn = engine.connect()
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    yield conn
    # a backend crash would have terminated this connection too
    assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid
    conn.close()


def _jit_used(conn) -> bool:
    plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT TEXT) {SCORE}").scalars().all()
    return any(line.startswith("JIT:") for line in plan)


def test_jit_first_then_tensorflow(db_url, witness, cluster):
    with new_engine(db_url).connect() as conn:
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        # first scoring call in this backend happens inside a JIT-compiled query
        assert conn.exec_driver_sql(SCORE).scalar() > 0.95
        assert _jit_used(conn)
    assert "terminated by signal" not in cluster.log_tail(200)


def test_tensorflow_first_then_jit(db_url, witness, cluster):
    with new_engine(db_url).connect() as conn:
        assert conn.exec_driver_sql(SCORE).scalar() > 0.95  # TensorFlow loads here
        for s in FORCE_JIT:
            conn.exec_driver_sql(s)
        assert conn.exec_driver_sql(SCORE).scalar() > 0.95
        assert _jit_used(conn)
        conn.execute(sa.text("SELECT count(DISTINCT id % 7) FROM inputs")).scalar()
    assert "terminated by signal" not in cluster.log_tail(200)
