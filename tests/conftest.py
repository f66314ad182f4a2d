"""Fixtures: a real PostgreSQL cluster with PL/Python, real models, real data.

One throwaway cluster per test session (initialised fresh, on its own port), one
database with the extension installed, and the reference models built once and kept
under $PGML_EXT_HOME/fixtures (rebuilt when pgml_ext/reference.py changes).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

# Imported before TensorFlow: hypothesis's pytest plugin otherwise imports it at the end
# of a session that loaded TensorFlow, and CPython 3.11 then fails to parse it
# ("AST constructor recursion depth mismatch"), failing runs of a few test files.
import hypothesis  # noqa: F401
import numpy as np
import pytest
import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.cluster import HOME, Cluster

TEST_PORT = int(os.environ.get("PGML_EXT_TEST_PORT", "54339"))
TEST_DB = "pgml_test"
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = Cluster(HOME / "test-cluster", TEST_PORT)
    c.destroy()
    c.start()
    yield c
    c.stop()


# What the server log says when a backend dies of a signal and the postmaster restarts
# every connection (pg_postmaster_start_time() does not change then).
CRASH = re.compile(
    r"terminated by signal|was terminated by exception|all server processes terminated"
)


class Witness:
    """A connection held open across a test, plus the server log read since the test
    began: a crash-restart drops the one and writes the other."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.conn = None
        self.log_at = 0

    def arm(self) -> None:
        import pg8000.dbapi

        if self.conn is None:
            self.conn = pg8000.dbapi.connect(
                user=self.cluster.user, host=self.cluster.host, port=self.cluster.port
            )
            self.conn.autocommit = True
        self.log_at = self._log_size()

    def _log_size(self) -> int:
        try:
            return (self.cluster.datadir / "server.log").stat().st_size
        except OSError:
            return 0

    def crashes(self) -> list[str]:
        """Crash lines logged since arm(), and whether the held connection died."""
        try:
            with open(self.cluster.datadir / "server.log", errors="replace") as f:
                f.seek(self.log_at)
                found = [line for line in f.read().splitlines() if CRASH.search(line)]
        except OSError:
            found = []
        return found

    def alive(self) -> bool:
        try:
            cur = self.conn.cursor()
            cur.execute("SELECT 1")
            return cur.fetchone()[0] == 1
        except Exception:
            self.conn = None
            return False


@pytest.fixture(scope="session")
def crash_witness(cluster: Cluster) -> Witness:
    return Witness(cluster)


@pytest.fixture(autouse=True)
def no_crash(request) -> Iterator[None]:
    """Every test on the server: no backend crash, seen by a witness connection and the
    server log. A test that stops the server on purpose is marked ``restarts_server``."""
    if "cluster" not in request.fixturenames:
        yield
        return
    witness = request.getfixturevalue("crash_witness")
    witness.arm()
    yield
    crashed = witness.crashes()
    assert not crashed, "the server crashed during this test:\n" + "\n".join(crashed)
    if not witness.alive():
        assert request.node.get_closest_marker("restarts_server"), (
            "the witness connection was dropped: the server restarted during this test"
        )


@pytest.fixture(scope="session")
def db_url(cluster: Cluster) -> str:
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {TEST_DB}"))
    admin.dispose()
    url = cluster.url(TEST_DB)
    client.install(url)
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[sa.Engine]:
    e = sa.create_engine(db_url)
    yield e
    e.dispose()


def new_engine(url: str) -> sa.Engine:
    """No pooling: every connect() is a new backend."""
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def built_model(name: str, build) -> Path:
    """A SavedModel written once by ``build(dir)`` under $PGML_EXT_HOME/fixtures/NAME."""
    out = HOME / "fixtures" / name
    if not (out / "saved_model.pb").exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build(str(tmp))
        tmp.rename(out)
    return out


def _fixture_dir(name: str, build) -> Path:
    key = hashlib.sha256(Path(reference.__file__).read_bytes()).hexdigest()[:12]
    out = built_model(f"{name}-{key}", build)
    # pgml.load_model reads it as the server's OS user
    for p in [HOME, HOME / "fixtures", *out.rglob("*"), out]:
        p.chmod(p.stat().st_mode | 0o055)
    return out


@pytest.fixture(scope="session")
def mlp_dir() -> Path:
    """Keras 3 model.export of the reference MLP: serving_default takes float[?,784]."""
    return _fixture_dir("mlp", reference.train_mlp)


@pytest.fixture(scope="session")
def mlp_tflite(mlp_dir: Path) -> Path:
    """The reference MLP as TFLiteConverter writes it, readable by the server's user."""
    import tensorflow as tf

    out = HOME / "fixtures" / f"{mlp_dir.name}.tflite"
    if not out.exists():
        out.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(mlp_dir)).convert())
    out.chmod(0o644)
    return out


@pytest.fixture(scope="session")
def serving_dir() -> Path:
    """TF Serving's MNIST export: predict_images (floats) + serving_default (classify)."""
    return _fixture_dir("serving", reference.export_serving_mnist)


@pytest.fixture(scope="session")
def wrapped_dir() -> Path:
    """A tf.Module-wrapped Keras model: TFLite converts it silently wrong."""
    return _fixture_dir("wrapped", reference.export_wrapped_keras)


@pytest.fixture(scope="session")
def models(engine: sa.Engine, mlp_dir: Path, serving_dir: Path) -> dict[str, str]:
    """Registered once per session: 'mlp', 'mlp_labels' (with labels), 'mnist'."""
    client.register_model(engine, "mlp", mlp_dir)
    client.register_model(engine, "mlp_labels", mlp_dir, labels=LABELS)
    client.register_model(engine, "mnist", serving_dir)
    return {"mlp": "mlp", "mlp_labels": "mlp_labels", "mnist": "mnist"}


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return reference.digits()


@pytest.fixture(scope="session")
def inputs(engine: sa.Engine) -> str:
    """Table 'inputs' with the 1,797 reference digits (pixels, example, label)."""
    reference.load_table(engine, "inputs", reference.N_DIGITS)
    return "inputs"


def scalar(engine: sa.Engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def rows(engine: sa.Engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def sql_error(engine: sa.Engine, sql: str, **params) -> tuple[str, str, str]:
    """Run SQL that must fail; return (SQLSTATE, message, hint) of the server's ERROR."""
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.execute(sa.text(sql), params)
        fields = info.value.orig.args[0]
        # the session stays usable after the error
        conn.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    return fields["C"], fields["M"], fields.get("H", "")


def model_files(engine: sa.Engine, model: str) -> str:
    """The directory on the server that holds MODEL's files (pgml_internal.model_ref names it)."""
    with engine.connect() as conn:
        ref, data_dir, db = conn.execute(
            sa.text(
                "SELECT pgml_internal.model_ref(:m), current_setting('data_directory'), "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"m": model},
        ).one()
    return f"{data_dir}/pgsql_tmp_pgml_ext/{db}/{ref}"


PARALLEL_PLAN = [
    "SET max_parallel_workers_per_gather = 2",
    "SET parallel_setup_cost = 0",
    "SET parallel_tuple_cost = 0",
    "SET min_parallel_table_scan_size = 0",
]


def force_parallel_plans(conn) -> None:
    """Settings under which even a small table gets a parallel plan."""
    for setting in PARALLEL_PLAN:
        conn.execute(sa.text(setting))


def numbered_table(engine: sa.Engine, table: str, column: str, values: list) -> None:
    """TABLE (id int, COLUMN) made afresh, a row per value, id its position from 0."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        conn.exec_driver_sql(f"CREATE TABLE {table} (id int, {column})")
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:i, :v)"),
            [{"i": i, "v": v} for i, v in enumerate(values)],
        )


def ddl(engine: sa.Engine, sql: str) -> None:
    """Run SQL that returns no rows (DDL) in its own committed transaction."""
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def committed(engine: sa.Engine, sql: str, **params):
    """Run SQL in its own committed transaction; return the first column of the first row."""
    with engine.begin() as conn:
        return conn.execute(sa.text(sql), params).scalar()
