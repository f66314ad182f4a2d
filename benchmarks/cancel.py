"""How soon a cancel lands: statement_timeout against scoring with the largest chunk
setting (pgml.batch_chunk_rows = 65536), on the embedded cluster.

    /opt/pgml_ext/venv/bin/python benchmarks/cancel.py [--rows N] [--timeout-ms T]

For each way of scoring, the statement runs with statement_timeout = T and the time to
its ERROR is measured (median of 3); "late by" is that time minus T. Before chunks were
sized by time, one runtime call of 65,536 CNN rows (~20 s) ran to its end first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.demo import embedded_database, trained_cnn

QUERIES = {
    "classify_batch, C (LiteRT)": "SELECT cardinality(pgml.classify_batch('cnn', "
    "(SELECT array_agg(pixels) FROM big)))",
    "classify_batch, PL/Python (LiteRT)": "SELECT cardinality(pgml.classify_batch('cnn', "
    "(SELECT array_agg(pixels) FROM big)))",
    "predict_batch, PL/Python (LiteRT)": "SELECT count(*) FROM pgml.predict_batch('cnn', "
    "(SELECT array_agg(example) FROM big))",
    "classify_batch, TensorFlow": "SELECT cardinality(pgml.classify_batch('cnn_tf', "
    "(SELECT array_agg(pixels) FROM big)))",
    "per row, C (LiteRT)": "SELECT count(pgml.classify('cnn', pixels)) FROM big",
    "score_into, TensorFlow, chunk_size 20000": "SELECT pgml.score_into('cnn_tf', 'big', "
    "'predictions', input => 'pixels', chunk_size => 20000)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    args = parser.parse_args()
    _, engine = embedded_database("pgml_cancel")
    cnn = trained_cnn()
    client.register_model(engine, "cnn", cnn)
    client.register_model(engine, "cnn_tf", cnn, runtime="tensorflow")
    reference.load_table(engine, "big", args.rows)
    print(
        f"statement_timeout {args.timeout_ms} ms, pgml.batch_chunk_rows 65536, CNN, "
        f"{args.rows} rows; medians of 3"
    )
    for what, query in QUERIES.items():
        times = []
        for _ in range(3):
            with engine.connect() as conn:
                conn.exec_driver_sql("SET pgml.batch_chunk_rows = 65536")
                if "PL/Python" in what:
                    conn.exec_driver_sql("SET pgml.native_scoring = off")
                model = "cnn_tf" if "TensorFlow" in what else "cnn"  # loaded before: warm
                conn.exec_driver_sql(
                    f"SELECT pgml.predict_class('{model}', pixels) FROM big LIMIT 1"
                )
                conn.exec_driver_sql(f"SET statement_timeout = {args.timeout_ms}")
                started = time.perf_counter()
                try:
                    conn.exec_driver_sql(query).all()
                    outcome = "finished"
                except sa.exc.DatabaseError as e:
                    outcome = e.orig.args[0]["C"]
                times.append(time.perf_counter() - started)
        ms = statistics.median(times) * 1000
        print(
            f"  {what:38} {outcome:8} after {ms:7.0f} ms (late by {ms - args.timeout_ms:5.0f} ms)"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
