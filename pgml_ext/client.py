"""Client side: install the extension into a database and upload models to it."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm

from pgml_ext.indb import archive

EngineOrUrl = Engine | Connection | str


def engine_for(target: EngineOrUrl) -> Engine | Connection:
    return sa.create_engine(sqlalchemy_url(target)) if isinstance(target, str) else target


def sqlalchemy_url(url: str) -> str:
    """URL as SQLAlchemy takes it: a SQLAlchemy URL as it is; libpq's forms (a
    postgres:// or postgresql:// URI without a driver, or a "host=... dbname=..."
    connection string) for the pg8000 driver."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+pg8000://{rest}"
        return url
    if "=" not in url:
        raise ValueError(
            f"'{url}' is not a database URL: use postgresql://user@host:port/db "
            "(or a libpq string like 'host=h port=5432 dbname=db user=u')"
        )
    import shlex

    params = dict(part.split("=", 1) for part in shlex.split(url) if "=" in part)
    query = {
        k: v for k, v in params.items() if k not in ("host", "port", "dbname", "user", "password")
    }
    return sa.URL.create(
        "postgresql+pg8000",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
        query=query,
    ).render_as_string(hide_password=False)


@contextlib.contextmanager
def _begin(target: EngineOrUrl) -> Iterator[Connection]:
    """A transaction on a new connection, or a savepoint on a connection we were given
    (so that it also works inside an Alembic migration's transaction)."""
    bind = engine_for(target)
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin_nested():
            yield bind


# The comment on a database create_database made: the only kind it drops unasked.
THROWAWAY = "pgml_ext throwaway database (demo, examples, bench): recreated on each run"


def create_database(server_url: str, name: str, *, force: bool = False) -> str:
    """(Re)create database NAME on the server of SERVER_URL for throwaway demo, bench or
    example data; return its URL. An old NAME is dropped (with its connections) only if
    this function made it, or with FORCE: a database of the same name with real data in
    it is never dropped by accident."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT coalesce(shobj_description(oid, 'pg_database'), '') "
                    "FROM pg_database WHERE datname = :n"
                ),
                {"n": name},
            ).first()
            if found is not None and found[0] != THROWAWAY and not force:
                raise ValueError(
                    f"database {name} exists and pgml_ext did not make it: not dropping it "
                    "(pass --force to drop it and everything in it, or use another server)"
                )
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)"))
            conn.execute(sa.text(f"CREATE DATABASE {_ident(name)}"))
            conn.execute(sa.text(f"COMMENT ON DATABASE {_ident(name)} IS '{THROWAWAY}'"))
    finally:
        admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


# What install does, as statements for a script (an Alembic migration run with --sql).
INSTALL_SQL = ("CREATE EXTENSION IF NOT EXISTS pgml_ext CASCADE", "ALTER EXTENSION pgml_ext UPDATE")


def install(target: EngineOrUrl) -> str:
    """Create or update the extension in that database; returns the installed version.

    The server must have the extension's files (``make install``) and the Python
    packages on PL/Python's path (``make setup``); see the README. In an Alembic
    migration use :func:`install_in_migration`; with an AsyncEngine,
    :func:`install_async`.
    """
    with _begin(target) as conn:
        conn.execute(sa.text(INSTALL_SQL[0]))
        installed, default = conn.execute(
            sa.text(
                "SELECT e.extversion, a.default_version FROM pg_extension e "
                "JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'pgml_ext'"
            )
        ).one()
        if installed != default:
            conn.execute(sa.text(INSTALL_SQL[1]))
            installed = default
    return installed


async def install_async(target) -> str:
    """:func:`install` for an AsyncEngine or AsyncConnection (SQLAlchemy's asyncio)."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    if isinstance(target, AsyncConnection):
        return await target.run_sync(install)
    async with target.begin() as conn:
        return await conn.run_sync(install)


def install_in_migration(op) -> None:
    """Install or update the extension from an Alembic migration's ``op``: online, as
    :func:`install` does; offline (``alembic upgrade --sql``), as the statements of
    ``INSTALL_SQL`` in the script (updating to the version the server has)."""
    if op.get_context().as_sql:
        for statement in INSTALL_SQL:
            op.execute(statement)
    else:
        install(op.get_bind())


def register_model(
    target: EngineOrUrl,
    name: str,
    saved_model_dir: str | os.PathLike,
    labels: Sequence[str] | None = None,
    runtime: str = "auto",
    *,
    signature: str | None = None,
    feature_map: dict[str, str] | None = None,
    samples=None,
    progress: bool | None = None,
    allow_unsafe_ops: bool = False,
) -> int:
    """Upload a model into the database and return its new version.

    ``saved_model_dir`` is a SavedModel directory; a Keras ``.keras``/``.h5`` file
    (exported to a SavedModel here first, with TensorFlow); or a LiteRT ``.tflite`` file
    (served by LiteRT as it is: no TensorFlow, no parity check). The upload and the
    server's check of the model (its signatures are read there) are one transaction: if
    anything fails, nothing is registered. ``signature`` names the signature to use by
    default; ``feature_map`` maps input names to tf.Example feature names when they
    differ. ``runtime``: ``"auto"`` converts each signature to LiteRT and keeps the
    conversion only where it matches TensorFlow on sample inputs (the model's own
    signature filled with random values, plus ``samples``, an array of inputs, if
    given); ``"litert"`` requires that, ``"tensorflow"`` skips it. ``progress``: an
    upload bar and a spinner while the server converts (default: for large models).

    A graph with ops that reach outside the database (files, network, Python) is
    refused; ``allow_unsafe_ops=True`` registers it anyway, for superusers only.
    """
    from pgml_ext.sources import model_source

    with _begin(target) as conn:
        # a name the server would refuse is refused before the model is read and sent
        conn.execute(sa.text("SELECT pgml_internal.check_model_name(:n)"), {"n": name})
    with model_source(saved_model_dir) as source:
        blob = source.blob
        if source.note and progress:
            print(f"{name}: {source.note}", file=sys.stderr)
    options = {
        k: v
        for k, v in {
            **source.options,
            "signature": signature,
            "feature_map": feature_map,
            "allow_unsafe_ops": allow_unsafe_ops,
        }.items()
        if v
    }
    parts = archive.chunks(blob)
    show = progress if progress is not None else len(blob) > 4 * archive.CHUNK_SIZE
    with _begin(target) as conn:
        model_id = conn.execute(
            sa.text(
                "SELECT pgml_internal.begin_registration(:name, :size, :checksum, :labels, "
                ":runtime, CAST(:options AS jsonb))"
            ),
            {
                "name": name,
                "size": len(blob),
                "checksum": archive.checksum(blob),
                "labels": list(labels) if labels is not None else None,
                "runtime": runtime,
                "options": json.dumps(options),
            },
        ).scalar_one()
        insert = sa.text("SELECT pgml_internal.upload_chunk(:id, :seq, :data)")
        with tqdm(
            total=len(blob), unit="B", unit_scale=True, desc=f"uploading {name}", disable=not show
        ) as bar:
            for seq, chunk in enumerate(parts):
                conn.execute(insert, {"id": model_id, "seq": seq, "data": chunk})
                bar.update(len(chunk))
        with spinner(f"{name}: the server checks and converts it", show):
            return conn.execute(
                sa.text("SELECT pgml_internal.finish_registration(:id, :samples)"),
                {"id": model_id, "samples": _npy(samples)},
            ).scalar_one()


@contextlib.contextmanager
def spinner(what: str, enabled: bool = True) -> Iterator[None]:
    """WHAT and the seconds it has taken, on stderr, until the block ends: a long server
    call (converting a model, score_into) is not silence."""
    if not enabled:
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            if done.wait(0.2):
                break
            print(f"\r{what} {frame} {time.monotonic() - started:.0f} s", end="", file=sys.stderr)

    # a terminal gets a spinner; a log gets one line before and one after
    thread = threading.Thread(target=spin, daemon=True) if sys.stderr.isatty() else None
    if thread is not None:
        thread.start()
    else:
        print(f"{what} ...", file=sys.stderr)
    try:
        yield
    finally:
        done.set()
        if thread is not None:
            thread.join()
        print(f"\r{what}: {time.monotonic() - started:.1f} s", file=sys.stderr)


def _npy(samples) -> bytes | None:
    if samples is None:
        return None
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(samples, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def models(target: EngineOrUrl) -> list[dict]:
    with _begin(target) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT name, version, runtime, labels, size, created, current, pinned, "
                "(SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(signature) k) "
                "AS signatures FROM pgml.models ORDER BY name, version"
            )
        )
        return [dict(r._mapping) for r in rows]


def stats(target: EngineOrUrl) -> list[dict]:
    """pgml.stats: per model version, what every backend and worker scored since the
    last reset (a WARNING, logged, when the server has no shared memory for it)."""
    with _begin(target) as conn:
        rows = conn.execute(sa.text("SELECT * FROM pgml.stats ORDER BY model, version"))
        return [dict(r._mapping) for r in rows]


def stats_dropped(target: EngineOrUrl) -> int | None:
    """Counts pgml.stats had no room for, or None: no shared memory (the server does not
    preload pgml_ext), so pgml.stats shows one session's scoring only."""
    with _begin(target) as conn:
        return conn.execute(sa.text("SELECT pgml.stats_dropped()")).scalar()


def describe(target: EngineOrUrl, name: str) -> list[dict]:
    """Every version of NAME with its signatures, runtimes (and why) and labels."""
    with _begin(target) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT version, runtime, runtimes, signature, labels, size, checksum, created, "
                "current, pinned FROM pgml.models WHERE name = :n ORDER BY version"
            ),
            {"n": name},
        )
        return [dict(r._mapping) for r in rows]


def delete_model(
    target: EngineOrUrl, name: str, version: int | None = None, force: bool = False
) -> int:
    """Delete VERSION of NAME (None: every version); the versions deleted. The pinned
    version only with FORCE (the newest then serves)."""
    with _begin(target) as conn:
        return conn.execute(
            sa.text("SELECT pgml.delete_model(:n, :v, force => :f)"),
            {"n": name, "v": version, "f": force},
        ).scalar_one()


def pin_model(target: EngineOrUrl, name: str, version: int | None) -> bool:
    """Pin NAME to VERSION; None unpins (the newest version serves again). True unless
    unpinning a model that was not pinned."""
    with _begin(target) as conn:
        if version is None:
            return bool(
                conn.execute(sa.text("SELECT pgml.unpin_model(:n)"), {"n": name}).scalar_one()
            )
        conn.execute(sa.text("SELECT pgml.pin_model(:n, :v)"), {"n": name, "v": version})
        return True


def rollback_model(target: EngineOrUrl, name: str) -> int:
    """Pin NAME to the version before the one serving now (``pgml.rollback_model``);
    returns that version."""
    with _begin(target) as conn:
        return conn.execute(sa.text("SELECT pgml.rollback_model(:n)"), {"n": name}).scalar_one()


def export_model(
    target: EngineOrUrl, name: str, out_dir: str | os.PathLike, version: int | None = None
) -> int:
    """Write the stored SavedModel of NAME (current or VERSION) back to OUT_DIR (a model
    registered as a .tflite file: OUT_DIR/model.tflite); returns the version. Needs
    pgml_admin: scorers cannot read model blobs."""
    from pathlib import Path

    with _begin(target) as conn:
        row = conn.execute(
            sa.text(
                "SELECT r.id, m.version, m.checksum, m.options ->> 'format' AS format "
                "FROM pgml_internal.model_version(:ref) r "
                "JOIN pgml.model_versions m ON m.id = r.id"
            ),
            {"ref": name if version is None else f"{name}@{version}"},
        ).one()
        blob = b"".join(
            conn.execute(
                sa.text("SELECT data FROM pgml.model_chunks WHERE model_id = :i ORDER BY seq"),
                {"i": row.id},
            ).scalars()
        )
    archive.verify(blob, row.checksum, f"model '{name}' v{row.version}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"'{out}' exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    if row.format == archive.FLATBUFFER:
        out.mkdir(exist_ok=True)
        (out / "model.tflite").write_bytes(blob)
    else:
        archive.unpack(blob, out)
    return row.version


def score_table(
    target: EngineOrUrl,
    model: str,
    table: str | None,
    column: str,
    into: str,
    key: str = "id",
    chunk_size: int = 5000,
    layout: str = "json",
    progress: bool = True,
    where: str | None = None,
    keep: Sequence[str] = (),
    query: str | None = None,
) -> int:
    """Score TABLE.COLUMN into table INTO with a progress bar: keyset chunks of
    CHUNK_SIZE rows, each committed, so a long job shows progress and an interrupted
    one keeps what is done (a re-run replaces the rows of the keys it scores). WHERE,
    a SQL condition on TABLE's columns, picks the rows; KEEP names columns of TABLE to
    write beside each answer. QUERY, a SELECT, stands for TABLE (a join, computed
    inputs): its rows are scored the same way."""
    if (table is None) == (query is None):
        raise ValueError("score takes a table or a query, not both")
    engine = engine_for(target)
    k, col = _ident(key), _ident(column)
    tbl = f"({query}) AS source" if query is not None else _qualified(table)
    picked = f"({where})" if where else "true"
    with _begin(engine) as conn:
        total = conn.execute(sa.text(f"SELECT count(*) FROM {tbl} WHERE {picked}")).scalar_one()
    written, last = 0, None
    kept = "".join(f", {_ident(c)}" for c in keep if c != key)
    what = table if query is None else "the query"
    with tqdm(total=total, unit="row", desc=f"scoring {what}", disable=not progress) as bar:
        while True:
            after = f"WHERE {picked}" + ("" if last is None else f" AND {k} > {_literal(last)}")
            with _begin(engine) as conn:
                # no bound parameters in these: a % in WHERE stays what it is
                upper = conn.execute(
                    sa.text(
                        f"SELECT {k} FROM {tbl} {after} ORDER BY {k} "
                        f"OFFSET {int(chunk_size) - 1} LIMIT 1"
                    )
                ).scalar()
                if upper is None:  # the last, partial chunk: up to the largest key
                    upper = conn.execute(sa.text(f"SELECT max({k}) FROM {tbl} {after}")).scalar()
                    if upper is None:
                        break
                bounds = f"{after} AND {k} <= {_literal(upper)}"
                n = conn.execute(
                    sa.text(
                        "SELECT pgml.score_into(:m, :source, :into, key => :key, "
                        "input => :col, chunk_size => :chunk, layout => :layout, keep => :keep)"
                    ),
                    {
                        "m": model,
                        "source": f"SELECT {k}, {col}{kept} FROM {tbl} {bounds}",
                        "into": into,
                        "key": key,
                        "col": column,
                        "chunk": min(chunk_size, 1000),
                        "layout": layout,
                        "keep": [c for c in keep if c != key] or None,
                    },
                ).scalar_one()
            written += n
            bar.update(n)
            last = upper
    return written


def _literal(value) -> str:
    """A key value as a SQL literal (PostgreSQL casts it to the key column's type)."""
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    return ".".join(_ident(p) for p in name.split("."))
