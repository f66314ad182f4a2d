"""What pgml.stats costs the hot path: the same scoring with pgml.track_stats on and off,
side by side in one run, on the embedded cluster.

    /opt/pgml_ext/venv/bin/python benchmarks/stats_cost.py [--rows N] [--repeats N]

The reference MLP (the cheapest model per row, where counting weighs the most) scores a
table of tf.Examples in one backend, serially: over blocks of rows (the usual plan) and
row by row (pgml.block_rows = 1: two clock reads per row). The two settings alternate
within each repeat; medians, and the ratio on ÷ off.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pgml_ext import client, reference
from pgml_ext.demo import embedded_database, trained_mlp

QUERY = "SELECT count(pgml.classify('mlp', example)) FROM big"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    _, engine = embedded_database("pgml_stats_cost")
    client.register_model(engine, "mlp", trained_mlp())
    reference.load_table(engine, "big", args.rows)
    print(f"MLP, tf.Example, {args.rows:,} rows, one backend, serial; medians of {args.repeats}")
    print("| path | track_stats on (ms) | off (ms) | on ÷ off |")
    print("|---|---:|---:|---:|")
    for path, block_rows in (("blocks of rows", 64), ("row by row", 1)):
        times: dict[str, list[float]] = {"on": [], "off": []}
        with engine.connect() as conn:
            conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
            conn.exec_driver_sql(f"SET pgml.block_rows = {block_rows}")
            conn.exec_driver_sql(QUERY)  # the model loaded, the table cached
            for _ in range(args.repeats):
                for setting in ("on", "off"):
                    conn.exec_driver_sql(f"SET pgml.track_stats = {setting}")
                    started = time.perf_counter()
                    conn.exec_driver_sql(QUERY)
                    times[setting].append((time.perf_counter() - started) * 1000)
        on, off = statistics.median(times["on"]), statistics.median(times["off"])
        print(f"| {path} | {on:.1f} | {off:.1f} | {on / off:.3f} |")
    engine.dispose()


if __name__ == "__main__":
    main()
