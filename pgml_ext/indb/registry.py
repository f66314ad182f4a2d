"""Model rows, read through SPI from the pgml tables the extension created.

Lookups run inside STABLE functions, so SPI sees the calling statement's snapshot: a
version that commits while a statement runs is used from the next statement on, and
one statement never mixes versions. They go through SECURITY DEFINER accessors, so
members of pgml_scorer can score without SELECT on the model tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pgml_ext.indb import server
from pgml_ext.indb.errors import INVALID_PARAMETER, UNDEFINED_OBJECT, PgmlError

_plans: dict[str, Any] = {}

# Through SECURITY DEFINER functions (sql/pgml_ext.sql): scorers may load models
# without being able to read the model tables themselves.
_RESOLVE = "SELECT * FROM pgml._resolve($1, $2)"
_VERSIONS = "SELECT pgml._versions($1) AS v"
_CHUNKS = "SELECT data FROM pgml._model_chunks($1)"
_LITERT = "SELECT signature, data, checksum FROM pgml._model_litert($1)"
_SETTING = "SELECT current_setting($1, true) AS value"
_NOTHING = "SELECT 1"


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


def parse_ref(model: str) -> tuple[str, int | None]:
    """'mnist' -> ('mnist', None); 'mnist@3' -> ('mnist', 3): pin one version per call."""
    name, sep, version = model.partition("@")
    if not sep:
        return model, None
    if not version.isdigit():
        raise PgmlError(
            f"bad model reference '{model}'",
            INVALID_PARAMETER,
            hint="Use 'name' for the current version or 'name@N' for version N.",
        )
    return name, int(version)


def resolve(model: str) -> ModelRow:
    name, version = parse_ref(model)
    rows = server.plpy().execute(plan(_RESOLVE, ["text", "int4"]), [name, version])
    if not rows:
        known = server.plpy().execute(plan(_VERSIONS, ["text"]), [name])[0]["v"]
        if known:
            raise PgmlError(
                f"model '{name}' has no version {version}",
                UNDEFINED_OBJECT,
                detail=f"Versions: {', '.join(map(str, known))}.",
            )
        raise PgmlError(
            f"model '{name}' is not registered",
            UNDEFINED_OBJECT,
            hint="See SELECT name, version FROM pgml.models; register with "
            "pgml_ext.register_model(...) or pgml.load_model(name, path).",
        )
    r = rows[0]
    if r["signatures"] is None:
        raise PgmlError(f"model '{name}' v{r['version']} was never described", UNDEFINED_OBJECT)
    return ModelRow(
        id=r["id"],
        name=r["name"],
        version=r["version"],
        runtime=r["runtime"],
        signatures=json.loads(r["signatures"]),
        labels=r["labels"],
        options=json.loads(r["options"] or "{}"),
        checksum=r["checksum"],
        size=r["size"],
        runtimes=json.loads(r["runtimes"] or "{}"),
    )


def blob(model_id: int) -> bytes:
    rows = server.plpy().execute(plan(_CHUNKS, ["int8"]), [model_id])
    return b"".join(r["data"] for r in rows)


def litert_flatbuffers(model_id: int) -> list[tuple[str, bytes, str]]:
    """(signature, flatbuffer, sha256) for the signatures converted at registration."""
    rows = server.plpy().execute(plan(_LITERT, ["int8"]), [model_id])
    return [(r["signature"], r["data"], r["checksum"]) for r in rows]


def setting(name: str, default: str) -> str:
    value = server.plpy().execute(plan(_SETTING, ["text"]), [name])[0]["value"]
    return value if value not in (None, "") else default


def check_for_interrupts() -> None:
    """Run a trivial query: PostgreSQL checks for cancel/timeout while executing it and
    raises QueryCanceled (a plpy.SPIError) here if one is pending."""
    server.plpy().execute(plan(_NOTHING, []))
