"""Entry points of the extension's PL/Python functions (each body is one call here).

The scoring functions take REF, the model reference pgml_internal.model_ref resolved in SQL
(see registry). NULL in gives NULL out; every failure becomes an ERROR with a SQLSTATE
(errors.reported).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pgml_ext.indb import bulk, cache, registration, registry, server, stats
from pgml_ext.indb.errors import (
    INVALID_PARAMETER,
    NULL_NOT_ALLOWED,
    PgmlError,
    reported,
    translate,
)
from pgml_ext.indb.signatures import tensor_from_packed

Input = bytes | str | np.ndarray | None  # a tf.Example, text, or a float4[] from tensor()


def predict(
    ref: str | None, data: Input, output: str | None = None, signature: str | None = None
) -> list[float] | None:
    if ref is None or data is None:
        return None
    try:
        with stats.scoring(ref):
            return cache.get(ref).predict(data, output, signature)
    except Exception as exc:
        raise translate(exc, ref) from None


def classify(
    ref: str | None, data: Input, signature: str | None = None, output: str | None = None
) -> str | None:
    if ref is None or data is None:
        return None
    try:
        with stats.scoring(ref):
            return cache.get(ref).top_class(data, signature, output)[1]
    except Exception as exc:
        raise translate(exc, ref) from None


def predict_class(
    ref: str | None, data: Input, signature: str | None = None, output: str | None = None
) -> int | None:
    if ref is None or data is None:
        return None
    try:
        with stats.scoring(ref):
            return cache.get(ref).top_class(data, signature, output)[0]
    except Exception as exc:
        raise translate(exc, ref) from None


def example(ref: str | None, document: str | None, signature: str | None = None) -> bytes | None:
    """pgml.example: a jsonb object (a row's to_jsonb, named values) as the tf.Example
    the model reads."""
    if ref is None or document is None:
        return None
    try:
        values = json.loads(document)
        if not isinstance(values, dict):
            raise PgmlError(
                'pgml.example takes a jsonb object of features: {"name": value, ...}',
                INVALID_PARAMETER,
                hint="A row: to_jsonb(t) or jsonb_build_object('age', age, ...).",
            )
        return cache.get(ref).example(values, signature)
    except Exception as exc:
        raise translate(exc, ref) from None


def native_plan(ref: str | None, is_example: bool, signature: str | None) -> list[str] | None:
    """For src/native.c: how rows of this model version and form may be scored in C, or
    None (then they all go through the functions above, which also report errors). A
    model that cannot be loaded raises here the error the row would get from them."""
    if ref is None:
        return None
    try:
        return cache.get(ref).native_plan(is_example, signature)
    except Exception as exc:
        raise translate(exc, ref) from None


def tensor(packed: bytes | None) -> np.ndarray | None:
    """A float4[] argument, packed by pgml_internal.tensor (C), as a numpy array."""
    if packed is None:
        return None
    try:
        return tensor_from_packed(packed)
    except Exception as exc:
        raise translate(exc) from None


def check_model_files(directory: str) -> None:
    """pgml_internal.check_model_files: LiteRT's verifier on the flatbuffers in DIRECTORY."""
    with reported():
        from pgml_ext.indb.runtimes.litert import verify_flatbuffers

        verify_flatbuffers(directory)


def predict_batch(
    ref: str | None,
    data: list | np.ndarray | None,
    output: str | None = None,
    signature: str | None = None,
) -> list | None:
    """Scores for many inputs in one runtime call: bytea[] or the rows of a float4[]."""
    if ref is None or data is None:
        return None
    with reported(ref):
        return bulk.predict_batch(ref, data, output, signature)


def top_class_batch(
    ref: str | None,
    data: list | np.ndarray | None,
    signature: str | None,
    want: str,
    output: str | None = None,
) -> list | None:
    if ref is None or data is None:
        return None
    with reported(ref):
        classes = bulk.top_classes_batch(ref, data, signature, output)
        pick = 1 if want == "label" else 0
        return [c[pick] if c is not None else None for c in classes]


def score_into(
    model: str,
    source: str,
    target: str,
    key: str,
    input_column: str | None,
    chunk_size: int,
    layout: str,
    keep: list[str] | None = None,
) -> int:
    with reported(model):
        given = {"model": model, "source": source, "target": target, "key": key}
        given |= {"chunk_size": chunk_size, "layout": layout}
        for name, value in given.items():
            if value is None:
                raise PgmlError(f"score_into's {name} must not be NULL", NULL_NOT_ALLOWED)
        ref = registry.model_ref(model)
        return bulk.score_into(ref, source, target, key, input_column, chunk_size, layout, keep)


def score_row(ref: str | None, data: Input, packed: bool = False) -> str | None:
    """pgml_internal.score_row: one row as score_into writes it (json), for the workers
    of a distributed score_into."""
    if ref is None or data is None:
        return None
    with reported(ref), stats.scoring(ref):
        return bulk.score_row(ref, tensor(data) if packed else data)


def finish_registration(model_id: int, samples: bytes | None = None) -> int:
    with reported():
        return registration.finish(model_id, samples)


def load_model(
    name: str, path: str, runtime: str, labels: list[str] | None, signature: str | None
) -> int:
    with reported(name):
        options = {"signature": signature} if signature else {}
        return registration.load_from_path(name, path, runtime, labels, options)


def cached_models() -> list[dict[str, Any]]:
    """The versions this backend loaded: in PL/Python (cache.py) or, with no Python,
    in C (src/native_model.c), one row per version."""
    models = {m.row.directory: m.info() for m in cache.loaded()}
    native: dict[str, float] = {}
    for r in server.plpy().execute("SELECT ref, load_ms FROM pgml_internal.native_models()"):
        native[r["ref"]] = native.get(r["ref"], 0.0) + r["load_ms"]
    for ref, load_ms in native.items():
        path = registry.directory(ref)
        if path in models:
            models[path]["load_ms"] = round(models[path]["load_ms"] + load_ms, 1)
            continue
        try:
            row = registry.read(ref)
        except PgmlError:
            continue  # its files were pruned since: nothing to show
        models[path] = {
            "name": row.name,
            "version": row.version,
            "runtime": "litert",
            "load_ms": round(load_ms, 1),
        }
    return list(models.values())


def backend_status() -> str:
    import json
    import os
    import sys

    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    native = json.loads(server.plpy().execute("SELECT pgml_internal.native_status() AS s")[0]["s"])
    return json.dumps(
        {
            **native,
            "tensorflow_imported": "tensorflow" in sys.modules,
            # LiteRT in this backend: its Python interpreter, or its C library (native.c)
            "litert_imported": "ai_edge_litert.interpreter" in sys.modules
            or native["litert_c_loaded"],
            "rss_mb": round(rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1),
            "cached_models": len(cache.loaded()),
        }
    )


def clear_cache() -> int:
    server.plpy().execute("SELECT pgml_internal.clear_native_cache()")
    return cache.clear()


def prune_model_files() -> list[str]:
    with reported():
        rows = server.plpy().execute(
            "SELECT id || '-' || pgml_internal.model_identity(id) AS name FROM pgml.model_versions"
        )
        return registry.prune({r["name"] for r in rows})
