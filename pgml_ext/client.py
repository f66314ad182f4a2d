"""Client side: install the extension into a database and upload models to it."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tqdm import tqdm

from pgml_ext.indb import archive

EngineOrUrl = Engine | Connection | str


def engine_for(target: EngineOrUrl) -> Engine | Connection:
    return sa.create_engine(target) if isinstance(target, str) else target


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


def install(target: EngineOrUrl) -> str:
    """Create or update the extension in that database; returns the installed version.

    The server must have the extension's files (``make install``) and the Python
    packages on PL/Python's path (``make setup``); see the README. Usable from an
    Alembic migration: ``pgml_ext.install(op.get_bind())``.
    """
    with _begin(target) as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pgml_ext CASCADE"))
        installed, default = conn.execute(
            sa.text(
                "SELECT e.extversion, a.default_version FROM pg_extension e "
                "JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'pgml_ext'"
            )
        ).one()
        if installed != default:
            conn.execute(sa.text("ALTER EXTENSION pgml_ext UPDATE"))
            installed = default
    return installed


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
) -> int:
    """Upload a SavedModel into the database and return its new version.

    The upload and the server's check of the model (its signatures are read there) are
    one transaction: if anything fails, nothing is registered. ``signature`` names the
    signature to use by default; ``feature_map`` maps input names to tf.Example feature
    names when they differ. ``runtime``: ``"auto"`` converts each signature to LiteRT
    and keeps the conversion only where it matches TensorFlow on sample inputs (the
    model's own signature filled with random values, plus ``samples``, an array of
    inputs, if given); ``"litert"`` requires that, ``"tensorflow"`` skips it.
    """
    blob = archive.pack(saved_model_dir)
    options = {k: v for k, v in {"signature": signature, "feature_map": feature_map}.items() if v}
    parts = archive.chunks(blob)
    show = progress if progress is not None else len(blob) > 4 * archive.CHUNK_SIZE
    with _begin(target) as conn:
        model_id = conn.execute(
            sa.text(
                "SELECT pgml._begin_registration(:name, :size, :checksum, :labels, :runtime, "
                "CAST(:options AS jsonb))"
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
        insert = sa.text(
            "INSERT INTO pgml.model_chunks (model_id, seq, data) VALUES (:id, :seq, :data)"
        )
        with tqdm(
            total=len(blob), unit="B", unit_scale=True, desc=f"uploading {name}", disable=not show
        ) as bar:
            for seq, chunk in enumerate(parts):
                conn.execute(insert, {"id": model_id, "seq": seq, "data": chunk})
                bar.update(len(chunk))
        return conn.execute(
            sa.text("SELECT pgml._finish_registration(:id, :samples)"),
            {"id": model_id, "samples": _npy(samples)},
        ).scalar_one()


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
