"""Per-backend cache of loaded models, keyed by (name, version, row id), LRU-bounded.

Every call resolves the model name to its current row (cheap, via a prepared plan), so
a new version committed by anyone is picked up at this backend's next statement.
"""

from __future__ import annotations

from collections import OrderedDict

from pgml_ext.indb import registry
from pgml_ext.indb.model import LoadedModel

_models: OrderedDict[tuple[str, int, int], LoadedModel] = OrderedDict()


def get(model: str) -> LoadedModel:
    row = registry.resolve(model)
    key = (row.name, row.version, row.id)
    loaded = _models.get(key)
    if loaded is not None:
        _models.move_to_end(key)
        return loaded
    loaded = LoadedModel.load(row)
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
    return n
