"""Typed SQLAlchemy functions for pgml_ext's SQL API.

Use them directly or through ``func.pgml`` (both render ``pgml.<name>(...)``)::

    from sqlalchemy import func, select
    from pgml_ext.sqlalchemy import classify

    select(classify("mnist", Inputs.image))           # SELECT pgml.classify(:p, inputs.image)
    select(func.pgml.classify("mnist", Inputs.image)) # the same, typed the same

Python values are cast for you: ``bytes`` to ``bytea``, lists / numpy arrays of floats
to ``float4[]``, a ``dict`` of features to ``jsonb`` (scored by feature name, as
``pgml.classify(model, to_jsonb(row))`` is).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.sql.visitors import InternalTraversal

FLOAT4_ARRAY = ARRAY(sa.REAL)


def _argument(value: Any) -> Any:
    """Cast plain Python inputs so PostgreSQL picks the right overload."""
    if isinstance(value, ClauseElement) or value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return sa.cast(sa.literal(bytes(value), sa.LargeBinary), sa.LargeBinary)
    if isinstance(value, dict):  # features by name
        return sa.cast(sa.literal(value, JSONB()), JSONB())
    if hasattr(value, "tolist"):  # numpy arrays
        value = value.tolist()
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, str) for v in value):  # labels
            return sa.cast(sa.literal(list(value), ARRAY(sa.Text)), ARRAY(sa.Text))
        return sa.cast(sa.literal(list(value), FLOAT4_ARRAY), FLOAT4_ARRAY)
    return value


class NamedArgument(ColumnElement):
    """``name => value``: a keyword argument of a pgml function, passed by name."""

    inherit_cache = True
    _traverse_internals = [
        ("name", InternalTraversal.dp_string),
        ("value", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, name: str, value: Any) -> None:
        if not name.isidentifier():
            raise ValueError(f"not an argument name: {name!r}")
        self.name = name
        value = _argument(value)
        self.value = value if isinstance(value, ClauseElement) else sa.literal(value)
        self.type = self.value.type


@compiles(NamedArgument)
def _named_argument(element: NamedArgument, compiler, **kw) -> str:
    return f"{element.name} => {compiler.process(element.value, **kw)}"


# SQLAlchemy's own keyword arguments of a function; every other keyword is an argument
# of the SQL function, passed by name (signature=..., output=...), never dropped.
_SQLALCHEMY_KEYWORDS = {"type_", "_parsed_args"}


class _PgmlFunction(GenericFunction):
    """Base: registered under ``func.pgml`` and rendered with the ``pgml.`` schema.
    Keyword arguments become named SQL arguments: ``classify(m, x, output="head")``
    renders ``pgml.classify(:classify_1, x, output => :param_1)``."""

    _register = False
    inherit_cache = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        own = {k: v for k, v in kwargs.items() if k in _SQLALCHEMY_KEYWORDS}
        named = [NamedArgument(k, v) for k, v in kwargs.items() if k not in _SQLALCHEMY_KEYWORDS]
        super().__init__(*(_argument(a) for a in args), *named, **own)
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
    """The top class label: ``pgml.classify(model, input [, signature, output])`` -> ``str``.

    ``select(classify("mnist", Inputs.example))`` renders
    ``SELECT pgml.classify(:classify_1, inputs.example)``.
    """

    type = sa.Text()
    package = "pgml"
    inherit_cache = True


class predict_class(_PgmlFunction):
    """The arg-max class index: ``pgml.predict_class(model, input [, signature, output])``.

    ``select(predict_class("mnist", Inputs.pixels))`` renders
    ``SELECT pgml.predict_class(:predict_class_1, inputs.pixels)``.
    """

    type = sa.Integer()
    package = "pgml"
    inherit_cache = True


class predict_value(_PgmlFunction):
    """A regressor's value: ``pgml.predict_value(model, input [, output, signature])``.

    ``select(predict_value("price", Houses.features))`` renders
    ``SELECT pgml.predict_value(:predict_value_1, houses.features)`` -> ``float``; an
    ERROR if the model gives more than one value per row.
    """

    type = sa.REAL()
    package = "pgml"
    inherit_cache = True


class predict_batch(_PgmlFunction):
    """Scores for many inputs in one runtime call, one row each (a set-returning function).

    ``select(predict_batch("mnist", func.array_agg(Inputs.example)))`` renders
    ``SELECT pgml.predict_batch(:predict_batch_1, array_agg(inputs.example))``.
    """

    type = FLOAT4_ARRAY
    package = "pgml"
    inherit_cache = True


class classify_batch(_PgmlFunction):
    """Top class labels for an array of inputs -> ``list[str]``.

    ``select(classify_batch("mnist", func.array_agg(Inputs.pixels)))`` renders
    ``SELECT pgml.classify_batch(:classify_batch_1, array_agg(inputs.pixels))``.
    """

    type = ARRAY(sa.Text)
    package = "pgml"
    inherit_cache = True


class predict_class_batch(_PgmlFunction):
    """Arg-max class indices for an array of inputs -> ``list[int]``.

    ``select(predict_class_batch("mnist", func.array_agg(Inputs.pixels)))`` renders
    ``SELECT pgml.predict_class_batch(:predict_class_batch_1, array_agg(inputs.pixels))``.
    """

    type = ARRAY(sa.Integer)
    package = "pgml"
    inherit_cache = True


class score_into(_PgmlFunction):
    """Score a table or query into a predictions table -> rows written (``int``).

    ``select(score_into("mnist", "inputs", "predictions"))`` renders
    ``SELECT pgml.score_into(:score_into_1, :score_into_2, :score_into_3)``.
    """

    type = sa.BigInteger()
    package = "pgml"
    inherit_cache = True


class create_function(_PgmlFunction):
    """Bind a function name to a model in the current schema.

    ``select(create_function("classify", "mnist"))`` renders
    ``SELECT pgml.create_function(:create_function_1, :create_function_2)``.
    """

    type = sa.types.NullType()
    package = "pgml"
    inherit_cache = True


class load_model(_PgmlFunction):
    """Register a SavedModel directory on the database server -> new version (``int``).

    ``select(load_model("mnist", "/srv/models/mnist"))`` renders
    ``SELECT pgml.load_model(:load_model_1, :load_model_2)``.
    """

    type = sa.Integer()
    package = "pgml"
    inherit_cache = True


class delete_model(_PgmlFunction):
    """Delete one version (or all) of a model -> versions deleted (``int``).

    ``select(delete_model("mnist", 2))`` renders
    ``SELECT pgml.delete_model(:delete_model_1, :delete_model_2)``; the pinned version
    needs ``force=True`` (``..., force => :param_1``).
    """

    type = sa.Integer()
    package = "pgml"
    inherit_cache = True


class example(_PgmlFunction):
    """A dict / jsonb object of features as the tf.Example the model reads -> ``bytes``.

    ``select(example("churn", {"age": 42, "plan": 1}))`` renders
    ``SELECT pgml.example(:example_1, CAST(:param_1 AS JSONB))``.
    """

    type = sa.LargeBinary()
    package = "pgml"
    inherit_cache = True


class pin_model(_PgmlFunction):
    """Serve a given version instead of the newest.

    ``select(pin_model("mnist", 1))`` renders ``SELECT pgml.pin_model(:pin_model_1, :pin_model_2)``.
    """

    type = sa.types.NullType()
    package = "pgml"
    inherit_cache = True


class unpin_model(_PgmlFunction):
    """Serve the newest version again: ``SELECT pgml.unpin_model(:unpin_model_1)``;
    true if it was pinned."""

    type = sa.types.Boolean()
    package = "pgml"
    inherit_cache = True


class rollback_model(_PgmlFunction):
    """Pin the version before the one serving now -> that version (``int``).

    ``select(rollback_model("mnist"))`` renders ``SELECT pgml.rollback_model(:rollback_model_1)``.
    """

    type = sa.Integer()
    package = "pgml"
    inherit_cache = True


class prune_model_files(_PgmlFunction):
    """Remove the server's files of deleted versions -> one row (``str``) per directory.

    ``select(prune_model_files())`` renders ``SELECT pgml.prune_model_files()``.
    """

    type = sa.Text()
    package = "pgml"
    inherit_cache = True


class backend_status(_PgmlFunction):
    """This backend's runtimes and memory -> ``dict``: ``SELECT pgml.backend_status()``."""

    type = JSONB()
    package = "pgml"
    inherit_cache = True


__all__ = [
    "FLOAT4_ARRAY",
    "backend_status",
    "classify",
    "classify_batch",
    "create_function",
    "delete_model",
    "example",
    "load_model",
    "pin_model",
    "predict",
    "predict_batch",
    "predict_class",
    "predict_class_batch",
    "prune_model_files",
    "rollback_model",
    "score_into",
    "unpin_model",
]
