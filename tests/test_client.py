"""Client side against a real server: install, register_model, SQLAlchemy, the CLI."""

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from conftest import ddl, new_engine, rows, scalar
from pgml_ext import client
from pgml_ext.sqlalchemy import FLOAT4_ARRAY, classify, predict, predict_class


class Base(DeclarativeBase):
    pass


class Inputs(Base):
    __tablename__ = "inputs"
    id: Mapped[int] = mapped_column(primary_key=True)
    pixels: Mapped[list[float]] = mapped_column(FLOAT4_ARRAY)
    example: Mapped[bytes]
    label: Mapped[int]


def test_install_is_idempotent(db_url):
    assert client.install(db_url) == client.install(db_url)
    assert (
        scalar(
            sa.create_engine(db_url), "SELECT count(*) FROM pg_extension WHERE extname = 'pgml_ext'"
        )
        == 1
    )


@pytest.fixture(params=["pg8000", "psycopg"])
def driver_engine(request, db_url):
    """The same database through each driver: the functions must behave the same."""
    e = sa.create_engine(db_url.replace("+pg8000", f"+{request.param}"))
    yield e
    e.dispose()


@pytest.mark.usefixtures("models", "inputs")
def test_sqlalchemy_core_and_orm(driver_engine, digits):
    engine = driver_engine
    x, _ = digits
    with Session(engine) as session:
        got = session.execute(
            select(
                Inputs.id,
                classify("mlp", Inputs.example),
                predict_class("mlp", Inputs.pixels),
                func.pgml.predict("mnist", Inputs.pixels),
            )
            .where(predict_class("mlp", Inputs.pixels) == Inputs.label)
            .order_by(Inputs.id)
            .limit(3)
        ).all()
    assert [(i, c, p) for i, c, p, _ in got] == [(0, "0", 0), (1, "1", 1), (2, "2", 2)]
    scores = got[0][3]
    assert isinstance(scores, list) and len(scores) == 10
    with engine.connect() as conn:
        # Python values are cast to the right overload: numpy arrays and bytes score
        # exactly as the stored row does
        stored = conn.execute(
            sa.text("SELECT pgml.classify('mlp', pixels) FROM inputs WHERE id = 5")
        ).scalar()
        assert conn.execute(select(func.pgml.classify("mlp", x[5]))).scalar() == stored
        from pgml_ext import reference

        assert conn.execute(select(predict_class("mnist", reference.serialize(x[6])))).scalar() == 6
        assert conn.execute(select(predict("mlp", x[7]))).scalar()[7] > 0.5


@pytest.mark.usefixtures("models", "inputs")
def test_every_sql_function_has_a_typed_sqlalchemy_twin(driver_engine, mlp_dir):
    from pgml_ext import sqlalchemy as pgml_sa

    inputs = sa.table("inputs", sa.column("id"), sa.column("pixels"), sa.column("example"))
    first10 = select(inputs.c.pixels).where(inputs.c.id < 10).order_by(inputs.c.id).subquery()
    with driver_engine.begin() as conn:
        labels = conn.execute(
            select(pgml_sa.classify_batch("mlp_labels", func.array_agg(first10.c.pixels)))
        ).scalar()
        assert labels[:3] == ["zero", "one", "two"]
        idx = conn.execute(
            select(pgml_sa.predict_class_batch("mlp", func.array_agg(first10.c.pixels)))
        ).scalar()
        assert idx[:3] == [0, 1, 2]
        sets = (
            conn.execute(select(pgml_sa.predict_batch("mlp", func.array_agg(first10.c.pixels))))
            .scalars()
            .all()
        )
        assert len(sets) == 10 and len(sets[0]) == 10
        assert (
            conn.execute(
                select(pgml_sa.load_model("sa_model", str(mlp_dir), "auto", list("abcdefghij")))
            ).scalar()
            >= 1
        )
        conn.execute(select(pgml_sa.pin_model("sa_model", 1)))
        conn.execute(select(pgml_sa.unpin_model("sa_model")))
        conn.execute(select(pgml_sa.create_function("sa_classify", "sa_model")))
        assert (
            conn.execute(sa.text("SELECT sa_classify(pixels) FROM inputs WHERE id = 0")).scalar()
            == "a"
        )
        written = conn.execute(
            select(
                pgml_sa.score_into(
                    "sa_model", "SELECT id, pixels FROM inputs WHERE id < 50", "sa_predictions"
                )
            )
        ).scalar()
        assert written == 50
        status = conn.execute(select(pgml_sa.backend_status())).scalar()
        assert isinstance(status, dict) and status["litert_imported"]
        assert conn.execute(select(pgml_sa.delete_model("sa_model"))).scalar() >= 1
        conn.execute(sa.text("DROP TABLE sa_predictions"))


def test_func_pgml_is_typed():
    assert isinstance(func.pgml.classify("m", sa.column("x")).type, sa.Text)
    assert isinstance(func.pgml.predict_class("m", sa.column("x")).type, sa.Integer)
    assert "pgml.predict(" in str(select(func.pgml.predict("m", sa.column("x"))))


def _cli(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "pgml_ext.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})},
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_help_explains():
    out = _cli("--help").stdout
    for command in ("db", "install", "register", "models", "demo"):
        assert command in out
    assert "SavedModel directory" in _cli("register", "--help").stdout


def test_cli_install_register_models(db_url, mlp_dir):
    assert "installed" in _cli("install", "--url", db_url).stdout
    out = _cli(
        "register", "cli_model", str(mlp_dir), "--url", db_url, "--labels", ",".join("abcdefghij")
    ).stdout
    assert "registered cli_model version 1" in out
    listing = _cli("models", "--url", db_url).stdout
    assert "cli_model" in listing and "serving_default" in listing


def test_cli_errors_are_messages_not_tracebacks(db_url):
    proc = _cli("register", "x", "/nonexistent", "--url", db_url, check=False)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_db_url(cluster):
    assert (
        _cli("db", "url", "--port", str(cluster.port))
        .stdout.strip()
        .endswith(f"127.0.0.1:{cluster.port}/postgres")
    )


@pytest.mark.usefixtures("models", "inputs")
def test_cli_describe_pin_rollback_delete(db_url, mlp_dir, engine):
    for _ in range(2):
        _cli("register", "cli_life", str(mlp_dir), "--url", db_url)
    out = _cli("describe", "cli_life", "--url", db_url).stdout
    assert "cli_life v2" in out and "[current]" in out
    assert "serving_default(pixels float32[None, 784])" in out
    assert "runtime litert: matches TensorFlow" in out
    assert "scored in C: tf.Example, float4[]" in out
    assert "pinned to version 1" in _cli("rollback", "cli_life", "--url", db_url).stdout
    assert (
        scalar(engine, "SELECT version FROM pgml.models WHERE name = 'cli_life' AND current") == 1
    )
    _cli("unpin", "cli_life", "--url", db_url)
    _cli("pin", "cli_life", "2", "--url", db_url)
    assert (
        scalar(engine, "SELECT version FROM pgml.models WHERE name = 'cli_life' AND current") == 2
    )
    assert "deleted 2 version(s)" in _cli("delete", "cli_life", "--url", db_url).stdout
    proc = _cli("describe", "cli_life", "--url", db_url, check=False)
    assert proc.returncode == 1 and "not registered" in proc.stderr


@pytest.mark.usefixtures("models")
def test_cli_export_gives_the_same_savedmodel_back(db_url, tmp_path, mlp_dir):
    out = tmp_path / "exported"
    assert "wrote mlp v1" in _cli("export", "mlp", str(out), "--url", db_url).stdout

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert files(out) == files(mlp_dir)


def _cli_score(db_url: str, table: str, column: str, into: str, *more: str, check=True):
    return _cli(
        "score", "--model", "mlp_labels", "--table", table, "--column", column,
        "--into", into, *more, "--url", db_url, check=check,
    )  # fmt: skip


@pytest.mark.usefixtures("models", "inputs")
def test_cli_score_with_progress(db_url, engine):
    proc = _cli_score(db_url, "inputs", "pixels", "cli_scores", "--chunk-size", "500")
    assert "scored 1,797 rows of inputs into cli_scores" in proc.stdout
    assert "scoring inputs" in proc.stderr  # the progress bar
    assert scalar(engine, "SELECT count(*) FROM cli_scores") == 1797
    assert scalar(engine, "SELECT count(DISTINCT key) FROM cli_scores") == 1797
    assert (
        scalar(
            engine,
            "SELECT avg((c.class_index = i.label)::int) FROM cli_scores c "
            "JOIN inputs i ON i.id = c.key",
        )
        > 0.95
    )
    picked = ("--where", "id % 3 = 0")
    proc = _cli_score(
        db_url, "inputs", "example", "cli_picked", *picked, "--keep", "label", check=False
    )
    assert proc.returncode == 1 and "cannot keep column 'label'" in proc.stderr
    assert "Traceback" not in proc.stderr
    ddl(engine, "CREATE VIEW digits_kept AS SELECT id, example, label AS digit FROM inputs")
    proc = _cli_score(db_url, "digits_kept", "example", "cli_picked", *picked, "--keep", "digit")
    assert "scored 599 rows of digits_kept into cli_picked" in proc.stdout
    got = scalar(
        engine, "SELECT count(*) FILTER (WHERE key % 3 = 0 AND digit IS NOT NULL) FROM cli_picked"
    )
    assert got == 599 == scalar(engine, "SELECT count(*) FROM cli_picked")
    ddl(engine, "DROP VIEW digits_kept")
    # a query instead of a table: computed columns, kept beside the answers
    query = "SELECT id * 10 AS id, example, label + 100 AS shifted FROM inputs WHERE id < 50"
    proc = _cli(
        "score", "--model", "mlp_labels", "--query", query, "--column", "example",
        "--into", "cli_query", "--keep", "shifted", "--where", "id % 20 = 0",
        "--url", db_url,
    )  # fmt: skip
    # --where is on the query's columns: its id is the table's id * 10
    assert "scored 25 rows of the query into cli_query" in proc.stdout
    assert "scoring the query" in proc.stderr
    kept = rows(engine, "SELECT key, shifted FROM cli_query ORDER BY key")
    expected = rows(
        engine, "SELECT id * 10, label + 100 FROM inputs WHERE id < 50 AND id % 2 = 0 ORDER BY id"
    )
    assert [tuple(r) for r in kept] == [tuple(r) for r in expected]
    both = _cli("score", "--model", "m", "--table", "t", "--query", "q", "--column", "c",
                "--into", "i", check=False)  # fmt: skip
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.usefixtures("models", "inputs")
def test_sqlalchemy_where_and_order_by(driver_engine):
    with Session(driver_engine) as session:
        ids = session.scalars(
            select(Inputs.id)
            .where(Inputs.id < 40, predict_class("mlp", Inputs.pixels) == 7)
            .order_by(predict("mlp", Inputs.pixels)[8].desc(), Inputs.id)
        ).all()
    with driver_engine.connect() as conn:
        expected = (
            conn.execute(
                sa.text(
                    "SELECT id FROM inputs WHERE id < 40 AND pgml.predict_class('mlp', pixels) = 7 "
                    "ORDER BY (pgml.predict('mlp', pixels))[8] DESC, id"
                )
            )
            .scalars()
            .all()
        )
    assert ids == expected and {7, 17} <= set(ids)


@pytest.mark.usefixtures("models", "inputs")
def test_sqlalchemy_keyword_arguments_are_named_sql_arguments(engine):
    """signature=/output= are passed by name, never dropped (a dropped one would answer
    with the default signature, silently)."""
    inputs = sa.table("inputs", sa.column("id"), sa.column("pixels"))
    query = select(classify("mnist", inputs.c.pixels, signature="nope")).where(inputs.c.id == 3)
    assert "signature => " in str(query)
    with engine.connect() as conn, pytest.raises(sa.exc.DatabaseError) as info:
        conn.execute(query).scalar()
    assert info.value.orig.args[0]["C"] == "42704" and "nope" in info.value.orig.args[0]["M"]
    with engine.connect() as conn:
        named = conn.execute(
            select(predict("mnist", inputs.c.pixels, signature="predict_images")).where(
                inputs.c.id == 3
            )
        ).scalar()
        plain = conn.execute(
            sa.text(
                "SELECT pgml.predict('mnist', pixels, signature => 'predict_images') "
                "FROM inputs WHERE id = 3"
            )
        ).scalar()
    assert named == plain
    with pytest.raises(ValueError):
        classify("mnist", inputs.c.pixels, **{"bad name": 1})


@pytest.mark.usefixtures("models", "inputs")
def test_sqlalchemy_double_precision_arrays(driver_engine, digits):
    """ARRAY(DOUBLE_PRECISION) columns and float64 lists bound as double precision[]
    score as the float4[] column does, through both drivers."""
    from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION

    x, _ = digits
    doubles = ARRAY(DOUBLE_PRECISION)
    inputs = sa.table("inputs", sa.column("id"), sa.column("pixels", FLOAT4_ARRAY))
    first = select(inputs).where(inputs.c.id < 20).order_by(inputs.c.id).subquery()
    with driver_engine.connect() as conn:
        as_double = conn.execute(
            select(classify("mlp", sa.cast(first.c.pixels, doubles)))
        ).scalars()
        assert list(as_double) == list(
            conn.execute(select(classify("mlp", first.c.pixels))).scalars()
        )
        bound = sa.cast(sa.literal([float(v) for v in x[5]], doubles), doubles)
        stored = select(predict_class("mlp", inputs.c.pixels)).where(inputs.c.id == 5)
        assert (
            conn.execute(select(predict_class("mlp", bound))).scalar()
            == conn.execute(stored).scalar()
        )


def test_urls_in_every_form_libpq_or_sqlalchemy_takes():
    from pgml_ext.client import sqlalchemy_url

    assert sqlalchemy_url("postgres://u@h:5/db") == "postgresql+pg8000://u@h:5/db"
    assert sqlalchemy_url("postgresql://u:p@h/db?sslmode=require") == (
        "postgresql+pg8000://u:p@h/db?sslmode=require"
    )
    assert sqlalchemy_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("host=h port=5 dbname=db user=u") == "postgresql+pg8000://u@h:5/db"
    with pytest.raises(ValueError, match="not a database URL"):
        sqlalchemy_url("just-a-name")


@pytest.mark.usefixtures("models")
def test_cli_takes_libpq_urls_and_defaults_to_the_demo_database(cluster, mlp_dir):
    dsn = f"host=127.0.0.1 port={cluster.port} dbname=pgml_test user=postgres"
    assert "mlp" in _cli("models", "--url", dsn).stdout
    uri = f"postgres://postgres@127.0.0.1:{cluster.port}/pgml_test"
    assert "mlp" in _cli("models", "--url", uri).stdout
    env = {"PGML_EXT_PORT": str(cluster.port), "PGML_EXT_URL": ""}
    # before `make demo`: the cluster's postgres database, which has no models
    before = _cli("models", env=env, check=False)
    assert before.returncode == 1 and "Traceback" not in before.stderr
    assert "pgml-ext install" in before.stderr  # what to do
    demo_url = client.create_database(cluster.url(), "pgml_demo")
    try:
        client.install(demo_url)
        client.register_model(demo_url, "demo_digits", mlp_dir)
        assert "demo_digits" in _cli("models", env=env).stdout
    finally:
        with sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT").connect() as c:
            c.exec_driver_sql("DROP DATABASE pgml_demo WITH (FORCE)")


@pytest.mark.usefixtures("models", "inputs")
def test_sqlalchemy_features_by_name(driver_engine, digits):
    """A dict of features (or a row's to_jsonb) scores as the Example of those features."""
    from sqlalchemy.dialects.postgresql import JSONB

    from pgml_ext.sqlalchemy import example

    x, _ = digits
    features = {"pixels": [float(v) for v in x[3]]}
    with driver_engine.connect() as conn:
        by_name = conn.execute(select(classify("mlp", features))).scalar()
        assert by_name == conn.execute(select(classify("mlp", x[3]))).scalar()
        built = conn.execute(select(example("mlp", features))).scalar()
        assert isinstance(built, bytes)
        assert conn.execute(select(classify("mlp", built))).scalar() == by_name
        row = sa.cast(func.jsonb_build_object("pixels", sa.column("pixels")), JSONB)
        inputs = sa.table("inputs", sa.column("id"), sa.column("pixels"))
        got = conn.execute(select(classify("mlp", row)).select_from(inputs).where(inputs.c.id == 3))
        assert got.scalar() == by_name


@pytest.mark.usefixtures("models", "inputs")
def test_sqlalchemy_a_row_by_column_name(driver_engine):
    """A table's whole row (Table.table_valued(), an alias's too) scores by column name:
    pgml.classify(:model, inputs), its pixels column feeding the model's feature."""
    from pgml_ext.sqlalchemy import example

    inputs = sa.table("inputs", sa.column("id"), sa.column("pixels"), sa.column("example"))
    aliased = inputs.alias("i")
    with driver_engine.connect() as conn:
        by_row = conn.execute(
            select(
                inputs.c.id,
                classify("mlp", inputs.table_valued()),
                predict_class("mlp", aliased.table_valued(), signature="serving_default"),
            )
            .select_from(inputs.join(aliased, aliased.c.id == inputs.c.id))
            .order_by(inputs.c.id)
        ).all()
        by_example = conn.execute(
            select(
                inputs.c.id,
                classify("mlp", inputs.c.example),
                predict_class("mlp", inputs.c.example),
            ).order_by(inputs.c.id)
        ).all()
        assert by_row == by_example and len(by_row) > 1000
        built = conn.execute(
            select(example("mlp", inputs.table_valued())).where(inputs.c.id == 3)
        ).scalar()
        assert conn.execute(select(classify("mlp", built))).scalar() == by_row[3][1]


def test_install_with_an_async_engine_and_connection(db_url):
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from pgml_ext import install_async

    async def both() -> tuple[str, str]:
        engine = create_async_engine(db_url.replace("+pg8000", "+psycopg"))
        try:
            by_engine = await install_async(engine)
            async with engine.connect() as conn:
                by_connection = await install_async(conn)
                await conn.commit()
            return by_engine, by_connection
        finally:
            await engine.dispose()

    got = asyncio.run(both())
    version = scalar(
        new_engine(db_url), "SELECT extversion FROM pg_extension WHERE extname = 'pgml_ext'"
    )
    assert got == (version, version) and version


def test_install_in_an_alembic_migration_online_and_offline(cluster):
    """Online: installs through op.get_bind(). Offline (alembic upgrade --sql): writes the
    statements, which install the extension when the script is run."""
    import io

    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    from pgml_ext import install_in_migration

    script = io.StringIO()
    offline = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": script}
    )
    install_in_migration(Operations(offline))
    assert "CREATE EXTENSION IF NOT EXISTS pgml_ext CASCADE;" in script.getvalue()
    assert "ALTER EXTENSION pgml_ext UPDATE;" in script.getvalue()
    for name, run in (("pgml_offline", "script"), ("pgml_online", "bind")):
        url = client.create_database(cluster.url(), name)
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                if run == "script":
                    for statement in script.getvalue().split(";"):
                        if statement.strip():
                            conn.exec_driver_sql(statement)
                else:
                    install_in_migration(Operations(MigrationContext.configure(conn)))
            assert scalar(
                new_engine(url), "SELECT count(*) FROM pg_extension WHERE extname = 'pgml_ext'"
            )
        finally:
            engine.dispose()
            with sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT").connect() as c:
                c.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")


def test_create_database_drops_only_its_own_unless_forced(cluster):
    """The examples' database name, made by someone else with data in it."""
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS pgml_examples WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE pgml_examples")
    theirs = cluster.url("pgml_examples")
    ddl(new_engine(theirs), "CREATE TABLE precious AS SELECT 42 AS answer")
    try:
        with pytest.raises(ValueError, match="pgml_ext did not make it"):
            client.create_database(cluster.url(), "pgml_examples")
        # the examples' set-up says so and stops, before it reads any model
        script = os.path.join(os.path.dirname(__file__), "..", "examples", "setup.py")
        done = subprocess.run(
            [sys.executable, script, "--url", cluster.url()],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0 and "--force" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert scalar(new_engine(theirs), "SELECT answer FROM precious") == 42
        # FORCE drops anyone's; one it made itself it recreates unasked
        client.create_database(cluster.url(), "pgml_examples", force=True)
        client.create_database(cluster.url(), "pgml_examples")
        assert scalar(new_engine(theirs), "SELECT to_regclass('precious') IS NULL")
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS pgml_examples WITH (FORCE)")
        admin.dispose()
