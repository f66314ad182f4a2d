"""`pgml-ext demo`: the reference workload end to end on the embedded cluster."""

from __future__ import annotations

import os
import time
from pathlib import Path

import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.cluster import HOME, Cluster

DEMO_DB = "pgml_demo"
MODEL = "digits_mlp"


def say(text: str) -> None:
    print(f"\033[1m==>\033[0m {text}", flush=True)


def _show_sql(sql: str) -> None:
    print("    " + "\n    ".join(sql.strip().splitlines()), flush=True)


def trained(name: str, build) -> Path:
    """A reference model, built once by ``build(dir)`` and kept under $PGML_EXT_HOME."""
    out = HOME / "models" / name
    if not (out / "saved_model.pb").exists():
        say(f"building the reference model {name} (once; kept in {out.parent})")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{name}.tmp{os.getpid()}")
        build(tmp)
        tmp.rename(out)
    return out


def trained_mlp() -> Path:
    """The reference MLP (784-128-10) trained on scikit-learn's digits."""
    return trained("digits_mlp", reference.train_mlp)


def trained_cnn() -> Path:
    """The reference CNN (the ECL seed's) trained on scikit-learn's digits."""
    return trained("digits_cnn", reference.train_cnn)


def embedded_database(name: str, port: int | None = None) -> tuple[Cluster, sa.Engine]:
    """The embedded cluster, started, and a fresh database NAME on it with pgml_ext
    installed; the engine opens a new backend per connection (no pool)."""
    cluster = Cluster.default(port)
    cluster.start()
    url = client.create_database(cluster.url(), name, force=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    client.install(engine)
    return cluster, engine


def run(rows: int = 20_000, port: int | None = None) -> dict:
    cluster = Cluster.default(port)
    say(f"starting the embedded PostgreSQL cluster ({cluster.datadir}, port {cluster.port})")
    cluster.start()
    engine = sa.create_engine(client.create_database(cluster.url(), DEMO_DB, force=True))
    say(f"installing pgml_ext {client.install(engine)} into database {DEMO_DB}")
    model_dir = trained_mlp()
    say(f"registering {model_dir} as '{MODEL}'")
    version = client.register_model(engine, MODEL, model_dir)
    say(f"loading {rows:,} rows of the reference data (digits cycled, three columns)")
    _show_sql(reference.load_table(engine, "inputs", rows))
    setup_sql = f"SELECT pgml.create_function('classify', '{MODEL}');"
    _show_sql(setup_sql)
    with engine.begin() as conn:
        conn.execute(sa.text(setup_sql))

    say("scoring in a new connection: first call (loads the model into the backend)")
    first_sql = "SELECT classify(example) FROM inputs WHERE id = 0;"
    _show_sql(first_sql)
    engine.dispose()  # a new backend, so the first call really is the first
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(sa.text(first_sql)).scalar_one()
        first_ms = (time.perf_counter() - started) * 1000
        score_sql = "SELECT id, classify(example) AS predicted, label FROM inputs;"
        say(f"scoring all {rows:,} rows inside the database")
        _show_sql(score_sql)
        started = time.perf_counter()
        result = conn.execute(sa.text(score_sql)).all()
        seconds = time.perf_counter() - started
    with engine.connect() as conn:
        runtime = conn.execute(
            sa.text("SELECT runtime FROM pgml.models WHERE name = :m AND current"), {"m": MODEL}
        ).scalar_one()
    correct = sum(1 for _, predicted, label in result if predicted == str(label))
    summary = {
        "rows": len(result),
        "accuracy": correct / len(result),
        "rows_per_s": len(result) / seconds,
        "seconds": seconds,
        "first_call_ms": first_ms,
        "model_version": version,
        "runtime": runtime,
    }
    say("result")
    print(f"    model            {MODEL} v{version} (runtime {summary['runtime']})")
    print(f"    accuracy         {summary['accuracy']:.2%} of {len(result):,} rows")
    print(f"    throughput       {summary['rows_per_s']:,.0f} rows/s ({seconds:.2f} s)")
    print(f"    first call       {first_ms:,.0f} ms in a new backend (import + load)")
    print(
        f"\n    The cluster keeps running: psql -h {cluster.host} -p {cluster.port} "
        f"-U postgres {DEMO_DB}\n    Stop it with: pgml-ext db stop --port {cluster.port}"
    )
    return summary
