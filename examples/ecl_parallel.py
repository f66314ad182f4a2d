"""The HPCC ECL flow (seed 002): the model is loaded once per process and kept there,
records are scored in parallel, and the result reports accuracy.

In PostgreSQL the processes are the backend and its parallel workers: one ordinary
query, `SELECT ... pgml.classify('digits', pixels) ... FROM digits`, runs in a parallel
plan (like ECL's PARALLEL(n)); each process resolves the model once, loads it once,
and scores its share of the rows. The table asks for N workers and the session allows
them; the planner does the rest.

Run: python examples/ecl_parallel.py URL [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time

import sqlalchemy as sa

QUERY = (
    "SELECT count(*) AS rows, "
    "count(*) FILTER (WHERE pgml.classify('digits', pixels) = label::text) AS correct "
    "FROM digits"
)


def _find(plan: dict, node_type: str) -> dict:
    while plan["Node Type"] != node_type:
        plan = plan["Plans"][0]
    return plan


def run(url: str, workers: int = 2) -> dict:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(f"ALTER TABLE digits SET (parallel_workers = {int(workers)})"))
        conn.execute(sa.text(f"SET max_parallel_workers_per_gather = {int(workers)}"))
        # The table is small: tell the planner that starting workers is worth it.
        conn.execute(sa.text("SET parallel_setup_cost = 0"))
        conn.execute(sa.text("SET parallel_tuple_cost = 0"))
        started = time.perf_counter()
        raw = conn.execute(sa.text(f"EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) {QUERY}")).scalar()
        explain_s = time.perf_counter() - started
        gather = _find((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"], "Gather")
        scan = _find(gather, "Seq Scan")  # shown as "Parallel Seq Scan" in text form
        per_worker = [w["Actual Rows"] for w in scan.get("Workers", [])]
        rows, correct = conn.execute(sa.text(QUERY)).one()
        conn.rollback()
    engine.dispose()
    return {
        "workers_launched": gather["Workers Launched"],
        "rows_per_worker": per_worker,
        "rows_by_leader": rows - sum(per_worker),
        "rows": rows,
        "accuracy": correct / rows,
        "seconds": explain_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="SQLAlchemy URL of the examples' database")
    parser.add_argument("--workers", type=int, default=2, help="parallel workers (2)")
    args = parser.parse_args()
    r = run(args.url, args.workers)
    shares = ", ".join(f"{n:,}" for n in r["rows_per_worker"])
    print(
        f"{r['rows']:,} digits scored in one parallel query ({r['seconds']:.2f} s): "
        f"{r['workers_launched']} workers scored {shares} rows, the leader "
        f"{r['rows_by_leader']:,}; each process loaded the model once; "
        f"accuracy {r['accuracy']:.2%}"
    )


if __name__ == "__main__":
    main()
