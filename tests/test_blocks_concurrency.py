"""Blocks of rows under concurrent writers (src/block_scan.c, READ COMMITTED).

UPDATE, DELETE and SELECT ... FOR UPDATE re-read a row that another transaction
changed while they waited for it (EvalPlanQual): the block scan scores the new version
then, instead of losing the row. WHERE CURRENT OF names the row the cursor is on,
though the block scan has read ahead of it.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from conftest import ddl, new_engine

pytestmark = pytest.mark.usefixtures("models", "inputs")
ROWS = 20


@pytest.fixture
def scored(engine):
    """Table scored(id, example, touched, score) of 20 reference digits."""
    ddl(engine, "DROP TABLE IF EXISTS scored")
    ddl(
        engine,
        "CREATE TABLE scored AS SELECT id, example, 0 AS touched, NULL::real[] AS score, "
        f"NULL::int AS class FROM inputs WHERE id < {ROWS}",
    )
    ddl(engine, "ALTER TABLE scored ADD PRIMARY KEY (id)")
    return "scored"


def _while_a_row_is_locked(db_url, sql: str, row: int = 5):
    """SQL's result, run while another transaction holds ROW updated, then commits."""
    engine = new_engine(db_url)
    holder = engine.connect()
    holder.exec_driver_sql(f"UPDATE scored SET touched = touched + 1 WHERE id = {row}")
    result: dict = {}

    def run() -> None:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET pgml.block_rows = 64")
            plan = conn.exec_driver_sql("EXPLAIN " + sql).scalars().all()
            result["plan"] = "\n".join(plan)
            cursor = conn.exec_driver_sql(sql)
            result["rows"] = cursor.all() if cursor.returns_rows else cursor.rowcount
            conn.commit()

    waiter = threading.Thread(target=run)
    waiter.start()
    time.sleep(0.5)  # it waits on the row lock
    assert waiter.is_alive(), result
    holder.commit()
    holder.close()
    waiter.join(60)
    engine.dispose()
    return result


def test_update_scores_a_row_updated_meanwhile(engine, db_url, scored):
    got = _while_a_row_is_locked(db_url, "UPDATE scored SET score = pgml.predict('mlp', example)")
    assert "PgmlBlockScan" in got["plan"]
    assert got["rows"] == ROWS  # was 19: row 5 skipped
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, touched, score IS NOT NULL FROM scored").all()
        want = conn.exec_driver_sql(
            "SELECT id, pgml.predict('mlp', example) FROM scored ORDER BY id"
        ).all()
        stored = conn.exec_driver_sql("SELECT id, score FROM scored ORDER BY id").all()
    assert sorted(rows) == [(i, int(i == 5), True) for i in range(ROWS)]
    assert stored == want


def test_update_of_a_predicted_class_with_a_condition(engine, db_url, scored):
    sql = "UPDATE scored SET class = pgml.predict_class('mlp', example) WHERE touched = 1"
    ddl(engine, "UPDATE scored SET touched = 1")
    # the holder makes row 5 touched = 2: its new version no longer matches
    got = _while_a_row_is_locked(db_url, sql)
    assert got["rows"] == ROWS - 1
    with engine.connect() as conn:
        unset = conn.exec_driver_sql("SELECT id FROM scored WHERE class IS NULL").scalars().all()
    assert unset == [5]


def test_delete_by_a_score_sees_a_row_updated_meanwhile(engine, db_url, scored):
    got = _while_a_row_is_locked(
        db_url, "DELETE FROM scored WHERE pgml.predict_class('mlp', example) >= 0"
    )
    assert got["rows"] == ROWS
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM scored").scalar() == 0


def test_select_for_update_returns_a_row_updated_meanwhile(engine, db_url, scored):
    got = _while_a_row_is_locked(
        db_url, "SELECT id, touched, pgml.classify('mlp', example) FROM scored FOR UPDATE"
    )
    assert "PgmlBlockScan" in got["plan"]
    rows = sorted(got["rows"])
    assert [r[0] for r in rows] == list(range(ROWS))  # was 19 rows
    assert rows[5][1] == 1  # the new version
    with engine.connect() as conn:
        want = conn.exec_driver_sql(
            "SELECT id, touched, pgml.classify('mlp', example) FROM scored ORDER BY id"
        ).all()
    assert rows == want


def test_where_current_of_names_the_row_the_cursor_is_on(engine, scored):
    with engine.connect() as conn:
        conn.exec_driver_sql("SET pgml.block_rows = 64")
        conn.exec_driver_sql(
            "DECLARE c CURSOR FOR SELECT id, pgml.predict_class('mlp', example) FROM scored"
        )
        fetched = {}
        for _ in range(7):  # blocks of 1, 2, 4, 8: the scan is ahead of the cursor
            row_id, klass = conn.exec_driver_sql("FETCH 1 FROM c").one()
            conn.exec_driver_sql(f"UPDATE scored SET class = {klass} WHERE CURRENT OF c")
            fetched[row_id] = klass
        conn.commit()
        rows = conn.exec_driver_sql("SELECT id, class FROM scored WHERE class IS NOT NULL").all()
    assert dict(rows) == fetched and len(fetched) == 7


def test_where_current_of_a_for_update_cursor(engine, scored):
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "DECLARE c CURSOR FOR SELECT id, pgml.predict_class('mlp', example) FROM scored "
            "FOR UPDATE"
        )
        seen = []
        for _ in range(5):
            row_id, klass = conn.exec_driver_sql("FETCH 1 FROM c").one()
            conn.exec_driver_sql(f"UPDATE scored SET class = {klass} WHERE CURRENT OF c")
            seen.append(row_id)
        conn.commit()
        rows = conn.exec_driver_sql("SELECT id FROM scored WHERE class IS NOT NULL").all()
    assert sorted(r[0] for r in rows) == sorted(seen)


def test_a_cursor_over_a_join_is_still_not_simply_updatable(engine, scored):
    """PostgreSQL's own rule, not the block scan's: the error is PostgreSQL's."""
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "DECLARE c CURSOR FOR SELECT s.id, pgml.predict_class('mlp', s.example) "
            "FROM scored s JOIN scored t USING (id)"
        )
        conn.exec_driver_sql("FETCH 1 FROM c").one()
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql("UPDATE scored SET class = 1 WHERE CURRENT OF c")
        assert info.value.orig.args[0]["C"] == "24000"
