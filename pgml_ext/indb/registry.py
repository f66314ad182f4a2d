"""Model versions as this server's files, and the few queries the scoring code runs.

``pgml_internal.model_ref(model)`` (src/pgml_ext.c) resolves a model reference under the
calling statement's snapshot and returns the name of the directory (under
server.models_root()) where that version's files live on this server, writing them
from the pgml tables the first time (and checking each against the sha256 stored at
registration as it does). Scoring then reads files only, with no query: that is what
lets it run in parallel workers. A version's files never change: the directory is
named by row id and the SHA-256 of its model.json, which holds every blob's checksum,
the labels and the options; it is checked again when a process first reads it. Only
the server writes there (0700, under the data directory), one process per version at
a time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any

from pgml_ext.indb import server
from pgml_ext.indb.errors import INVALID_PARAMETER, QUERY_CANCELED, UNDEFINED_FILE, PgmlError

_plans: dict[str, Any] = {}

_MODEL_REF = "SELECT pgml_internal.model_ref($1) AS ref"
_NOTHING = "SELECT 1"
_DIRECTORY = re.compile(r"[0-9]+-[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelRow:
    id: int
    name: str
    version: int
    runtime: str
    signatures: dict[str, Any]
    labels: list[str] | None
    options: dict[str, Any]
    checksum: str
    size: int
    runtimes: dict[str, Any]  # signature -> {"runtime": ..., "reason": ...}
    litert: dict[str, Any]  # signature -> {"file": ..., "checksum": ...}
    directory: str

    def runtime_of(self, signature: str) -> str:
        return self.runtimes.get(signature, {}).get("runtime", "tensorflow")

    @property
    def ref(self) -> str:
        return f"{self.name} v{self.version}"


def plan(query: str, types: list[str]):
    plan = _plans.get(query)
    if plan is None:
        plan = _plans[query] = server.plpy().prepare(query, types)
    return plan


def model_ref(model: str) -> str:
    """pgml_internal.model_ref through SPI, for the functions that run queries anyway."""
    return server.plpy().execute(plan(_MODEL_REF, ["text"]), [model])[0]["ref"]


_NOT_A_REF = PgmlError(
    "not a model reference",
    INVALID_PARAMETER,
    hint="Call pgml.predict/classify/predict_class with a model name; the "
    "pgml_internal functions are internal.",
)


def check_ref(ref: str) -> None:
    """REF must come from pgml_internal.model_ref in this statement (src/pgml_ext.c): the
    internal functions take no path of anyone's making, nor a deleted version."""
    if not server.ref_issued(ref):
        raise _NOT_A_REF


def directory(ref: str) -> str:
    """The directory of REF, the name pgml_internal.model_ref hands out (never a path)."""
    if not _DIRECTORY.fullmatch(ref):
        raise _NOT_A_REF
    return os.path.join(server.models_root(), ref)


def read(ref: str) -> ModelRow:
    """The model row in the directory of REF, which must be a name pgml_internal.model_ref hands
    out, its model.json checked against the directory's name."""
    path = directory(ref)
    try:
        with open(os.path.join(path, "model.json"), "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != ref.split("-", 1)[1]:
            raise ValueError("model.json does not match the directory's identity")
        r = json.loads(raw)
    except (OSError, ValueError) as e:
        shutil.rmtree(path, ignore_errors=True)
        raise PgmlError(
            f"this server's copy of the model is missing or damaged ({e})",
            UNDEFINED_FILE,
            hint="Run the statement again: its files are written afresh.",
        ) from None
    return row_from_document(r, path)


def row_from_document(r: dict[str, Any], path: str) -> ModelRow:
    """The row in model.json (pgml_internal.model_document), its files in PATH."""
    return ModelRow(
        id=r["id"],
        name=r["name"],
        version=r["version"],
        runtime=r["runtime"],
        signatures=r["signatures"],
        labels=r["labels"],
        options=r["options"] or {},
        checksum=r["checksum"],
        size=r["size"],
        runtimes=r["runtimes"] or {},
        litert=r["litert"] or {},
        directory=path,
    )


def savedmodel(row: ModelRow) -> bytes:
    """The SavedModel archive, checked against its checksum again: the file may have
    been damaged since it was written (a damaged copy is removed: the next statement
    writes it again from the database)."""
    with open(os.path.join(row.directory, "savedmodel.tar"), "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != row.checksum:
        shutil.rmtree(row.directory, ignore_errors=True)
        raise PgmlError(
            f"this server's copy of model '{row.name}' v{row.version} is damaged",
            UNDEFINED_FILE,
            hint="Run the statement again: its files are written afresh from the database.",
        )
    return data


def litert_files(row: ModelRow) -> dict[str, str]:
    """signature -> flatbuffer path, for the signatures converted at registration.
    LiteRT maps the file: all backends share one copy of the weights in memory."""
    return {sig: os.path.join(row.directory, entry["file"]) for sig, entry in row.litert.items()}


class version_lock:
    """``with version_lock(directory):`` the one writer of a version's files (the same
    flock as src/pgml_ext.c takes), waited for with cancels honoured."""

    def __init__(self, directory: str) -> None:
        self.path = directory.rstrip("/") + ".lock"
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    check_for_interrupts()
                    time.sleep(0.01)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def prune(current: set[str]) -> list[str]:
    """Remove this database's model directories whose version is not in CURRENT
    ('<id>-<identity>' names), and what writers that died left behind (their lock is
    free); return the directories removed."""
    root = server.models_root()
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    gone = []
    for name in sorted(names):
        path = os.path.join(root, name)
        base = name.split(".", 1)[0]
        if _DIRECTORY.fullmatch(base) and base not in current:
            remove = True
        elif ".tmp" in name or (name.endswith(".lock") and not _DIRECTORY.fullmatch(base)):
            remove = _unlocked(os.path.join(root, base))
        else:
            remove = False
        if remove and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            gone.append(name)
        elif remove:
            os.unlink(path)
    return gone


def _unlocked(directory: str) -> bool:
    """Nobody is writing DIRECTORY's version now (so its leftovers are abandoned)."""
    try:
        fd = os.open(directory + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def check_for_interrupts() -> None:
    """Act on a pending cancel or statement_timeout. Serially: a trivial query, during
    which PostgreSQL raises QueryCanceled with its own message. In parallel mode, where
    PL/Python may not query: its flags, read directly."""
    if not server.in_parallel_mode():
        server.plpy().execute(plan(_NOTHING, []))
    elif server.cancel_pending():
        raise PgmlError("canceling statement: cancel or timeout", QUERY_CANCELED)
