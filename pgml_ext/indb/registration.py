"""Registering a model inside the server: describe the uploaded SavedModel and check it.

Upload (client ``register_model`` or server-path ``pgml.load_model``) and description
run in one transaction, so a model is either fully registered or not at all. The
SavedModel is unpacked into a private directory under the data directory, audited for
ops that reach outside the database (pgml_ext.indb.audit) before TensorFlow loads it,
and removed afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np

from pgml_ext.indb import archive, audit, registry, runtimes, server, signatures
from pgml_ext.indb.errors import (
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER,
    UNDEFINED_OBJECT,
    WRONG_OBJECT_TYPE,
    PgmlError,
    first_line,
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


def check_runtime(requested: str) -> str:
    if requested in ("auto", *runtimes.RUNTIMES):
        return requested
    raise PgmlError(
        f"unknown runtime '{requested}'",
        INVALID_PARAMETER,
        hint=f"Use 'auto' or one of: {', '.join(runtimes.RUNTIMES)}.",
    )


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
            if options.get("format") == archive.FLATBUFFER:
                found, described, outcomes = _describe_flatbuffer(what, data, row["runtime"])
                _check_usable(what, described, options)
            else:
                path = str(archive.unpack(data, os.path.join(workdir, "savedmodel")))
                found = _audit(what, path, options)
                described, outcomes = _describe(
                    what, path, row["runtime"], options, samples, workdir
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


@contextlib.contextmanager
def _readable(what: str, path: str) -> Iterator[None]:
    """Reading the SavedModel at PATH: one that protobuf or TensorFlow cannot read (a
    corrupt saved_model.pb, no variables/) is the user's to fix, not an internal error,
    and is said without the server's temporary path."""
    from google.protobuf.message import DecodeError

    try:
        yield
    except PgmlError:
        raise
    except Exception as e:
        # TensorFlow's errors (NotFoundError, DataLossError ...) come from its own module
        if not isinstance(e, DecodeError | OSError) and not type(e).__module__.startswith(
            "tensorflow"
        ):
            raise
        why = first_line(e).replace(path + "/", "").replace(path, "the SavedModel")
        raise PgmlError(
            f"{what} is not a SavedModel TensorFlow can read: {why}",
            INVALID_PARAMETER,
            hint="Export it again (model.export(dir) or tf.saved_model.save(obj, dir)): "
            "the directory holds saved_model.pb and variables/.",
        ) from None


def _audit(what: str, path: str, options: dict) -> dict:
    """The op audit (see audit.py): refused unless a superuser opted in."""
    with _readable(what, path):
        found = audit.audit(path)
    if found["unsafe_ops"]:
        if not options.get("allow_unsafe_ops"):
            raise PgmlError(
                f"{what} uses ops that reach outside the database: "
                + ", ".join(found["unsafe_ops"]),
                INSUFFICIENT_PRIVILEGE,
                detail="TensorFlow would run them with the database server's "
                "operating-system rights (files, network, Python).",
                hint="Export the model without them; or, as a superuser who trusts it, "
                "register it with allow_unsafe_ops.",
            )
        found["allowed_by"] = "superuser opt-in (allow_unsafe_ops)"
    return found


def _describe_flatbuffer(what: str, flatbuffer: bytes, runtime: str):
    """(audit, signatures, outcomes) of a LiteRT flatbuffer registered as it is (a .tflite
    file): LiteRT serves every signature; there is no TensorFlow to check it against."""
    from pgml_ext.indb.conversion import Outcome, microseconds_per_row, sample_inputs
    from pgml_ext.indb.runtimes.litert import LiteRTRuntime, flatbuffer_signatures

    if check_runtime(runtime) == "tensorflow":
        raise PgmlError(
            f"{what} is a LiteRT flatbuffer (.tflite): it runs on LiteRT only",
            WRONG_OBJECT_TYPE,
            hint="Register it with runtime 'auto' or 'litert', or register the SavedModel "
            "it was converted from to run it on TensorFlow.",
        )
    described = flatbuffer_signatures(what, flatbuffer)
    lite = LiteRTRuntime({name: flatbuffer for name in described}, threads())
    outcomes = []
    for name, spec in sorted(described.items()):
        sig = Signature.from_json(name, spec)
        try:
            row_us = microseconds_per_row(
                lambda feeds, n=name: lite.run(n, feeds), sample_inputs(sig, None)[0]
            )
        except Exception:  # a fixed batch size or odd input: scored, just not timed
            row_us = None
        outcomes.append(
            Outcome(
                name,
                "litert",
                "registered as a LiteRT flatbuffer (.tflite): served as given, no "
                "TensorFlow to compare with",
                flatbuffer=flatbuffer,
                row_us=row_us,
            )
        )
    found = {"unsafe_ops": [], "ops": None, "format": archive.FLATBUFFER}
    return found, described, outcomes


def _describe(
    what: str, path: str, runtime: str, options: dict, samples: bytes | None, workdir: str
):
    """(signatures, each with the plan it runs by; per-signature runtime outcomes) of the
    SavedModel at PATH. WORKDIR takes what conversion writes."""
    requested = check_runtime(runtime)
    from pgml_ext.indb.runtimes.tensorflow import TensorFlowRuntime

    with _readable(what, path):
        tf_runtime = TensorFlowRuntime(path, threads())
        described = tf_runtime.describe(path)
    _check_usable(what, described, options)
    outcomes = _choose_runtimes(what, path, described, requested, tf_runtime, samples, workdir)
    for o in outcomes:
        if o.plan is not None:
            described[o.signature]["plan"] = o.plan
    return described, outcomes


def _choose_runtimes(what, path, described, requested, tf_runtime, samples, workdir):
    from pgml_ext.indb.conversion import Outcome, convert_signature

    sigs = [Signature.from_json(k, v) for k, v in sorted(described.items())]
    if requested == "tensorflow":
        return [Outcome(s.name, "tensorflow", "runtime 'tensorflow' was requested") for s in sigs]
    user = np.load(io.BytesIO(samples), allow_pickle=False) if samples else None
    outcomes = [convert_signature(path, s, tf_runtime, user, workdir) for s in sigs]
    if requested == "litert" and not any(o.runtime == "litert" for o in outcomes):
        raise PgmlError(
            f"{what} cannot run on LiteRT",
            WRONG_OBJECT_TYPE,
            detail="; ".join(f"{o.signature}: {o.reason}" for o in outcomes),
            hint="Register it with runtime => 'auto' or 'tensorflow'.",
        )
    return outcomes


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
