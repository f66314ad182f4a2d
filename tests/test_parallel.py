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

from conftest import PARALLEL_PLAN, model_files, new_engine, scalar
from pgml_ext import client

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


def _node(plan: dict, matches) -> dict | None:
    """The first node of PLAN (EXPLAIN's JSON), depth first, that MATCHES."""
    if matches(plan):
        return plan
    for child in plan.get("Plans", []):
        found = _node(child, matches)
        if found:
            return found
    return None


def _gather(plan: dict) -> dict | None:
    return _node(plan, lambda n: n["Node Type"] in ("Gather", "Gather Merge"))


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
    """The server's copy of a model damaged on disk: found before the backend uses it
    (src/file_check.c), written again from the database with a WARNING, and the
    statement scores as if nothing happened, in PL/Python and in C."""
    ref = model_files(engine, "mnist")
    with open(f"{ref}/model.json", "w") as f:
        f.write("{not json")
    with new_engine(db_url).connect() as conn:  # a new backend: nothing loaded yet
        conn.exec_driver_sql("SET pgml.native_scoring = off")
        sql = "SELECT count(pgml.predict_class('mnist', pixels)) FROM inputs"
        assert conn.exec_driver_sql(sql).scalar() == 1797
        notices = [n.get(b"M", b"").decode() for n in conn.connection.driver_connection.notices]
        assert any("model.json is damaged" in n for n in notices), notices
        conn.exec_driver_sql("RESET pgml.native_scoring")
        assert conn.exec_driver_sql(sql).scalar() == 1797


# -- The planner's own choice (src/scoring_cost.c) ---------------------------------------


def _explain(conn, query: str, options: str = "") -> dict:
    raw = conn.exec_driver_sql(f"EXPLAIN ({options} FORMAT JSON) {query}").scalar()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]


def _block_scan(plan: dict) -> dict | None:
    return _node(plan, lambda n: n.get("Custom Plan Provider") == "PgmlBlockScan")


def test_registration_measures_each_litert_signatures_time_per_row(engine):
    runtimes = scalar(engine, "SELECT runtimes FROM pgml.model_versions WHERE name = 'mlp'")
    measured = [note["row_us"] for note in runtimes.values()]
    assert runtimes and all(note["runtime"] == "litert" for note in runtimes.values())
    assert all(0 < us < 10_000 for us in measured), runtimes
    assert scalar(engine, "SELECT pgml_internal.row_cost('mlp')") == max(measured)
    assert scalar(engine, "SELECT pgml_internal.row_cost('mlp@1')") == max(measured)
    # no measurement: the planner keeps the functions' COST; odd names never raise
    for name in ("nope", "mlp@x", "", "@", "mlp@99999999999"):
        assert scalar(engine, "SELECT pgml_internal.row_cost(:m)", m=name) in (None, max(measured))
    assert scalar(engine, "SELECT pgml_internal.row_cost('nope')") is None


def test_a_scoring_calls_cost_is_its_models_time_per_row(db_url, engine):
    """The planner's cost per row of a call is (LiteRT's time + C's 1.5 us) / 5 us, and
    the functions' COST 100 (0.25) when PL/Python would score every row."""
    row_us = scalar(engine, "SELECT pgml_internal.row_cost('mlp')")
    with new_engine(db_url).connect() as conn:
        conn.exec_driver_sql(SERIAL)
        base = _explain(conn, "SELECT example FROM inputs")["Plan"]
        scored = _explain(conn, "SELECT pgml.classify('mlp', example) FROM inputs")["Plan"]
        per_row = (scored["Total Cost"] - base["Total Cost"]) / base["Plan Rows"]
        assert per_row == pytest.approx((row_us + 1.5) / 5, rel=0.01)
        conn.exec_driver_sql("SET pgml.native_scoring = off")
        scored = _explain(conn, "SELECT pgml.classify('mlp', example) FROM inputs")["Plan"]
        per_row = (scored["Total Cost"] - base["Total Cost"]) / base["Plan Rows"]
        assert per_row == pytest.approx(100 * 0.0025, rel=0.01)


def test_the_planner_gives_a_costly_model_workers_by_its_work(db_url, engine, mlp_dir):
    """A small table (1,797 rows, below min_parallel_table_scan_size) scored with a model
    whose rows cost 500 us (~1 s of work) gets a parallel plan by itself, with the
    answers of the serial one; the same table with a cheap model, a table whose
    parallel_workers the user set to 0, and rows PL/Python would score stay serial."""
    client.register_model(engine, "mlp_costly", mlp_dir)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE pgml.model_versions SET runtimes = (SELECT jsonb_object_agg(k, v || "
            "'{\"row_us\": 500}') FROM jsonb_each(runtimes) e(k, v)) WHERE name = 'mlp_costly'"
        )
        conn.exec_driver_sql("DROP TABLE IF EXISTS costly_inputs")
        conn.exec_driver_sql("CREATE TABLE costly_inputs AS SELECT id, example FROM inputs")
        conn.exec_driver_sql("ANALYZE costly_inputs")
    costly = "SELECT id, pgml.classify('mlp_costly', example) FROM costly_inputs"
    cheap = "SELECT id, pgml.classify('mlp', example) FROM costly_inputs"
    with new_engine(db_url).connect() as conn:
        conn.exec_driver_sql("SET max_parallel_workers_per_gather = 2")
        gather = _gather(_explain(conn, costly)["Plan"])
        assert gather is not None and gather["Workers Planned"] == 2
        assert _gather(_explain(conn, cheap)["Plan"]) is None
        parallel = dict(conn.exec_driver_sql(costly).all())
        conn.exec_driver_sql("SET pgml.native_scoring = off")
        assert _gather(_explain(conn, costly)["Plan"]) is None
        conn.exec_driver_sql("RESET pgml.native_scoring")
        conn.exec_driver_sql("ALTER TABLE costly_inputs SET (parallel_workers = 0)")
        assert _gather(_explain(conn, costly)["Plan"]) is None
        # a slow model's blocks take ~5 ms (10 rows of 500 us), a fast one's 64 rows
        assert _block_scan(_explain(conn, costly)["Plan"])["Block Rows"] == 10
        assert _block_scan(_explain(conn, cheap)["Plan"])["Block Rows"] == 64
        # its cost (~1 s of LiteRT) is not JIT's to speed up: no LLVM in this backend
        explained = _explain(conn, costly, "ANALYZE,")
        assert explained["Plan"]["Total Cost"] > float(
            conn.exec_driver_sql("SHOW jit_above_cost").scalar()
        )
        assert "JIT" not in explained
        conn.exec_driver_sql("SET jit_above_cost = 0")  # nor JIT at all (jit_guard.c)
        assert "JIT" not in _explain(conn, costly, "ANALYZE,")
        assert "JIT" in _explain(conn, "SELECT count(*) FROM costly_inputs", "ANALYZE,")
        conn.exec_driver_sql("RESET jit_above_cost")
        serial = dict(conn.exec_driver_sql(costly).all())
        conn.commit()
    assert len(parallel) == 1797 and parallel == serial
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE costly_inputs")
        conn.exec_driver_sql("SELECT pgml.delete_model('mlp_costly')")
