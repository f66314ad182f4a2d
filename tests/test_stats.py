"""pgml.stats: per model version, what every backend and parallel worker scored.

The test cluster preloads pgml_ext (shared_preload_libraries), as the embedded cluster
does, so the counters live in shared memory. A model of its own ('stats_mlp') keeps
other tests' scoring out of the counts; one more cluster, started without the preload,
shows the per-backend fallback and its WARNING.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import PARALLEL_PLAN, committed, ddl, new_engine, scalar, sql_error
from pgml_ext import client
from pgml_ext.cluster import HOME, Cluster

pytestmark = pytest.mark.usefixtures("inputs")

MODEL = "stats_mlp"
N = 1797  # rows of the inputs table


@pytest.fixture(scope="module")
def stats_model(engine: sa.Engine, mlp_dir: Path) -> str:
    client.register_model(engine, MODEL, mlp_dir)
    return MODEL


@pytest.fixture
def fresh(engine: sa.Engine, stats_model: str) -> str:
    committed(engine, "SELECT pgml.stats_reset(:m)", m=stats_model)
    return stats_model


def stats(engine: sa.Engine, model: str = MODEL) -> dict | None:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT * FROM pgml.stats WHERE model = :m"), {"m": model})
        rows = found.mappings().all()
    assert len(rows) <= 1, rows  # one entry per version
    return dict(rows[0]) if rows else None


def count_scored(url: str, query: str, *settings: str) -> int:
    """QUERY's count(*) in a new backend, with SETTINGS."""
    engine = new_engine(url)
    try:
        with engine.connect() as conn:
            for setting in settings:
                conn.exec_driver_sql(setting)
            return conn.exec_driver_sql(query).scalar()
    finally:
        engine.dispose()


def test_counts_every_backend_and_parallel_worker(engine, db_url, fresh):
    query = f"SELECT count(pgml.classify('{fresh}', example)) FROM inputs"
    serial = "SET max_parallel_workers_per_gather = 0"
    assert count_scored(db_url, query, serial) == N
    assert count_scored(db_url, query, serial) == N
    # every row scored by a parallel worker, none by the leader
    workers = [*PARALLEL_PLAN, "SET parallel_leader_participation = off"]
    assert count_scored(db_url, query, *workers) == N
    s = stats(engine)
    assert s["rows"] == s["c_rows"] == s["calls"] == 3 * N
    assert s["fallback_rows"] == 0 and s["errors"] == 0
    assert s["version"] == 1
    # two backends and at least one worker made the model ready in C
    assert s["loads"] >= 3 and s["load_ms"] > 0
    assert s["total_ms"] > 0 and s["mean_ms"] == pytest.approx(s["total_ms"] / s["calls"])
    assert s["last_used"] is not None


def test_counts_pl_python_rows_batches_and_errors(engine, db_url, fresh):
    # PL/Python answers every row with the C path off
    off = "SET pgml.native_scoring = off"
    assert (
        count_scored(
            db_url,
            f"SELECT count(pgml.predict('{fresh}', example)) "
            "FROM (SELECT example FROM inputs LIMIT 10) t",
            off,
        )
        == 10
    )
    s = stats(engine)
    assert (s["fallback_rows"], s["c_rows"], s["calls"], s["errors"]) == (10, 0, 10, 0)
    assert s["loads"] == 1  # PL/Python loaded it once

    # a batch is one call of many rows
    batch = f"SELECT pgml.classify_batch('{fresh}', array_agg(example)) FROM inputs WHERE id < 5"
    assert len(scalar(engine, batch)) == 5
    s = stats(engine)
    assert (s["calls"], s["c_rows"]) == (11, 5)

    # a row the model cannot read is an error of this version, counted though rolled back
    sqlstate, _, _ = sql_error(engine, f"SELECT pgml.classify('{fresh}', '\\x0a02'::bytea)")
    assert sqlstate == "22P03"  # not a tf.Example
    s = stats(engine)
    assert s["errors"] == 1 and s["rows"] == 15


def test_score_into_and_reset(engine, fresh):
    written = committed(
        engine,
        f"SELECT pgml.score_into('{fresh}', 'SELECT id, example FROM inputs WHERE id < 40', "
        "'stats_predictions', 'id')",
    )
    assert written == 40
    s = stats(engine)
    assert (s["calls"], s["rows"]) == (1, 40)
    # by version, then for the whole database
    assert committed(engine, "SELECT pgml.stats_reset(:m)", m=f"{fresh}@2") == 0
    assert committed(engine, "SELECT pgml.stats_reset(:m)", m=f"{fresh}@1") == 1
    assert stats(engine) is None
    scalar(engine, f"SELECT pgml.classify('{fresh}', example) FROM inputs LIMIT 1")
    assert committed(engine, "SELECT pgml.stats_reset()") >= 1
    assert stats(engine) is None
    ddl(engine, "DROP TABLE stats_predictions")


def test_anyone_reads_admins_reset(engine, db_url, fresh):
    ddl(engine, "DROP ROLE IF EXISTS stats_watcher; CREATE ROLE stats_watcher LOGIN")
    try:
        watcher = new_engine(db_url.replace("//postgres@", "//stats_watcher@"))
        assert scalar(watcher, "SELECT count(*) FROM pgml.stats") >= 0
        assert scalar(watcher, "SELECT pgml.stats_dropped()") == 0
        sqlstate, message, _ = sql_error(watcher, "SELECT pgml.stats_reset()")
        assert sqlstate == "42501", message
        watcher.dispose()
    finally:
        ddl(engine, "DROP ROLE stats_watcher")


def test_track_stats_off_counts_nothing(engine, db_url, fresh):
    query = f"SELECT count(pgml.classify('{fresh}', example)) FROM inputs"
    assert count_scored(db_url, query, "SET pgml.track_stats = off") == N
    assert stats(engine) is None
    assert count_scored(db_url, query) == N
    assert stats(engine)["rows"] == N


def test_settings_are_known_in_a_fresh_session(db_url):
    engine = new_engine(db_url)
    with engine.connect() as conn:
        # the first statement of a session: the library was loaded at server start
        assert conn.exec_driver_sql("SHOW pgml.stats_max").scalar() == "1000"
        row = conn.exec_driver_sql(
            "SELECT context, min_val, max_val FROM pg_settings WHERE name = 'pgml.stats_max'"
        ).one()
        assert tuple(row) == ("postmaster", "16", "100000")
    engine.dispose()


def test_cli_shows_the_table(db_url, fresh):
    count_scored(db_url, f"SELECT count(pgml.classify('{fresh}', example)) FROM inputs")
    out = subprocess.run(
        [sys.executable, "-m", "pgml_ext.cli", "stats", "--url", db_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith(fresh))
    assert str(N) in line.replace(",", "")
    assert "calls" in out.splitlines()[0]


def test_without_preload_it_counts_this_backend_and_says_so(mlp_dir):
    cluster = Cluster(HOME / "stats-no-preload", 54338, preload="")
    cluster.destroy()
    try:
        url = cluster.start()
        client.install(url)
        engine = sa.create_engine(url)
        client.register_model(engine, "m", mlp_dir)
        with engine.connect() as conn:
            scored = conn.exec_driver_sql(
                "SELECT pgml.predict_class('m', array_fill(0.5::float4, ARRAY[784])) "
                "FROM generate_series(1, 3)"
            ).all()
            assert len(scored) == 3
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute("SELECT rows FROM pgml.stats WHERE model = 'm'")
            assert [list(r) for r in cursor.fetchall()] == [[3]]
            notices = [n.get(b"M", b"").decode() for n in conn.connection.driver_connection.notices]
            assert any("this backend's scoring only" in n for n in notices), notices
            assert conn.exec_driver_sql("SELECT pgml.stats_dropped()").scalar() is None
        engine.dispose()
        other = new_engine(url)
        assert scalar(other, "SELECT count(*) FROM pgml.stats") == 0  # another backend
        other.dispose()
    finally:
        cluster.destroy()


def test_stats_max_bounds_the_shared_table(mlp_tflite):
    """The shared table grew past pgml.stats_max into the server's spare shared memory
    (HASH_ENTER_NULL caps nothing): 13,129 entries with stats_max = 1000, then 'out of
    shared memory' for everyone. It holds stats_max versions; the rest are dropped and
    counted."""
    cluster = Cluster(HOME / "stats-max", 54337)
    cluster.destroy()
    try:
        cluster.init()
        with open(cluster.datadir / "postgresql.conf", "a") as conf:
            conf.write("pgml.stats_max = 16\n")
        url = cluster.start()
        client.install(url)
        engine = sa.create_engine(url)
        for i in range(20):
            client.register_model(engine, f"m{i}", mlp_tflite)
        with engine.connect() as conn:
            for i in range(20):
                conn.exec_driver_sql(
                    f"SELECT pgml.predict_class('m{i}', array_fill(0.5::float4, ARRAY[784]))"
                )
            conn.commit()
            assert conn.exec_driver_sql("SHOW pgml.stats_max").scalar() == "16"
            assert conn.exec_driver_sql("SELECT count(*) FROM pgml.stats").scalar() == 16
            assert conn.exec_driver_sql("SELECT pgml.stats_dropped()").scalar() >= 4
            conn.exec_driver_sql("SELECT pgml.stats_reset()")
            conn.exec_driver_sql(
                "SELECT pgml.predict_class('m19', array_fill(0.5::float4, ARRAY[784]))"
            )
            conn.commit()
            assert conn.exec_driver_sql("SELECT count(*) FROM pgml.stats").scalar() == 1
            conn.exec_driver_sql("CREATE TEMP TABLE still_room (i int)")
        engine.dispose()
    finally:
        cluster.destroy()
