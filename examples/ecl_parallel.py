"""The HPCC ECL flow (seed 002): the model is loaded once per process and kept there,
records are scored in parallel, and the result reports accuracy.

In PostgreSQL the "process" is a backend: pgml_ext loads a model once per backend and
caches it. The parallelism comes from several sessions, each scoring its own slice of
the table (like ECL's PARALLEL(n)), because PostgreSQL's parallel query cannot run
PL/Python functions that query the database (see the README).

Run: python examples/ecl_parallel.py URL [--workers 4]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa


def score_slice(url: str, worker: int, workers: int) -> tuple[int, int, int, int]:
    """(rows, correct, backend pid, models cached in that backend) for one slice."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows, correct = conn.execute(
            sa.text(
                "SELECT count(*), count(*) FILTER (WHERE pgml.classify('digits', pixels) = "
                "label::text) FROM digits WHERE mod(id, :n) = :k"
            ),
            {"n": workers, "k": worker},
        ).one()
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        cached = conn.execute(sa.text("SELECT count(*) FROM pgml.cached_models()")).scalar()
    engine.dispose()
    return rows, correct, pid, cached


def run(url: str, workers: int = 4) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda k: score_slice(url, k, workers), range(workers)))
    seconds = time.perf_counter() - started
    rows = sum(r[0] for r in results)
    correct = sum(r[1] for r in results)
    return {
        "workers": workers,
        "rows": rows,
        "accuracy": correct / rows,
        "seconds": seconds,
        "backends": len({r[2] for r in results}),
        "models_loaded_per_backend": max(r[3] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="SQLAlchemy URL of the examples' database")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    r = run(args.url, args.workers)
    print(
        f"{r['rows']:,} digits scored by {r['backends']} backends in {r['seconds']:.2f} s, "
        f"each loading the model once; accuracy {r['accuracy']:.2%}"
    )


if __name__ == "__main__":
    main()
