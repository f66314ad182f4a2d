"""Per-row SQL run over blocks of rows (src/block_scan.c): a scan whose target list
calls a scoring function gets a PgmlBlockScan that scores blocks of 1, 2, 4, ...
pgml.block_rows rows in one LiteRT run each. The answers and errors are the per-row
path's, row by row and in order; LIMIT and cursors score no further than a block."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_native import SERVER_EXAMPLES, examples_around, outcome, status

from conftest import force_parallel_plans, new_engine, numbered_table
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models", "inputs")


@pytest.fixture(scope="module")
def conn(db_url):
    engine = new_engine(db_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("SELECT pgml.predict('mlp', pixels) FROM inputs LIMIT 1")).all()
        yield c  # the library is loaded: its planner hook plans the statements below
    engine.dispose()


def _plan(conn, sql: str) -> str:
    return "\n".join(conn.execute(sa.text(f"EXPLAIN VERBOSE {sql}")).scalars())


def _per_row(conn, sql: str):
    conn.execute(sa.text("SET pgml.block_rows = 1"))
    try:
        assert "PgmlBlockScan" not in _plan(conn, sql)
        return outcome(conn, sql, native=True)
    finally:
        conn.execute(sa.text("RESET pgml.block_rows"))


@pytest.mark.parametrize("column", ["example", "pixels"])
def test_blocks_answer_every_row_as_the_per_row_path(conn, column):
    sql = (
        f"SELECT id, pgml.predict('mlp', {column}), pgml.classify('mlp_labels', {column}), "
        f"pgml.predict_class('mnist', {column}) FROM inputs"
    )
    assert "PgmlBlockScan" in _plan(conn, sql)
    before = status(conn)
    blocks = outcome(conn, sql, native=True)
    after = status(conn)
    assert blocks[0] == "ok" and len(blocks[1]) == 1797
    assert blocks == _per_row(conn, sql)
    assert blocks == outcome(conn, sql, native=False)  # and PL/Python's
    assert after["native_rows"] - before["native_rows"] == 3 * 1797


def test_odd_rows_in_a_block_get_their_own_answer_or_error_at_their_turn(conn, engine, digits):
    """NULLs, Examples C does not take and bad inputs among good ones: each row as the
    per-row path answers it, and a bad row's ERROR comes when its turn comes (a cursor
    fetches the rows before it)."""
    good = [examples.encode({"x": digits[0][i]}) for i in range(40)]
    odd = list(good)
    odd[3] = None
    odd[7] = examples.encode({"x": digits[0][7].astype(np.float64)})[:-3] + b"\x00"  # bad
    odd[11] = examples.encode({"x": np.zeros(10, np.float32)})  # the wrong length
    odd[13] = examples.encode({"other": digits[0][13]})  # the only feature: taken
    numbered_table(engine, "odd_block", "example bytea", odd)
    every = "SELECT id, pgml.predict_class('mlp', example) FROM odd_block"
    assert "PgmlBlockScan" in _plan(conn, every)
    failed = outcome(conn, every, native=True)
    assert failed == _per_row(conn, every) and failed[0] == "error"
    ok = f"{every} WHERE id NOT IN (7, 11)"
    got = outcome(conn, ok, native=True)
    assert got == _per_row(conn, ok) and got[0] == "ok"
    assert [r[1] is None for r in got[1]][:4] == [False, False, False, True]
    with engine.connect() as c:  # a cursor: the rows before the bad one arrive
        c.execute(
            sa.text(
                "DECLARE odd CURSOR FOR SELECT pgml.predict_class('mlp', example) FROM odd_block"
            )
        )
        assert len(c.execute(sa.text("FETCH 7 FROM odd")).all()) == 7
        with pytest.raises(sa.exc.DatabaseError) as info:
            c.execute(sa.text("FETCH 1 FROM odd")).all()
        assert info.value.orig.args[0]["C"] == "22P03"  # row 7: not a protobuf


def test_limit_and_cursors_score_no_further_than_a_block(conn):
    before = status(conn)["native_rows"]
    assert (
        len(conn.execute(sa.text("SELECT pgml.predict('mlp', pixels) FROM inputs LIMIT 1")).all())
        == 1
    )
    assert status(conn)["native_rows"] - before == 1  # the first block is one row
    conn.execute(sa.text("BEGIN"))
    conn.execute(sa.text("DECLARE c CURSOR FOR SELECT pgml.classify('mlp', pixels) FROM inputs"))
    before = status(conn)["native_rows"]
    conn.execute(sa.text("FETCH 10 FROM c")).all()
    assert status(conn)["native_rows"] - before <= 15  # blocks of 1, 2, 4, 8
    conn.execute(sa.text("COMMIT"))


def test_parallel_plans_score_blocks_in_their_workers(conn):
    sql = "SELECT id, pgml.classify('mlp', example) FROM inputs"
    force_parallel_plans(conn)
    try:
        plan = _plan(conn, sql)
        assert "Gather" in plan and "PgmlBlockScan" in plan
        got = outcome(conn, sql, native=True)
    finally:
        conn.execute(sa.text("RESET ALL"))
    want = outcome(conn, sql, native=True)
    assert got[0] == "ok" and sorted(got[1]) == sorted(want[1])


def test_create_table_as_and_insert_select_use_blocks(conn):
    conn.execute(sa.text("DROP TABLE IF EXISTS scored"))
    sql = "SELECT id, pgml.classify('mlp_labels', pixels) AS label FROM inputs"
    assert "PgmlBlockScan" in _plan(conn, f"CREATE TABLE scored AS {sql}")
    conn.execute(sa.text(f"CREATE TABLE scored AS {sql}"))
    conn.execute(sa.text(f"INSERT INTO scored {sql} WHERE id < 10"))
    got = conn.execute(sa.text("SELECT count(*), count(DISTINCT label) FROM scored")).one()
    assert tuple(got) == (1807, 10)


@st.composite
def _lookup_rows(draw) -> list[bytes | None]:
    """Rows for the lookups model: most fit it (known and unknown keys), some are odd
    (examples_around), some NULL."""
    fitting = st.builds(
        lambda age, region, plan: examples.encode(
            {"age": np.array([age], np.float32), "region": [region], "plan": np.array([plan])}
        ),
        st.floats(-1e6, 1e6, width=32),
        st.sampled_from([b"north", b"south", b"east", b"", b"west"]),
        st.integers(-3, 6),
    )
    odd = examples_around(["age", "region", "plan"], [b"north", b"east"])
    row = st.one_of(fitting, fitting, fitting, odd, st.none())
    return draw(st.lists(row, min_size=1, max_size=24))


@pytest.fixture(scope="module")
def lookups(engine):
    from recipes import keras_lookups

    from conftest import built_model
    from pgml_ext import client

    client.register_model(engine, "lookups_blocks", built_model("keras-lookups", keras_lookups))


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=_lookup_rows())
def test_blocks_and_rows_alike_on_any_table(conn, engine, lookups, rows):
    """A table of fitting, odd and NULL rows scored in blocks and row by row: the same
    answers in the same order, or the same ERROR, and never a crash."""
    numbered_table(engine, "fuzz_block", "example bytea", rows)
    sql = (
        "SELECT pgml.predict('lookups_blocks', example), "
        "pgml.predict_class('lookups_blocks', example) FROM fuzz_block"
    )
    assert outcome(conn, sql, native=True) == _per_row(conn, sql)


def test_aggregates_over_the_scores_use_blocks_and_conditional_calls_stay_per_row(conn):
    """count(pgml.classify(...)) and avg((pgml.predict_class(...) = label)::int): the
    calls in an aggregate's arguments move into the scan, whose block scan scores them.
    A call under FILTER or CASE is only evaluated for some rows: it stays per row."""
    blocked = (
        "SELECT label, count(pgml.classify('mlp', example)), "
        "avg((pgml.predict_class('mlp', pixels) = label)::int), "
        "max(pgml.predict_class('mlp', pixels)) FROM inputs GROUP BY label "
        "HAVING count(pgml.classify('mlp', example)) > 0 ORDER BY label"
    )
    assert "PgmlBlockScan" in _plan(conn, blocked)
    before = status(conn)["native_rows"]
    got = outcome(conn, blocked, native=True)
    assert status(conn)["native_rows"] - before == 2 * 1797  # each call once per row
    assert got[0] == "ok" and len(got[1]) == 10 and got == _per_row(conn, blocked)
    assert min(r[2] for r in got[1]) > 0.8
    conditional = (
        "SELECT count(*) FILTER (WHERE pgml.predict_class('mlp', pixels) = 1), "
        "sum(CASE WHEN label = 0 THEN pgml.predict_class('mlp', pixels) END), "
        "count(pgml.predict('mlp', pixels)) FILTER (WHERE label = 3) FROM inputs"
    )
    plan = _plan(conn, conditional)
    assert "PgmlBlockScan" not in plan, plan
    assert outcome(conn, conditional, native=True) == _per_row(conn, conditional)


def test_calls_inside_expressions_use_blocks_and_answer_as_rows(conn):
    """predict_value (a call wrapped in only_value), comparisons and casts around a call
    in the SELECT list are scored in blocks; a call under CASE or COALESCE is only
    evaluated for some rows, so it stays per row."""
    sql = (
        "SELECT id + 1, pgml.predict_class('mlp', pixels) = label AS hit, "
        "pgml.classify('mlp_labels', example) || '!', "
        "(pgml.predict('mlp', example))[1]::numeric(8, 6), "
        "CASE WHEN label = 3 THEN pgml.classify('mlp', pixels) END FROM inputs"
    )
    plan = _plan(conn, sql)
    assert "PgmlBlockScan" in plan, plan
    before = status(conn)["native_rows"]
    got = outcome(conn, sql, native=True)
    assert status(conn)["native_rows"] - before >= 3 * 1797
    assert got[0] == "ok" and got == _per_row(conn, sql)
    assert sum(r[1] for r in got[1]) > 1700


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_block_of_large_inputs_is_bounded_by_work_mem(engine, db_url, digits):
    """Blocks held 8192 rows' inputs detoasted at once (work_mem did not apply): 1,024
    inputs of 1 MB took 565 MB; 8192 of 4 MB would have OOM-killed the backend. (The
    inputs compress to a few kB each: the shared buffers they are read from stay out of
    the backend's peak RSS.)"""
    big = examples.encode({"pixels": digits[0][0], "pad": [b"\x01" * (1 << 20)]})
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS big_inputs")
        conn.exec_driver_sql("CREATE TABLE big_inputs (id int, example bytea)")
        conn.execute(
            sa.text("INSERT INTO big_inputs SELECT g, :e FROM generate_series(1, 200) g"),
            {"e": big},
        )
    sql = "SELECT count(pgml.predict_class('mlp', example)) FROM big_inputs"
    eng = new_engine(db_url)
    with eng.connect() as c:
        c.exec_driver_sql("SET pgml.block_rows = 8192")
        c.exec_driver_sql("SET work_mem = '4MB'")
        pid = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        c.exec_driver_sql("SELECT pgml.predict_class('mlp', example) FROM big_inputs LIMIT 1")
        before = _peak_rss_mb(pid)
        assert "PgmlBlockScan" in "\n".join(c.exec_driver_sql(f"EXPLAIN {sql}").scalars())
        assert c.exec_driver_sql(sql).scalar() == 200
        grown = _peak_rss_mb(pid) - before
    eng.dispose()
    assert grown < 40, f"peak RSS grew {grown:.0f} MB for 200 MB of inputs"
