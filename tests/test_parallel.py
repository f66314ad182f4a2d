"""Scoring inside parallel query: PARALLEL SAFE functions run in the workers.

Each test forces a parallel plan (costs zeroed), checks with EXPLAIN ANALYZE that the
scoring function sits below the Gather and that workers scored rows, and compares the
answers with the same query run serially. pgml_internal.model_ref (C) resolves the model in
every worker, and the first process that needs a version writes its files to disk.
"""

import json
import shutil

import pytest
import sqlalchemy as sa

from conftest import model_files, new_engine, scalar
from pgml_ext.bench import PARALLEL_PLAN

pytestmark = pytest.mark.usefixtures("models", "inputs")

PARALLEL = [
    *PARALLEL_PLAN,
    "SET parallel_leader_participation = off",  # every row is scored by a worker
]
SERIAL = "SET max_parallel_workers_per_gather = 0"

QUERIES = {
    "tf.Example": "SELECT id, pgml.classify('mlp', example) FROM inputs",
    "float4[]": "SELECT id, pgml.predict_class('mnist', pixels) FROM inputs",
    "predict": "SELECT id, pgml.predict('mlp', example) FROM inputs",
    "batch": "SELECT id, pgml.classify_batch('mlp', ARRAY[example, example]) FROM inputs",
}


def _gather(plan: dict) -> dict | None:
    if plan["Node Type"] in ("Gather", "Gather Merge"):
        return plan
    for child in plan.get("Plans", []):
        found = _gather(child)
        if found:
            return found
    return None


def force_parallel(conn, *more: str) -> None:
    """Make this session's plans parallel (and apply MORE settings)."""
    for setting in [*PARALLEL, *more]:
        conn.exec_driver_sql(setting)


def run_parallel(conn, query: str) -> tuple[dict, dict]:
    """(the Gather node, its scan) of QUERY's EXPLAIN ANALYZE in a forced parallel plan."""
    force_parallel(conn)
    explained = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) {query}")
    raw = explained.scalar()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    gather = _gather(plan)
    assert gather is not None, f"no parallel plan for {query}"
    return gather, gather["Plans"][0]


@pytest.mark.parametrize("form", list(QUERIES))
def test_workers_score_and_agree_with_a_serial_plan(db_url, form):
    query = QUERIES[form]
    with new_engine(db_url).connect() as conn:
        gather, scan = run_parallel(conn, query)
        assert gather["Workers Launched"] >= 1
        assert any("pgml_internal." in column for column in scan["Output"]), scan["Output"]
        assert sum(w["Actual Rows"] for w in scan.get("Workers", [])) == 1797
        parallel = dict(conn.exec_driver_sql(query).all())
        conn.exec_driver_sql(SERIAL)
        serial = dict(conn.exec_driver_sql(query).all())
    assert len(parallel) == 1797 and parallel == serial


def test_workers_write_missing_model_files(db_url, engine):
    """A server that never had the files (a standby, a restored backup, a wiped cache):
    the workers fetch and write them, racing each other safely."""
    data_dir = scalar(engine, "SHOW data_directory")
    shutil.rmtree(f"{data_dir}/pgsql_tmp_pgml_ext", ignore_errors=True)
    query = QUERIES["tf.Example"]
    with new_engine(db_url).connect() as conn:
        gather, _ = run_parallel(conn, query)
        assert gather["Workers Launched"] >= 1
        ref = model_files(engine, "mlp")
        assert ref.startswith(f"{data_dir}/pgsql_tmp_pgml_ext/")
        files = conn.exec_driver_sql(f"SELECT pg_ls_dir('{ref}') ORDER BY 1").scalars().all()
        assert {"model.json", "savedmodel.tar", "litert-1.tflite"} <= set(files)
        leftovers = conn.exec_driver_sql(
            f"SELECT count(*) FROM pg_ls_dir('{data_dir}/pgsql_tmp_pgml_ext/' || "
            "(SELECT oid FROM pg_database WHERE datname = current_database())) f "
            "WHERE f LIKE '%.tmp%'"
        ).scalar()
        assert leftovers == 0


def test_bad_input_in_a_worker_is_a_clean_error(db_url, engine):
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS parallel_bad")
        conn.exec_driver_sql(
            "CREATE TABLE parallel_bad AS SELECT id, example FROM inputs "
            "UNION ALL SELECT 100000, '\\x0a0b0c'::bytea"
        )
    with new_engine(db_url).connect() as conn:
        force_parallel(conn)
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql("SELECT pgml.classify('mlp', example) FROM parallel_bad").all()
        fields = info.value.orig.args[0]
        assert fields["C"] == "22P03" and fields["M"].startswith("pgml: ")
        conn.rollback()
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1  # (and the crash witness)


def test_unknown_model_in_a_parallel_plan(db_url):
    with new_engine(db_url).connect() as conn:
        force_parallel(conn)
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql("SELECT pgml.classify('nope', example) FROM inputs").all()
        assert info.value.orig.args[0]["C"] == "42704"
        assert "not registered" in info.value.orig.args[0]["M"]


def test_statement_timeout_stops_batches_in_workers(db_url, engine):
    """Workers may not query, so between chunks PL/Python reads PostgreSQL's interrupt
    flags itself: a timeout ends a parallel batch query instead of letting it run on.
    (The C batch path, which the PL/Python one backs, checks with CHECK_FOR_INTERRUPTS:
    tests/test_native.py.)"""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS parallel_batches")
        conn.exec_driver_sql(
            "CREATE TABLE parallel_batches AS SELECT g, "
            "(SELECT array_agg(example) FROM inputs) AS examples FROM generate_series(1, 24) g"
        )
    query = "SELECT sum(cardinality(pgml.classify_batch('mlp', examples))) FROM parallel_batches"
    with new_engine(db_url).connect() as conn:
        force_parallel(conn, "SET pgml.batch_chunk_rows = 1", "SET pgml.native_scoring = off")
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN VERBOSE {query}").scalars())
        assert "Gather" in plan and "pgml_internal.classify_batch" in plan
        conn.exec_driver_sql("SET statement_timeout = '400ms'")
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql(query).all()
        assert info.value.orig.args[0]["C"] == "57014"
        conn.rollback()
        conn.exec_driver_sql("SET statement_timeout = 0")
        assert conn.exec_driver_sql(query).scalar() == 24 * 1797


def test_damaged_model_files_are_written_again(db_url, engine):
    """The server's copy of a model damaged on disk: one clean error that says to run
    the statement again, and the next statement writes the files afresh. (PL/Python
    reads model.json; the C path reads the plan stored in the table instead.)"""
    ref = model_files(engine, "mnist")
    with open(f"{ref}/model.json", "w") as f:
        f.write("{not json")
    with new_engine(db_url).connect() as conn:  # a new backend: nothing loaded yet
        conn.exec_driver_sql("SET pgml.native_scoring = off")
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql("SELECT pgml.predict_class('mnist', pixels) FROM inputs").all()
        fields = info.value.orig.args[0]
        assert fields["C"] == "58P01" and "again" in fields["H"]
        conn.rollback()
        assert (
            conn.exec_driver_sql(
                "SELECT count(pgml.predict_class('mnist', pixels)) FROM inputs"
            ).scalar()
            == 1797
        )
