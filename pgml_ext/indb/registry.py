"""Model versions as this server's files, and the few queries the scoring code runs.

``pgml._model_ref(model)`` (src/pgml_ext.c) resolves a model reference under the
calling statement's snapshot and returns the directory where that version's files
live on this server, writing them from the pgml tables the first time (and checking
each against the sha256 stored at registration as it does). Scoring then reads files
only, with no query: that is what lets it run in parallel workers. A version's files
never change: the directory is named by row id and checksum.
"""

from __future__ import annotations

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

_MODEL_REF = "SELECT pgml._model_ref($1) AS ref"
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
    """pgml._model_ref through SPI, for the functions that run queries anyway."""
    return server.plpy().execute(plan(_MODEL_REF, ["text"]), [model])[0]["ref"]


def read(ref: str) -> ModelRow:
    """The model row in directory REF, which must be one pgml._model_ref hands out."""
    root, name = os.path.split(ref)
    if root != server.models_root() or not _DIRECTORY.fullmatch(name):
        raise PgmlError(
            "not a model reference",
            INVALID_PARAMETER,
            hint="Call pgml.predict/classify/predict_class with a model name; the "
            "pgml._* functions are internal.",
        )
    try:
        with open(os.path.join(ref, "model.json"), encoding="utf-8") as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        shutil.rmtree(ref, ignore_errors=True)
        raise PgmlError(
            f"the model files in {ref} are missing or damaged ({e})",
            UNDEFINED_FILE,
            hint="Run the statement again: its files are written afresh.",
        ) from None
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
        directory=ref,
    )


def savedmodel(row: ModelRow) -> bytes:
    """The SavedModel archive (its checksum was checked when the file was written)."""
    with open(os.path.join(row.directory, "savedmodel.tar"), "rb") as f:
        return f.read()


def litert_files(row: ModelRow) -> dict[str, str]:
    """signature -> flatbuffer path, for the signatures converted at registration.
    LiteRT maps the file: all backends share one copy of the weights in memory."""
    return {sig: os.path.join(row.directory, entry["file"]) for sig, entry in row.litert.items()}


def prune(current: set[str]) -> list[str]:
    """Remove this database's model directories whose version is not in CURRENT
    ('<id>-<checksum>' names), and writes abandoned over an hour ago; return them."""
    root = server.models_root()
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    gone = []
    for name in sorted(names):
        path = os.path.join(root, name)
        stale = ".tmp" in name and time.time() - os.path.getmtime(path) > 3600
        if (_DIRECTORY.fullmatch(name) and name not in current) or stale:
            shutil.rmtree(path, ignore_errors=True)
            gone.append(name)
    return gone


def check_for_interrupts() -> None:
    """Act on a pending cancel or statement_timeout. Serially: a trivial query, during
    which PostgreSQL raises QueryCanceled with its own message. In parallel mode, where
    PL/Python may not query: its flags, read directly."""
    if not server.in_parallel_mode():
        server.plpy().execute(plan(_NOTHING, []))
    elif server.cancel_pending():
        raise PgmlError("canceling statement: cancel or timeout", QUERY_CANCELED)
