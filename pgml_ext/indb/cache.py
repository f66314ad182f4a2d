"""Per-backend cache of loaded models, keyed by their reference, LRU-bounded.

A reference (from pgml_internal.model_ref) names one version's files, so a version committed
by anyone gets a new reference and is loaded from the next statement on, while a
statement that started earlier keeps the one it resolved.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from pgml_ext.indb import registry, server, stats
from pgml_ext.indb.model import LoadedModel

_models: OrderedDict[str, LoadedModel] = OrderedDict()
_last: tuple[str, LoadedModel] | None = None  # the most recent: every row of a statement


def get(ref: str) -> LoadedModel:
    """The model of REF, which pgml_internal.model_ref must have handed out in this
    statement: a deleted or unpinned version, or a forged reference, is refused even
    when its model is still loaded here."""
    global _last
    registry.check_ref(ref)
    last = _last
    if last is not None and last[0] == ref:
        return last[1]
    loaded = _models.get(ref)
    if loaded is not None:
        _models.move_to_end(ref)
    else:
        started = time.perf_counter()
        loaded = _models[ref] = LoadedModel(registry.read(ref))
        stats.load(ref, (time.perf_counter() - started) * 1000.0)
        limit = max(1, int(server.setting("pgml.model_cache_size", "4")))
        while len(_models) > limit:
            _models.popitem(last=False)
    _last = (ref, loaded)
    return loaded


def name_of(ref: str) -> str:
    """'name vN' of a loaded reference, for messages."""
    loaded = _models.get(ref)
    return loaded.row.ref if loaded is not None else ref


def loaded() -> list[LoadedModel]:
    return list(_models.values())


def clear() -> int:
    global _last
    n = len(_models)
    _models.clear()
    _last = None
    return n
