"""Prepare the examples' database: `python examples/setup.py [--url URL] [--force]`.

Creates database pgml_examples (on the embedded cluster unless --url names a server; an
existing pgml_examples that this script did not make is dropped only with --force),
installs pgml_ext, registers two models and loads the tables the examples use:
- model 'mnist': TF Serving's MNIST export (classify signature on tf.Examples);
- model 'digits': the reference Keras MLP, labels '0'..'9';
- mnist_images(id, image bytea, label): tf.Example BLOBs, as the SAP HANA seed stores them;
- digits(id, pixels float4[], label), categories(id, name).
"""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from pgml_ext import client, demo, reference
from pgml_ext.cluster import Cluster

DATABASE = "pgml_examples"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def prepare(server_url: str | None = None, force: bool = False) -> str:
    """Create the database and everything in it; return its SQLAlchemy URL."""
    if server_url is None:  # the embedded cluster: throwaway, made by this project
        cluster = Cluster.default()
        cluster.start()
        server_url, force = cluster.url(), True
    url = client.create_database(server_url, DATABASE, force=force)
    engine = sa.create_engine(url)
    client.install(engine)
    client.register_model(
        engine, "mnist", demo.trained("serving_mnist", reference.export_serving_mnist)
    )
    client.register_model(engine, "digits", demo.trained_mlp(), labels=[str(i) for i in range(10)])
    x, y = reference.digits()
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE mnist_images (id int PRIMARY KEY, image bytea, label int)")
        )
        conn.execute(
            sa.text("CREATE TABLE digits (id int PRIMARY KEY, pixels float4[], label int)")
        )
        conn.execute(sa.text("CREATE TABLE categories (id int PRIMARY KEY, name text)"))
        conn.execute(
            sa.text("INSERT INTO categories VALUES (:i, :n)"),
            [{"i": i, "n": n} for i, n in enumerate(NAMES)],
        )
        conn.execute(
            sa.text("CREATE TEMP TABLE staging (id int, pixels float4[], example bytea, label int)")
        )
        reference.copy_rows(conn.connection.driver_connection, "staging", x, y)
        conn.execute(sa.text("INSERT INTO mnist_images SELECT id, example, label FROM staging"))
        conn.execute(sa.text("INSERT INTO digits SELECT id, pixels, label FROM staging"))
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a server's SQLAlchemy URL (default: the embedded cluster)")
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"drop an existing {DATABASE} database that this script did not make",
    )
    args = parser.parse_args()
    try:
        print(prepare(args.url, args.force))
    except ValueError as e:
        raise SystemExit(f"setup.py: {e}") from None


if __name__ == "__main__":
    main()
