"""What registration learns of a model: its op audit, its signatures, and the runtime
each signature runs on (LiteRT where conversion scores like TensorFlow).

This is the only part of registration that runs TensorFlow, the converter or LiteRT
on an uploaded model, and it runs in a child process of the backend (child.py), never
in the backend itself: TensorFlow must not share a process with PostgreSQL's JIT
(src/jit_guard.c), and a converter that crashes on a hostile graph takes only the
child down. Nothing here queries the database.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import numpy as np

from pgml_ext.indb import archive, audit, runtimes
from pgml_ext.indb.errors import (
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER,
    UNDEFINED_OBJECT,
    WRONG_OBJECT_TYPE,
    PgmlError,
    first_line,
)
from pgml_ext.indb.signatures import Signature


def savedmodel(
    what: str,
    path: str,
    runtime: str,
    options: dict,
    samples: bytes | None,
    workdir: str,
    threads: int,
):
    """(audit, signatures with their plans, outcomes) of the SavedModel at PATH."""
    found = _audit(what, path, options)
    described, outcomes = _describe(what, path, runtime, options, samples, workdir, threads)
    return found, described, outcomes


def flatbuffer(what: str, data: bytes, runtime: str, options: dict, threads: int):
    """(audit, signatures, outcomes) of a LiteRT flatbuffer registered as it is."""
    found, described, outcomes = _describe_flatbuffer(what, data, runtime, threads)
    check_usable(what, described, options)
    return found, described, outcomes


def check_runtime(requested: str) -> str:
    if requested in ("auto", *runtimes.RUNTIMES):
        return requested
    raise PgmlError(
        f"unknown runtime '{requested}'",
        INVALID_PARAMETER,
        hint=f"Use 'auto' or one of: {', '.join(runtimes.RUNTIMES)}.",
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


def _describe_flatbuffer(what: str, flatbuffer: bytes, runtime: str, threads: int):
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
    lite = LiteRTRuntime({name: flatbuffer for name in described}, threads)
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
    what: str,
    path: str,
    runtime: str,
    options: dict,
    samples: bytes | None,
    workdir: str,
    threads: int,
):
    """(signatures, each with the plan it runs by; per-signature runtime outcomes) of the
    SavedModel at PATH. WORKDIR takes what conversion writes."""
    requested = check_runtime(runtime)
    from pgml_ext.indb.runtimes.tensorflow import TensorFlowRuntime

    with _readable(what, path):
        tf_runtime = TensorFlowRuntime(path, threads)
        described = tf_runtime.describe(path)
    check_usable(what, described, options)
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


def check_usable(what: str, described: dict, options: dict) -> None:
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
