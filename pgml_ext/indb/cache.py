"""Per-backend cache of loaded models, keyed by (name, version, row id), LRU-bounded.

A model name is resolved to its current row once per statement (the lookup sees the
statement's snapshot), so a new version committed by anyone is used from this
backend's next statement on, and one statement never mixes versions.
"""

from __future__ import annotations

from collections import OrderedDict

from pgml_ext.indb import registry, statement
from pgml_ext.indb.model import LoadedModel

_models: OrderedDict[tuple[str, int, int], LoadedModel] = OrderedDict()
_this_statement: dict[str, tuple[int, LoadedModel]] = {}


def get(model: str) -> LoadedModel:
    key = statement.key()
    hit = _this_statement.get(model)
    if hit is not None and key is not None and hit[0] == key:
        return hit[1]
    loaded = _resolve(model)
    if key is not None:
        if len(_this_statement) > 64:
            _this_statement.clear()
        _this_statement[model] = (key, loaded)
    return loaded


def _resolve(model: str) -> LoadedModel:
    row = registry.resolve(model)
    key = (row.name, row.version, row.id)
    loaded = _models.get(key)
    if loaded is not None:
        _models.move_to_end(key)
        return loaded
    loaded = LoadedModel(row)
    _models[key] = loaded
    limit = max(1, int(registry.setting("pgml.model_cache_size", "4")))
    while len(_models) > limit:
        _models.popitem(last=False)
    return loaded


def loaded() -> list[LoadedModel]:
    return list(_models.values())


def clear() -> int:
    n = len(_models)
    _models.clear()
    _this_statement.clear()
    return n
