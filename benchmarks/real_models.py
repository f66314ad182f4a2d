"""The "real models" table: exports made the TF Serving way, against the Keras MLP.

    /opt/pgml_ext/venv/bin/python benchmarks/real_models.py [--rows N]

Registers the reference MLP (Keras ``model.export``) and TF Serving's MNIST export
(TF1 graph: ``serving_default`` parses Examples in its graph) twice: as registration
chooses (its parse is cut off, the rest runs on LiteRT) and with runtime 'tensorflow'
(what every backend ran before). For each, in a new backend: the first call's time,
rows/s of ``pgml.predict`` over N tf.Example rows (median of 3, side by side in one
run) and the backend's RSS afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.demo import embedded_database


def measure(engine, model: str, rows: int) -> dict:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        started = time.perf_counter()
        conn.execute(sa.text(f"SELECT pgml.predict('{model}', example) FROM inputs LIMIT 1"))
        first_ms = (time.perf_counter() - started) * 1000
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(
                sa.text(f"SELECT count(pgml.predict('{model}', example)) FROM inputs")
            ).scalar()
            rates.append(rows / (time.perf_counter() - started))
        status = conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()
        runtime = conn.execute(
            sa.text("SELECT runtime FROM pgml.models WHERE name = :m AND current"), {"m": model}
        ).scalar()
    return {
        "runtime": runtime,
        "first_ms": first_ms,
        "rows_s": statistics.median(rates),
        "rss_mb": status["rss_mb"],
        "c_rows": status["native_rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    _, engine = embedded_database("pgml_real_models")
    reference.load_table(engine, "inputs", args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        client.register_model(engine, "mlp", reference.train_mlp(f"{tmp}/mlp", epochs=1))
        serving = reference.export_serving_mnist(f"{tmp}/serving")
        client.register_model(engine, "tf_serving_mnist", serving)
        client.register_model(engine, "tf_serving_mnist_tf", serving, runtime="tensorflow")
    results = {
        m: measure(engine, m, args.rows) for m in ("mlp", "tf_serving_mnist", "tf_serving_mnist_tf")
    }
    base = results["mlp"]["rows_s"]
    print(f"{'model':22} {'runtime':10} {'first call':>10} {'rows/s':>9} {'÷ MLP':>6} {'RSS':>7}")
    for model, r in results.items():
        print(
            f"{model:22} {r['runtime']:10} {r['first_ms']:8.0f} ms {r['rows_s']:9,.0f} "
            f"{r['rows_s'] / base:5.2f}× {r['rss_mb']:5.0f} MB"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
