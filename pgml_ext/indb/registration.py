"""Registering a model inside the server: describe the uploaded SavedModel and check it.

Upload (client ``register_model`` or server-path ``pgml.load_model``) and description
run in one transaction, so a model is either fully registered or not at all.
"""

from __future__ import annotations

import json
import os

from pgml_ext.indb import archive, registry, runtimes
from pgml_ext.indb.errors import INVALID_PARAMETER, UNDEFINED_OBJECT, WRONG_OBJECT_TYPE, PgmlError
from pgml_ext.indb.model import model_dir
from pgml_ext.indb.signatures import Signature

_ROW = (
    "SELECT name, version, runtime, checksum, options::text AS options "
    "FROM pgml.model_versions WHERE id = $1"
)
_DESCRIBE = "UPDATE pgml.model_versions SET signatures = $2::jsonb, runtime = $3 WHERE id = $1"
_BEGIN = "SELECT pgml._begin_registration($1, $2, $3, $4, $5, $6::jsonb) AS id"
_CHUNK = "INSERT INTO pgml.model_chunks (model_id, seq, data) VALUES ($1, $2, $3)"


def _plpy():
    import plpy

    return plpy


def choose_runtime(requested: str) -> str:
    if requested in ("auto", "tensorflow"):
        return "tensorflow"
    raise PgmlError(
        f"unknown runtime '{requested}'",
        INVALID_PARAMETER,
        hint=f"Use 'auto' or one of: {', '.join(runtimes.RUNTIMES)}.",
    )


def finish(model_id: int) -> int:
    """Describe the uploaded blob's signatures and store them; return the version."""
    plpy = _plpy()
    rows = plpy.execute(registry.plan(_ROW, ["int8"]), [model_id])
    if not rows:
        raise PgmlError(f"no model upload with id {model_id}", UNDEFINED_OBJECT)
    row = rows[0]
    what = f"model '{row['name']}' v{row['version']}"
    data = registry.blob(model_id)
    archive.verify(data, row["checksum"], what)
    path = str(archive.unpack(data, model_dir(), row["checksum"]))
    runtime = choose_runtime(row["runtime"])
    from pgml_ext.indb.runtimes.tensorflow import TensorFlowRuntime

    described = TensorFlowRuntime(path, int(registry.setting("pgml.threads", "1"))).describe(path)
    _check_usable(what, described, json.loads(row["options"] or "{}"))
    plpy.execute(
        registry.plan(_DESCRIBE, ["int8", "text", "text"]),
        [model_id, json.dumps(described), runtime],
    )
    return row["version"]


def _check_usable(what: str, described: dict, options: dict) -> None:
    sigs = {k: Signature.from_json(k, v) for k, v in described.items()}
    if not sigs:
        raise PgmlError(
            f"{what} has no signatures",
            WRONG_OBJECT_TYPE,
            hint="Export with model.export(dir) or tf.saved_model.save(..., signatures=...).",
        )
    wanted = options.get("signature")
    if wanted and wanted not in sigs:
        raise PgmlError(
            f"{what} has no signature '{wanted}'",
            UNDEFINED_OBJECT,
            detail=f"Its signatures: {', '.join(sorted(sigs))}.",
        )


def load_from_path(
    name: str, path: str, runtime: str, labels: list[str] | None, options: dict | None
) -> int:
    """pgml.load_model: read a SavedModel directory on the server and register it."""
    plpy = _plpy()
    if not os.path.isdir(path):
        raise PgmlError(
            f"'{path}' is not a directory on the database server",
            INVALID_PARAMETER,
            hint="pgml.load_model reads the server's file system; from a client use "
            "pgml_ext.register_model(engine, name, local_dir) instead.",
        )
    choose_runtime(runtime)
    blob = archive.pack(path)
    model_id = plpy.execute(
        registry.plan(_BEGIN, ["text", "int8", "text", "text[]", "text", "text"]),
        [name, len(blob), archive.checksum(blob), labels, runtime, json.dumps(options or {})],
    )[0]["id"]
    insert = registry.plan(_CHUNK, ["int8", "int4", "bytea"])
    for seq, chunk in enumerate(archive.chunks(blob)):
        plpy.execute(insert, [model_id, seq, chunk])
    return finish(model_id)
