"""Registering a model inside the server: describe the uploaded SavedModel and check it.

Upload (client ``register_model`` or server-path ``pgml.load_model``) and description
run in one transaction, so a model is either fully registered or not at all. The
SavedModel is unpacked into a private directory under the data directory, audited for
ops that reach outside the database (pgml_ext.indb.audit) before TensorFlow loads it,
and removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from pgml_ext.indb import archive, child, registry, server, signatures
from pgml_ext.indb.describing import check_runtime
from pgml_ext.indb.errors import (
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER,
    UNDEFINED_OBJECT,
    PgmlError,
)
from pgml_ext.indb.model import threads
from pgml_ext.indb.signatures import Signature

_ROW = (
    "SELECT name, version, runtime, checksum, labels, options::text AS options "
    "FROM pgml.model_versions WHERE id = $1 AND signatures IS NULL"
)
_DESCRIBE = (
    "UPDATE pgml.model_versions SET signatures = $2::jsonb, runtime = $3, runtimes = $4::jsonb, "
    "audit = $5::jsonb, labels = $6 WHERE id = $1"
)
_PREVIOUS_LABELS = (
    "SELECT version, labels FROM pgml.model_versions WHERE name = $1 AND version < $2 "
    "AND signatures IS NOT NULL ORDER BY version DESC LIMIT 1"
)
_PLANS = "UPDATE pgml.model_versions SET native_plans = $2::jsonb WHERE id = $1"
_DOCUMENT = (
    "SELECT pgml_internal.model_document($1) AS document, "
    "pgml_internal.model_identity($1) AS identity"
)
_LITERT = (
    "INSERT INTO pgml.model_litert (model_id, signature, data, checksum) VALUES ($1, $2, $3, $4)"
)
_CHECK_NAME = "SELECT pgml_internal.check_model_name($1)"
_BEGIN = "SELECT pgml_internal.begin_registration($1, $2, $3, $4, $5, $6::jsonb) AS id"
_CHUNKS = "SELECT data FROM pgml.model_chunks WHERE model_id = $1 ORDER BY seq"
_CHUNK = "SELECT pgml_internal.upload_chunk($1, $2, $3)"
_FINISH = "SELECT pgml_internal.finish_registration($1) AS version"
_MAY_READ_FILES = "SELECT pg_has_role(current_user, 'pg_read_server_files', 'USAGE') AS ok"


def finish(model_id: int, samples: bytes | None = None) -> int:
    """Describe the uploaded blob, convert what converts to LiteRT, store it all;
    return the version."""
    plpy = server.plpy()
    rows = plpy.execute(registry.plan(_ROW, ["int8"]), [model_id])
    if not rows:
        raise PgmlError(f"no model upload in progress with id {model_id}", UNDEFINED_OBJECT)
    row = rows[0]
    what = f"model '{row['name']}' v{row['version']}"
    chunks = plpy.execute(registry.plan(_CHUNKS, ["int8"]), [model_id])
    data = b"".join(r["data"] for r in chunks)
    archive.verify(data, row["checksum"], what)
    options = json.loads(row["options"] or "{}")
    root = server.models_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    mine = os.path.join(root, f"registering-{os.getpid()}")  # its lock keeps prune off
    with registry.version_lock(mine):
        workdir = tempfile.mkdtemp(prefix=os.path.basename(mine) + ".tmp", dir=root)
        try:
            described, found, outcomes = _describe_in_child(
                what, row, data, options, samples, workdir
            )
            labels = _labels(what, row, described, options)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    insert = registry.plan(_LITERT, ["int8", "text", "bytea", "text"])
    for o in outcomes:
        if o.flatbuffer is not None:
            plpy.execute(
                insert, [model_id, o.signature, o.flatbuffer, archive.checksum(o.flatbuffer)]
            )
    used = sorted({o.runtime for o in outcomes})
    plpy.execute(
        registry.plan(_DESCRIBE, ["int8", "text", "text", "text", "text", "text[]"]),
        [
            model_id,
            json.dumps(described),
            "+".join(used),
            json.dumps({o.signature: o.note() for o in outcomes}),
            json.dumps(found),
            labels,
        ],
    )
    _store_native_plans(model_id)
    return row["version"]


def _describe_in_child(
    what: str, row: dict, data: bytes, options: dict, samples: bytes | None, workdir: str
):
    """(signatures, audit, outcomes) of the uploaded DATA, worked out by a child process
    (child.py: TensorFlow never loads into the backend)."""
    job = {
        "what": what,
        "runtime": row["runtime"],
        "options": options,
        "threads": threads(),
        "samples": None,
    }
    if options.get("format") == archive.FLATBUFFER:
        job["kind"], job["path"] = "flatbuffer", os.path.join(workdir, "model.tflite")
        with open(job["path"], "wb") as f:
            f.write(data)
    else:
        job["kind"] = "savedmodel"
        job["path"] = str(archive.unpack(data, os.path.join(workdir, "savedmodel")))
    if samples:
        job["samples"] = os.path.join(workdir, "samples.npy")
        with open(job["samples"], "wb") as f:
            f.write(samples)
    answer = child.run(job, workdir, what)
    return answer["described"], answer["found"], child.read_outcomes(answer, workdir)


def _store_native_plans(model_id: int) -> None:
    """The plans src/native_model.c scores this version by, worked out once here from
    the row as scoring reads it (model.json), so that no backend needs Python to load
    them."""
    from pgml_ext.indb.model import LoadedModel

    plpy = server.plpy()
    found = plpy.execute(registry.plan(_DOCUMENT, ["int8"]), [model_id])[0]
    loaded = LoadedModel(registry.row_from_document(json.loads(found["document"]), ""))
    # made for this row: any later change to it (labels, options) changes its identity
    plans = {"identity": found["identity"], **loaded.native_plans()}
    plpy.execute(registry.plan(_PLANS, ["int8", "text"]), [model_id, json.dumps(plans)])


def _labels(what: str, row: dict, described: dict, options: dict) -> list[str] | None:
    """The labels this version keeps: those given (checked against its classes); none
    if an empty list was given; else the previous version's, when they name every class
    of this one (a NOTICE says so, or says why not): re-registering without --labels
    used to change answers from 'seven' to '7'."""
    given = row["labels"]
    if given is not None:
        _check_labels(what, described, given, options)
        return given or None
    plpy = server.plpy()
    found = plpy.execute(
        registry.plan(_PREVIOUS_LABELS, ["text", "int4"]), [row["name"], row["version"]]
    )
    if not found or not found[0]["labels"]:
        return None
    previous, labels = found[0]["version"], list(found[0]["labels"])
    try:
        _check_labels(what, described, labels, options)
    except PgmlError as e:
        plpy.notice(
            f"pgml: {what} does not keep the labels of v{previous}: {e.message}",
            hint="Register it with labels that name its classes.",
        )
        return None
    plpy.notice(
        f"pgml: {what} keeps the labels of v{previous} ({', '.join(labels[:5])}"
        + (", ..." if len(labels) > 5 else "")
        + ")",
        hint="Register it with labels => '{}' (labels=[] in Python) to have none.",
    )
    return labels


def _check_labels(what: str, described: dict, labels: list[str] | None, options: dict) -> None:
    """Labels name the classes in score order: one per score of every signature that
    would be scored (the registered one, else all). A wrong count used to be taken, and
    classify then answered a mix of labels and indexes."""
    if not labels:
        return
    if len(set(labels)) != len(labels):
        raise PgmlError(f"{what}: labels must differ from each other", INVALID_PARAMETER)
    wanted = options.get("signature")
    for name, spec in sorted(described.items()):
        if wanted and name != wanted:
            continue
        sig = Signature.from_json(name, spec)
        try:
            output = signatures.score_output(sig, what, None)
        except PgmlError:
            continue  # several outputs and no usual name: pgml.predict names one
        shape = sig.outputs[output].get("shape") or []
        width = shape[-1] if len(shape) == 2 else None
        if width is not None and width != len(labels):
            raise PgmlError(
                f"{what} scores {width} classes, but {len(labels)} labels were given",
                INVALID_PARAMETER,
                detail=f"Signature '{name}' output '{output}' has shape {shape}.",
                hint=f"Give {width} labels, in the order of the scores, or none"
                + (" (a regressor has no classes)." if width == 1 else "."),
            )


def load_from_path(
    name: str, path: str, runtime: str, labels: list[str] | None, options: dict | None
) -> int:
    """pgml.load_model: read a SavedModel directory on the server and register it."""
    plpy = server.plpy()
    if not plpy.execute(registry.plan(_MAY_READ_FILES, []))[0]["ok"]:
        raise PgmlError(
            "pgml.load_model reads the server's file system: superusers and members of "
            "pg_read_server_files only",
            INSUFFICIENT_PRIVILEGE,
            hint="Upload from a client with pgml_ext.register_model(engine, name, dir), "
            "or GRANT pg_read_server_files to this role.",
        )
    is_flatbuffer = path.endswith(".tflite") and os.path.isfile(path)
    if not os.path.isdir(path) and not is_flatbuffer:
        raise PgmlError(
            f"'{path}' is not a directory (or a .tflite file) on the database server",
            INVALID_PARAMETER,
            hint="pgml.load_model reads the server's file system; from a client use "
            "pgml_ext.register_model(engine, name, local_dir) instead.",
        )
    check_runtime(runtime)
    plpy.execute(registry.plan(_CHECK_NAME, ["text"]), [name])
    if is_flatbuffer:
        options = {**(options or {}), "format": archive.FLATBUFFER}
    try:
        if is_flatbuffer:
            with open(path, "rb") as f:
                blob = f.read()
        else:
            blob = archive.pack(path)
    except PermissionError as e:
        import getpass

        raise PgmlError(
            f"the database server's operating-system user ({getpass.getuser()}) cannot "
            f"read '{e.filename or path}'",
            INSUFFICIENT_PRIVILEGE,
            hint="Make the SavedModel readable by that user (chmod, chown), or upload it "
            "from a client with pgml_ext.register_model(engine, name, local_dir).",
        ) from None
    model_id = plpy.execute(
        registry.plan(_BEGIN, ["text", "int8", "text", "text[]", "text", "text"]),
        [name, len(blob), archive.checksum(blob), labels, runtime, json.dumps(options or {})],
    )[0]["id"]
    insert = registry.plan(_CHUNK, ["int8", "int4", "bytea"])
    for seq, chunk in enumerate(archive.chunks(blob)):
        plpy.execute(insert, [model_id, seq, chunk])
    # as the extension's owner, like a client's upload (SECURITY DEFINER)
    return plpy.execute(registry.plan(_FINISH, ["int8"]), [model_id])[0]["version"]
