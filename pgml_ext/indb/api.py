"""Entry points of the extension's PL/Python functions (each body is one call here).

NULL in gives NULL out; every failure becomes an ERROR with a SQLSTATE (errors.reported).
"""

from __future__ import annotations

from typing import Any

from pgml_ext.indb import cache, registration
from pgml_ext.indb.errors import reported

Input = bytes | list | None


def predict(
    model: str | None, data: Input, output: str | None = None, signature: str | None = None
) -> list[float] | None:
    if model is None or data is None:
        return None
    with reported(model):
        return cache.get(model).predict(data, output, signature)


def classify(model: str | None, data: Input, signature: str | None = None) -> str | None:
    if model is None or data is None:
        return None
    with reported(model):
        return cache.get(model).top_class(data, signature)[1]


def predict_class(model: str | None, data: Input, signature: str | None = None) -> int | None:
    if model is None or data is None:
        return None
    with reported(model):
        return cache.get(model).top_class(data, signature)[0]


def finish_registration(model_id: int) -> int:
    with reported():
        return registration.finish(model_id)


def load_model(
    name: str, path: str, runtime: str, labels: list[str] | None, signature: str | None
) -> int:
    with reported(name):
        options = {"signature": signature} if signature else {}
        return registration.load_from_path(name, path, runtime, labels, options)


def cached_models() -> list[dict[str, Any]]:
    return [m.info() for m in cache.loaded()]


def clear_cache() -> int:
    return cache.clear()
