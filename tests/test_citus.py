"""The Citus tier: pgml_ext on a real Citus cluster (a coordinator and two workers on
loopback, each preloading Citus and pgml_ext), built from source by scripts/citus.sh.

Scoring a distributed table must run on the workers next to their shards, answer what
one node answers, and see a new version, pin, rollback or deletion made on the
coordinator from the next statement on every worker. Without Citus on this machine the
module is skipped, and the skip says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import LABELS, PARALLEL_PLAN, committed, ddl, new_engine, rows, scalar, sql_error
from pgml_ext import client, reference
from pgml_ext.citus import CitusCluster, citus_installed
from pgml_ext.cluster import Cluster

pytestmark = [
    pytest.mark.skipif(
        not citus_installed(),
        reason="Citus is not installed here, so the Citus tier did not run (scripts/citus.sh "
        "builds it from ../shared/vendor/citus)",
    ),
    pytest.mark.usefixtures("models", "inputs"),
]

N = reference.N_DIGITS
DATABASE = "pgml_citus_test"
PORT = 54355  # the coordinator; workers on 54356 and 54357


@pytest.fixture(scope="module")
def citus(mlp_dir: Path):
    cluster = CitusCluster.default(PORT)
    cluster.destroy()
    url = cluster.start(DATABASE)
    engine = sa.create_engine(url)
    client.install(engine)
    assert "reference tables on 2 workers" in committed(engine, "SELECT pgml.distribute()")
    client.register_model(engine, "digits", mlp_dir)
    reference.load_table(engine, "inputs", N)
    committed(engine, "SELECT create_distributed_table('inputs', 'id')")
    yield cluster, engine
    engine.dispose()
    cluster.destroy()


def on_workers(engine: sa.Engine, sql: str) -> list[str]:
    """SQL's result on each worker (run_command_on_workers), in port order."""
    found = rows(
        engine,
        "SELECT result FROM run_command_on_workers(:command) ORDER BY nodeport",
        command=sql,
    )
    return [r[0] for r in found]


def test_a_distributed_table_is_scored_on_its_workers(citus, engine):
    _, distributed = citus
    query = "SELECT id, pgml.predict_class('{m}', pixels) FROM inputs ORDER BY id"
    one_node = rows(engine, query.format(m="mlp"))
    assert rows(distributed, query.format(m="digits")) == one_node
    # the scoring call is in the shard queries, over blocks of rows on each worker
    with distributed.connect() as conn:
        plan = "\n".join(
            r[0]
            for r in conn.exec_driver_sql(
                "EXPLAIN (VERBOSE, COSTS OFF) SELECT pgml.predict_class('digits', pixels) "
                "FROM inputs"
            )
        )
    assert "Custom Scan (Citus Adaptive)" in plan
    assert "predict_class_tensor_native" in plan.split("->  Task")[1]
    assert "PgmlBlockScan" in plan
    # every row counted once, all on the workers, none on the coordinator
    per_worker = [
        int(r or 0)
        for r in on_workers(distributed, "SELECT sum(rows) FROM pgml.stats WHERE model = 'digits'")
    ]
    assert sum(per_worker) == N and all(n > 0 for n in per_worker), per_worker
    assert scalar(distributed, "SELECT count(*) FROM pgml.stats WHERE model = 'digits'") == 0
    accuracy = scalar(
        distributed, "SELECT avg((pgml.classify('digits', example)::int = label)::int) FROM inputs"
    )
    assert accuracy > 0.95


def test_a_distributed_tables_rows_are_scored_by_column_name_on_its_workers(citus, engine):
    """pgml.predict_class('m', t) and its jsonb form over a distributed table: Citus
    sends the call to the workers as written, where the planner makes it the C row
    encoder feeding the C scorer (src/row_support.c), over blocks of rows."""
    _, distributed = citus
    one_node = rows(engine, "SELECT id, pgml.predict_class('mlp', pixels) FROM inputs ORDER BY id")
    for call in ("i", "jsonb_build_object('pixels', i.pixels)"):
        query = f"SELECT i.id, pgml.predict_class('digits', {call}) FROM inputs i ORDER BY i.id"
        assert rows(distributed, query) == one_node, call
    with distributed.connect() as conn:
        plan = "\n".join(
            r[0]
            for r in conn.exec_driver_sql(
                "EXPLAIN (VERBOSE, COSTS OFF) SELECT pgml.predict_class('digits', i) FROM inputs i"
            )
        )
    task = plan.split("->  Task")[1]
    assert "row_example" in task and "PgmlBlockScan" in task, plan


def test_versions_pins_and_deletes_reach_every_worker_on_the_next_statement(citus, mlp_dir):
    _, distributed = citus
    labels = "SELECT DISTINCT pgml.classify('digits', pixels) ~ '^[0-9]$' FROM inputs"
    assert [r[0] for r in rows(distributed, labels)] == [True]
    assert client.register_model(distributed, "digits", mlp_dir, labels=LABELS) == 2
    assert [r[0] for r in rows(distributed, labels)] == [False]  # v2's labels, everywhere
    client.pin_model(distributed, "digits", 1)
    assert [r[0] for r in rows(distributed, labels)] == [True]
    client.pin_model(distributed, "digits", None)
    assert [r[0] for r in rows(distributed, labels)] == [False]
    assert client.rollback_model(distributed, "digits") == 1
    assert [r[0] for r in rows(distributed, labels)] == [True]
    assert client.delete_model(distributed, "digits", 2) == 1
    versions = rows(distributed, "SELECT version, current FROM pgml.models WHERE name = 'digits'")
    assert [tuple(v) for v in versions] == [(1, True)]
    # what the workers hold: their copy of the model tables
    assert on_workers(
        distributed, "SELECT string_agg(version::text, ',') FROM pgml.model_versions"
    ) == ["1", "1"]


def test_a_coordinator_local_table_still_gets_parallel_plans(citus, engine):
    _, distributed = citus
    ddl(
        distributed,
        "DROP TABLE IF EXISTS local_inputs; CREATE TABLE local_inputs AS SELECT * FROM inputs",
    )
    with distributed.connect() as conn:
        for setting in [*PARALLEL_PLAN, "SET parallel_leader_participation = off"]:
            conn.exec_driver_sql(setting)
        raw = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) "
            "SELECT count(pgml.predict_class('digits', pixels)) FROM local_inputs"
        ).scalar()
        plan = json.dumps(json.loads(raw) if isinstance(raw, str) else raw)
        assert '"Workers Launched": 2' in plan
        scored = conn.exec_driver_sql(
            "SELECT id, pgml.predict_class('digits', pixels) FROM local_inputs ORDER BY id"
        ).all()
    assert scored == rows(
        engine, "SELECT id, pgml.predict_class('mlp', pixels) FROM inputs ORDER BY id"
    )


def test_distribute_is_for_citus_and_can_run_again(citus, engine):
    _, distributed = citus
    assert "distributed already" in committed(distributed, "SELECT pgml.distribute()")
    sqlstate, message, hint = sql_error(engine, "SELECT pgml.distribute()")  # no Citus here
    assert sqlstate == "0A000" and "no Citus" in message and "CREATE EXTENSION citus" in hint


def test_score_into_a_distributed_table_runs_on_its_workers(citus, engine):
    _, distributed = citus
    committed(distributed, "SELECT pgml.stats_reset('digits')")
    with distributed.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS citus_predictions")
        written = conn.exec_driver_sql(
            "SELECT pgml.score_into('digits', 'inputs', 'citus_predictions', 'id', "
            "input => 'pixels')"
        ).scalar()
    assert written == N
    # the coordinator scored the first row only, to make the predictions table
    here = "SELECT rows FROM pgml.stats WHERE model = 'digits'"
    assert scalar(distributed, here) == 1
    # distributed with the source, by the key: each worker wrote its own shards
    colocated = scalar(
        distributed,
        "SELECT count(DISTINCT colocationid) FROM pg_dist_partition "
        "WHERE logicalrelid IN ('inputs'::regclass, 'citus_predictions'::regclass)",
    )
    assert colocated == 1
    # each row scored on its worker (score_into's answers come from PL/Python there)
    per_worker = [
        int(n)
        for n in on_workers(
            distributed,
            "SELECT coalesce(sum(fallback_rows), 0) FROM pgml.stats WHERE model = 'digits'",
        )
    ]
    assert sum(per_worker) == N and all(n > 0 for n in per_worker), per_worker
    # what score_into writes on one node, row for row (its json scores too)
    columns = "key, label, class_index, scores::text, model, version"
    got = rows(distributed, f"SELECT {columns} FROM citus_predictions ORDER BY key")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS one_node_predictions")
        conn.exec_driver_sql(
            "SELECT pgml.score_into('mlp', 'inputs', 'one_node_predictions', 'id', "
            "input => 'pixels')"
        )
    one_node = rows(engine, f"SELECT {columns} FROM one_node_predictions ORDER BY key")
    assert [r[:4] for r in got] == [r[:4] for r in one_node]
    assert {tuple(r[4:]) for r in got} == {("digits", 1)}
    accuracy = scalar(
        distributed,
        "SELECT avg((p.class_index = i.label)::int) FROM citus_predictions p "
        "JOIN inputs i ON i.id = p.key",
    )
    assert accuracy > 0.95
    # a re-run replaces, on the workers too
    with distributed.begin() as conn:
        again = conn.exec_driver_sql(
            "SELECT pgml.score_into('digits', 'inputs', 'citus_predictions', 'id', "
            "input => 'pixels')"
        ).scalar()
    assert again == N == scalar(distributed, "SELECT count(*) FROM citus_predictions")


def test_a_worker_added_later_scores_its_shards_at_once(citus, engine):
    """citus_add_node after pgml.distribute(): Citus brings the extension and the model
    tables to the new worker, and the extension's script sets the model readers up for
    Citus there (without which a shard query there failed: "cannot execute a distributed
    query from a query on a shard"), so the new worker scores its shards at once, with
    one node's answers."""
    cluster, distributed = citus
    extra = Cluster(cluster.coordinator.datadir.with_name(f"citus-{PORT + 3}"), PORT + 3,
                    preload="citus,pgml_ext")  # fmt: skip
    extra.destroy()
    extra.start()
    try:
        admin = sa.create_engine(extra.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{DATABASE}"')
        admin.dispose()
        node = new_engine(extra.url(DATABASE))
        ddl(node, "CREATE EXTENSION citus")
        node.dispose()
        committed(distributed, f"SELECT citus_add_node('{extra.host}', {extra.port})")
        ddl(
            distributed,
            "DROP TABLE IF EXISTS later_inputs; "
            "CREATE TABLE later_inputs AS SELECT id, pixels FROM inputs",
        )
        committed(
            distributed,
            "SELECT create_distributed_table('later_inputs', 'id', colocate_with => 'none')",
        )  # its own shards, on all three workers
        query = "SELECT id, pgml.predict_class('digits', pixels) FROM {} ORDER BY id"
        one_node = rows(distributed, query.format("inputs"))
        assert rows(distributed, query.format("later_inputs")) == one_node
        # and pgml.distribute() may run again, all nodes answering as before
        assert "already" in committed(distributed, "SELECT pgml.distribute()")
        assert rows(distributed, query.format("later_inputs")) == one_node
        per_worker = on_workers(
            distributed, "SELECT count(*) FROM pgml.stats WHERE model = 'digits' AND rows > 0"
        )
        assert len(per_worker) == 3 and all(int(n) > 0 for n in per_worker), per_worker
    finally:
        ddl(distributed, "DROP TABLE IF EXISTS later_inputs")
        committed(
            distributed,
            f"SELECT citus_remove_node('{extra.host}', {extra.port}) FROM pg_dist_node "
            f"WHERE nodeport = {extra.port}",
        )
        extra.destroy()
