"""The "real models" table: models built by common recipes, against the Keras MLP.

    /opt/pgml_ext/venv/bin/python benchmarks/real_models.py [--rows N] [--tensorflow]

Registers the reference MLP (Keras ``model.export``) and every recipe of
``tests/recipes.py`` (TF Serving's MNIST export, a TF1 graph whose ``serving_default``
parses Examples; a TF2 serving function over three typed features; TF1 classify and
regress heads; Keras lookups on dict inputs; a Keras text model; a two-head model),
each on the runtime registration chooses; TF Serving's MNIST also on 'tensorflow'
(what every backend ran before plans), and with ``--tensorflow`` every recipe too.
For each, in a new backend (the version's files already on the server): the first
call's time, rows/s over N tf.Example rows (median of 3, side by side in one run), the
share of rows scored in C, the backend's RSS afterwards (from /proc), and the largest
difference from TensorFlow's own answers on the first 200 rows (with whether the
arg-max agrees everywhere).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.bench import backend_rss_mb
from pgml_ext.demo import embedded_database
from pgml_ext.indb import examples

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from recipes import REAL_MODELS, Features  # noqa: E402

CHECKED = 200  # rows compared with TensorFlow
DISTINCT = 500  # distinct rows per table, cycled to --rows


def measure(engine, model: str, score: str, table: str, rows: int) -> dict:
    """First call, rows/s and the scores of the first CHECKED rows, in a new backend
    (the version's files already written on this server, as after any first use)."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pgml_internal.model_ref(:m)"), {"m": model})
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        started = time.perf_counter()
        conn.execute(sa.text(f"SELECT {score} FROM {table} LIMIT 1"))
        first_ms = (time.perf_counter() - started) * 1000
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(sa.text(f"SELECT count({score}) FROM {table}")).scalar()
            rates.append(rows / (time.perf_counter() - started))
        memory = backend_rss_mb(conn)
        status = json.loads(conn.execute(sa.text("SELECT pgml_internal.native_status()")).scalar())
        scores = conn.execute(
            sa.text(f"SELECT {score} FROM {table} WHERE id < {CHECKED} ORDER BY id")
        ).all()
    return {
        "first_ms": first_ms,
        "rows_s": statistics.median(rates),
        "rss_mb": memory,
        "c_share": status["native_rows"] / (3 * rows + 1 + CHECKED),
        "scores": np.array([s[0] for s in scores], dtype=np.float32),
    }


def runtime_of(engine, model: str, signature: str) -> str:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT runtime FROM pgml.describe(:m) WHERE current AND signature = :s"),
            {"m": model, "s": signature},
        ).scalar()


def fill(engine, table: str, batch: list[Features], rows: int) -> None:
    """TABLE (id, example bytea): BATCH's Examples cycled to ROWS rows."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}, {table}_distinct"))
        conn.execute(sa.text(f"CREATE TABLE {table}_distinct (id int, example bytea)"))
        conn.execute(
            sa.text(f"INSERT INTO {table}_distinct VALUES (:i, :e)"),
            [{"i": i, "e": examples.encode(r)} for i, r in enumerate(batch)],
        )
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} AS SELECT g AS id, d.example "
                f"FROM generate_series(0, {rows - 1}) g "
                f"JOIN {table}_distinct d ON d.id = g % {len(batch)}"
            )
        )
        conn.execute(sa.text(f"ANALYZE {table}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per model (5000)")
    parser.add_argument(
        "--tensorflow", action="store_true", help="also every recipe on runtime 'tensorflow'"
    )
    args = parser.parse_args()
    _, engine = embedded_database("pgml_real_models")
    reference.load_table(engine, "inputs", args.rows)
    runs: list[tuple[str, str, str, str, np.ndarray]] = []  # model, signature, score, table, want
    with tempfile.TemporaryDirectory() as tmp:
        mlp = reference.train_mlp(f"{tmp}/mlp", epochs=1)
        client.register_model(engine, "mlp", mlp)
        runs.append(("mlp", "serving_default", "pgml.predict('mlp', example)", "inputs", None))
        built: dict[str, str] = {}
        for recipe in REAL_MODELS:
            path = built.get(recipe.fixture)
            if path is None:
                path = built[recipe.fixture] = f"{tmp}/{recipe.fixture}"
                recipe.build(path)
            batch = recipe.rows(np.random.default_rng(0), DISTINCT)
            table = f"rows_{recipe.name}"
            fill(engine, table, batch, args.rows)
            want = recipe.tensorflow(path, batch[:CHECKED])
            on_tf = args.tensorflow or recipe.name == "tf_serving_mnist"
            for suffix, runtime in [("", "auto")] + [("_tf", "tensorflow")] * on_tf:
                model = recipe.name + suffix
                client.register_model(engine, model, path, runtime=runtime)
                runs.append(
                    (model, recipe.signature, recipe.score.format(model=model), table, want)
                )

    results = {}
    for model, signature, score, table, want in runs:
        r = measure(engine, model, score, table, args.rows)
        r["runtime"] = runtime_of(engine, model, signature)
        if want is not None:
            r["diff"] = float(np.abs(r["scores"] - want).max())
            r["argmax"] = bool((r["scores"].argmax(axis=1) == want.argmax(axis=1)).all())
        results[model] = r
        print(f"  measured {model}", file=sys.stderr)

    base = results["mlp"]["rows_s"]
    print(
        f"{'model':24} {'runtime':10} {'first call':>10} {'rows/s':>9} {'÷ MLP':>6} "
        f"{'in C':>5} {'RSS':>7} {'max diff vs TF':>15}"
    )
    for model, r in results.items():
        diff = f"{r['diff']:.1e}" + ("" if r["argmax"] else " arg-max!") if "diff" in r else "-"
        print(
            f"{model:24} {r['runtime']:10} {r['first_ms']:8.0f} ms {r['rows_s']:9,.0f} "
            f"{r['rows_s'] / base:5.2f}× {r['c_share']:5.0%} {r['rss_mb']:5.0f} MB {diff:>15}"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
