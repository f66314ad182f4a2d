"""Typed SQLAlchemy functions for pgml_ext's SQL API.

Use them directly or through ``func.pgml`` (both render ``pgml.<name>(...)``)::

    from sqlalchemy import func, select
    from pgml_ext.sqlalchemy import classify

    select(classify("mnist", Inputs.image))           # SELECT pgml.classify(:p, inputs.image)
    select(func.pgml.classify("mnist", Inputs.image)) # the same, typed the same

Python values are cast for you: ``bytes`` to ``bytea``, lists / numpy arrays of floats
to ``float4[]``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.functions import GenericFunction

FLOAT4_ARRAY = ARRAY(sa.REAL)


def _argument(value: Any) -> Any:
    """Cast plain Python inputs so PostgreSQL picks the right overload."""
    if isinstance(value, ClauseElement) or value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return sa.cast(sa.literal(bytes(value), sa.LargeBinary), sa.LargeBinary)
    if hasattr(value, "tolist"):  # numpy arrays
        value = value.tolist()
    if isinstance(value, list | tuple):
        return sa.cast(sa.literal(list(value), FLOAT4_ARRAY), FLOAT4_ARRAY)
    return value


class _PgmlFunction(GenericFunction):
    """Base: registered under ``func.pgml`` and rendered with the ``pgml.`` schema."""

    _register = False
    inherit_cache = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*(_argument(a) for a in args), **kwargs)
        self.packagenames = ("pgml",)


class predict(_PgmlFunction):
    """The model's score vector: ``pgml.predict(model, input [, output, signature])``.

    ``select(predict("mnist", Inputs.example))`` renders
    ``SELECT pgml.predict(:predict_1, inputs.example)`` and returns ``list[float]``.
    """

    type = FLOAT4_ARRAY
    package = "pgml"  # read from each class's own namespace, so repeated
    inherit_cache = True


class classify(_PgmlFunction):
    """The top class label: ``pgml.classify(model, input [, signature])`` -> ``str``.

    ``select(classify("mnist", Inputs.example))`` renders
    ``SELECT pgml.classify(:classify_1, inputs.example)``.
    """

    type = sa.Text()
    package = "pgml"
    inherit_cache = True


class predict_class(_PgmlFunction):
    """The arg-max class index: ``pgml.predict_class(model, input [, signature])`` -> ``int``.

    ``select(predict_class("mnist", Inputs.pixels))`` renders
    ``SELECT pgml.predict_class(:predict_class_1, inputs.pixels)``.
    """

    type = sa.Integer()
    package = "pgml"
    inherit_cache = True


__all__ = ["classify", "predict", "predict_class", "FLOAT4_ARRAY"]
