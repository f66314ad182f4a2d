"""Many sessions meet a version nobody has loaded yet: how long each waits, and what
lands on disk (one writer per version; the others wait for its files).

    /opt/pgml_ext/venv/bin/python benchmarks/first_load.py [--sessions N]

Registers the reference CNN afresh, then N new connections score one row each at the
same moment; prints the median and slowest first-call time, the version directories
and their size, and any write leftovers (".tmp") in the server's model files.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.demo import embedded_database, trained_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=16)
    args = parser.parse_args()
    cluster, engine = embedded_database("pgml_first_load")
    reference.load_table(engine, "inputs", 100)
    cnn = trained_cnn()
    for runtime in ("litert", "tensorflow"):
        name = f"cnn_{runtime}"
        client.register_model(engine, name, cnn, runtime=runtime)
        barrier = threading.Barrier(args.sessions)
        times: list[float] = []

        def first_call(name: str = name, barrier=barrier, times: list = times) -> None:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
                barrier.wait()
                started = time.perf_counter()
                conn.execute(
                    sa.text(f"SELECT pgml.predict_class('{name}', pixels) FROM inputs LIMIT 1")
                )
                times.append(time.perf_counter() - started)

        threads = [threading.Thread(target=first_call) for _ in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with engine.connect() as conn:
            db = conn.exec_driver_sql(
                "SELECT oid FROM pg_database WHERE datname = current_database()"
            ).scalar()
        root = cluster.datadir / "pgsql_tmp_pgml_ext" / str(db)
        dirs = [p for p in root.iterdir() if p.is_dir() and ".tmp" not in p.name]
        leftovers = [p.name for p in root.iterdir() if ".tmp" in p.name]
        size = sum(f.stat().st_size for d in dirs for f in Path(d).rglob("*") if f.is_file())
        print(
            f"{name}: {args.sessions} sessions, first call median "
            f"{statistics.median(times) * 1000:.0f} ms, slowest {max(times) * 1000:.0f} ms; "
            f"{len(dirs)} version directories ({size / 2**20:.1f} MB), leftovers {leftovers}"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
