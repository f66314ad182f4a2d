"""The same scoring on one node and on a Citus cluster (a coordinator and two workers on
this machine's loopback), side by side in one run.

    /opt/pgml_ext/venv/bin/python benchmarks/citus.py [--rows N] [--repeats N]

The reference MLP scores N tf.Examples: `SELECT count(pgml.classify(...))` (the planner's
plan on one node, with its workers; the shards' queries on the cluster) and `score_into`
(coordinator-side on one node, pushed to the workers on the cluster). Also: how the rows
split between the workers (pgml.stats on each), and the first statement of a new
coordinator session, whose worker connections are new backends that load the model in
C. Medians. All nodes share this machine's cores, so the cluster cannot be faster here:
the table shows what distributing costs, not what more machines would give.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.citus import CitusCluster
from pgml_ext.demo import embedded_database, trained_mlp

COUNT = "SELECT count(pgml.classify('digits', example)) FROM inputs"
INTO = "SELECT pgml.score_into('digits', 'inputs', 'predictions', 'id', input => 'example')"


def timed(
    engine: sa.Engine, sql: str, repeats: int, before: str | None = None, new: bool = True
) -> float:
    """Median ms of SQL, each run in a new session (NEW) or all in one session after a
    first, untimed run; BEFORE (untimed) starts each session."""
    times = []
    conn = None
    for _ in range(repeats):
        if conn is None or new:
            if conn is not None:
                conn.close()
            conn = engine.connect()
            if before:
                conn.exec_driver_sql(before)
            if not new:
                conn.exec_driver_sql(sql).all()
                conn.commit()
        started = time.perf_counter()
        conn.exec_driver_sql(sql).all()
        times.append((time.perf_counter() - started) * 1000)
        conn.commit()
    conn.close()
    return statistics.median(times)


def prepared(engine: sa.Engine, rows: int, distributed: bool) -> None:
    client.register_model(engine, "digits", trained_mlp())
    reference.load_table(engine, "inputs", rows)
    if distributed:
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT create_distributed_table('inputs', 'id')")
    with engine.connect() as conn:  # the model's files written, the table cached
        conn.exec_driver_sql(COUNT).all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    _, one = embedded_database("pgml_citus_bench")
    prepared(one, args.rows, distributed=False)

    cluster = CitusCluster.default()
    cluster.destroy()
    citus = sa.create_engine(cluster.start("pgml_citus_bench"), poolclass=sa.pool.NullPool)
    client.install(citus)
    with citus.begin() as conn:
        conn.exec_driver_sql("SELECT pgml.distribute()")
    prepared(citus, args.rows, distributed=True)

    with citus.begin() as conn:
        conn.exec_driver_sql("SELECT run_command_on_workers('SELECT pgml.stats_reset()')")
    drop = "DROP TABLE IF EXISTS predictions"
    results = {
        "count(pgml.classify(...)), one session": (
            timed(one, COUNT, args.repeats, new=False),
            timed(citus, COUNT, args.repeats, new=False),
        ),
        "count(pgml.classify(...)), a new session each": (
            timed(one, COUNT, args.repeats),
            timed(citus, COUNT, args.repeats),
        ),
        "score_into (on the coordinator / pushed to the workers)": (
            timed(one, INTO, args.repeats, drop),
            timed(citus, INTO, args.repeats, drop),
        ),
    }
    # a new session's first statement: on the cluster, its worker connections are new
    # backends (Citus's default pool: up to 16 per worker), each loading the model in C
    settings = {
        "default executor": None,
        "citus.max_adaptive_executor_pool_size = 2": (
            "SET citus.max_adaptive_executor_pool_size = 2"
        ),
    }
    first = {name: timed(citus, COUNT, args.repeats, setting) for name, setting in settings.items()}
    per_worker = (
        citus.connect()
        .execute(
            sa.text(
                "SELECT nodeport, result FROM run_command_on_workers("
                "$$SELECT sum(rows) FROM pgml.stats WHERE model = 'digits'$$) ORDER BY nodeport"
            )
        )
        .all()
    )
    print(f"MLP, {args.rows:,} tf.Examples; medians of {args.repeats}, new sessions; 2 cores")
    print("| query | one node (ms) | Citus, 2 workers (ms) | cluster ÷ one node (time) |")
    print("|---|---:|---:|---:|")
    for name, (single, cluster_ms) in results.items():
        print(f"| {name} | {single:.0f} | {cluster_ms:.0f} | {cluster_ms / single:.2f} |")
    for name, ms in first.items():
        print(f"| count, a new session each, {name} | | {ms:.0f} | |")
    print(
        "rows scored per worker in this run (pgml.stats): "
        + ", ".join(f"{p}: {r}" for p, r in per_worker)
    )
    one.dispose()
    citus.dispose()


if __name__ == "__main__":
    main()
