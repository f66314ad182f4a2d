"""Batch scoring: many inputs in one runtime call, and whole queries into a table.

``score_into`` reads the source through a cursor in chunks of ``chunk_size`` rows, so
memory stays bounded and a cancel is honoured between chunks; it runs in the caller's
transaction, so an interrupted run leaves no partial predictions behind.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from pgml_ext.indb import cache, registry, server, signatures, stats
from pgml_ext.indb.errors import (
    CARDINALITY_VIOLATION,
    INVALID_PARAMETER,
    UNDEFINED_OBJECT,
    PgmlError,
)
from pgml_ext.indb.model import LoadedModel

BYTEA_OID = 17
# arrays of numbers (real, double precision, numeric, smallint, int, bigint): each is
# packed as float4 by pgml_internal.tensor
NUMBER_ARRAY_OIDS = (1021, 1022, 1231, 1005, 1007, 1016)
# the columns score_into writes itself: a kept source column may not take these names
WRITTEN = ("key", "label", "class_index", "scores", "model", "version", "scored_at")
LAYOUTS = ("json", "columns")
CHUNK_ROWS = 1024


def _present(items: list) -> tuple[list[int], list]:
    idx = [i for i, v in enumerate(items) if v is not None]
    return idx, [items[i] for i in idx]


def _spread(n: int, idx: list[int], values: list) -> list:
    out: list[Any] = [None] * n
    for i, v in zip(idx, values, strict=True):
        out[i] = v
    return out


def _inputs(data: list | np.ndarray) -> tuple[int, list[int], list | np.ndarray]:
    """(row count, rows present, their inputs): bytea[] may hold NULLs (NULL out)."""
    if isinstance(data, np.ndarray):
        return len(data), list(range(len(data))), data
    idx, present = _present(data)
    return len(data), idx, present


# A runtime call should take about this long at most (src/pgml_ext.h has the same).
CHUNK_BUDGET_S = 0.1


def next_chunk(rows: int, elapsed: float, most: int) -> int:
    """Rows for the next call: doubling while a call takes under a quarter of the
    budget, shrinking when it takes more, never above pgml.batch_chunk_rows."""
    if elapsed > CHUNK_BUDGET_S:
        rows = max(1, int(rows * CHUNK_BUDGET_S / elapsed))
    elif elapsed < CHUNK_BUDGET_S / 4:
        rows *= 2
    return min(rows, most)


def scored_in_chunks(loaded: LoadedModel, inputs: list | np.ndarray, signature: str | None):
    """(sig, outputs, rows) per runtime call over INPUTS, in order. Python code (decoding,
    the runtime call) never looks at PostgreSQL's interrupt flags;
    registry.check_for_interrupts() between calls does. Calls start small and grow up to
    pgml.batch_chunk_rows while one takes well under CHUNK_BUDGET_S, so a cancel or
    statement_timeout lands within a fraction of a second for any model."""
    most = max(1, int(server.setting("pgml.batch_chunk_rows", str(CHUNK_ROWS))))
    rows = min(8, most)
    start = 0
    while start < len(inputs):
        if start:
            registry.check_for_interrupts()
        began = time.perf_counter()
        part = inputs[start : start + rows]
        sig, out = loaded.score(part, signature, batch=True)
        yield sig, out, len(part)
        start += len(part)
        rows = next_chunk(rows, time.perf_counter() - began, most)


def _batch(ref: str, data: list | np.ndarray, signature: str | None, results) -> list:
    """One result per input, ``results(loaded, sig, out)`` per runtime call; NULL inputs
    give NULL."""
    registry.check_ref(ref)
    loaded = cache.get(ref)
    n, idx, present = _inputs(data)
    values: list = []
    with stats.scoring(ref, len(present)):  # a NULL input is not a row scored
        for sig, out, _ in scored_in_chunks(loaded, present, signature):
            values.extend(results(loaded, sig, out))
    return _spread(n, idx, values)


def predict_batch(
    ref: str, data: list | np.ndarray, output: str | None, signature: str | None
) -> list:
    return _batch(ref, data, signature, lambda m, sig, out: m.scores(sig, out, output).tolist())


def top_classes_batch(
    ref: str, data: list | np.ndarray, signature: str | None, output: str | None = None
) -> list:
    return _batch(ref, data, signature, lambda m, sig, out: m.top_classes(sig, out, output))


def qualified_name(plpy, name: str) -> str:
    """A table's name as SQL, each dotted part quoted: 'public.My Table' ->
    public."My Table"."""
    return ".".join(plpy.quote_ident(p) for p in name.split("."))


def replacing_by_key(columns: list[str]) -> str:
    """The ON CONFLICT clause of score_into's INSERTs: a re-run replaces COLUMNS of the
    keys it scores (it used to append them)."""
    return (
        f"ON CONFLICT (key) DO UPDATE SET ({', '.join(columns)}) = "
        f"ROW({', '.join(f'EXCLUDED.{c}' for c in columns)})"
    )


def _column_types(plpy, relation: str) -> tuple[dict[str, int], dict[str, int]]:
    """The source's columns: {name: type oid}, {name: typmod} (char(6) keeps its 6)."""
    try:
        probe_plan = plpy.prepare(f"SELECT * FROM {relation} AS s LIMIT 0")
        # one query only: a cursor refuses a source that adds statements of its own
        # ("t) s; DROP TABLE ..."), before any of them runs
        plpy.cursor(probe_plan).close()
        probe = plpy.execute(probe_plan)
    except plpy.SPIError as e:  # a table that is not there, a query that does not parse
        raise PgmlError(
            f"source cannot be read: {e.args[0] if e.args else e}",
            getattr(e, "sqlstate", None) or INVALID_PARAMETER,
            hint="Check the source: a table's name (schema.table) or one query (SELECT ...), "
            "and the columns it names.",
        ) from None
    names = probe.colnames()
    return (
        dict(zip(names, probe.coltypes(), strict=True)),
        dict(zip(names, probe.coltypmods(), strict=True)),
    )


def _input_column(cursor_types: dict[str, int], key: str, requested: str | None) -> str:
    if requested:
        if requested not in cursor_types:
            raise PgmlError(
                f"source has no column '{requested}'",
                UNDEFINED_OBJECT,
                detail=f"Its columns: {', '.join(cursor_types)}.",
            )
        return requested
    usable = [
        c
        for c, t in cursor_types.items()
        if c != key and (t == BYTEA_OID or t in NUMBER_ARRAY_OIDS)
    ]
    if len(usable) != 1:
        raise PgmlError(
            "name the input column: the source has "
            + (f"several ({', '.join(usable)})" if usable else "no bytea or number array column"),
            INVALID_PARAMETER,
            hint="Pass input => 'column'.",
        )
    return usable[0]


def score_into(
    ref: str,
    source: str,
    target: str,
    key: str,
    input_column: str | None,
    chunk_size: int,
    layout: str,
    keep: list[str] | None = None,
) -> int:
    """Score every row of SOURCE (a table name or a query) into table TARGET, with the
    source's KEEP columns beside each row's answer."""
    plpy = server.plpy()
    if layout not in LAYOUTS:
        raise PgmlError(
            f"unknown layout '{layout}'",
            INVALID_PARAMETER,
            hint="Use 'json' (scores as {label: score}, in class order) or 'columns' (one per "
            "class).",
        )
    if chunk_size < 1:
        raise PgmlError("chunk_size must be positive", INVALID_PARAMETER)
    loaded = cache.get(ref)
    text = source.strip()
    is_query = (
        text.split(None, 1)[0].lower() in ("select", "with", "values", "table") if text else False
    )
    relation = f"({text})" if is_query else qualified_name(plpy, text)
    types, typmods = _column_types(plpy, relation)
    from pgml_ext.indb import distributed  # it builds on this module

    if not is_query and distributed.distribution_column(relation) == key:
        # a Citus table distributed by the key: its workers score their own shards
        column = _input_column(types, key, input_column)
        return distributed.score_on_workers(
            loaded.row.name, loaded.row.version, relation, target, key, column,
            types[column] in NUMBER_ARRAY_OIDS, layout, keep,
            lambda query: score_into(ref, query, target, key, column, chunk_size, layout, keep),
        )  # fmt: skip
    for wanted, what in [(key, "key column"), *((k, "column to keep") for k in keep or [])]:
        if wanted not in types:
            raise PgmlError(
                f"source has no {what} '{wanted}'",
                UNDEFINED_OBJECT,
                detail=f"Its columns: {', '.join(types)}.",
                hint="Pass key => 'column'." if what == "key column" else None,
            )
    kept = [k for k in keep or [] if k != key]
    clash = [k for k in kept if k in WRITTEN or (layout == "columns" and k.startswith("p_"))]
    if clash:
        raise PgmlError(
            f"cannot keep column '{clash[0]}': score_into writes a column of that name",
            INVALID_PARAMETER,
            hint="Rename it in a query: source => 'SELECT id, x, plan AS plan_name FROM t'.",
        )
    column = _input_column(types, key, input_column)

    def sql_type(name: str) -> str:
        return plpy.execute(f"SELECT format_type({types[name]}, {typmods[name]}) AS t")[0]["t"]

    packed = types[column] in NUMBER_ARRAY_OIDS
    source = f"s.{plpy.quote_ident(column)}"
    if packed:  # one bytea per row, not a list of Python floats: see pgml_internal.tensor
        source = f"pgml_internal.tensor({source}, {plpy.quote_literal(loaded.row.name)})"
    # kept values travel as text and are cast back to their types when written
    kept_sql = "".join(f", s.{plpy.quote_ident(k)}::text AS kept_{i}" for i, k in enumerate(kept))
    query = plpy.prepare(
        f"SELECT s.{plpy.quote_ident(key)} AS key, {source} AS input{kept_sql} FROM {relation} AS s"
    )

    writer = _Writer(plpy, loaded, target, sql_type(key), layout, [(k, sql_type(k)) for k in kept])
    # kept floats travel as text: every digit, whatever the session's extra_float_digits
    # (set back after; an ERROR's rollback sets it back by itself)
    digits = plpy.execute("SELECT current_setting('extra_float_digits') AS v")[0]["v"]
    plpy.execute("SELECT set_config('extra_float_digits', '3', true)")
    # counted here, where its rows are scored (not on a coordinator whose workers do it)
    with stats.scoring(ref) as call:
        call.rows = _write_scored(loaded, writer, plpy.cursor(query), chunk_size, packed, len(kept))
    restore = plpy.prepare("SELECT set_config('extra_float_digits', $1, true)", ["text"])
    plpy.execute(restore, [digits])
    return call.rows


def _write_scored(
    loaded: LoadedModel, writer: _Writer, cursor, chunk_size: int, packed: bool, kept: int
) -> int:
    """Score the (key, input, kept_0 ...) rows of CURSOR, CHUNK_SIZE at a time, into
    WRITER; the rows written."""
    written = 0
    while True:
        rows = cursor.fetch(chunk_size)
        if not rows:
            break
        keys = [r["key"] for r in rows]
        inputs = [r["input"] for r in rows]
        idx, present = _present(inputs)
        present_keys = [keys[i] for i in idx]
        present_kept = [[rows[i][f"kept_{j}"] for i in idx] for j in range(kept)]
        if packed and present:
            present = [signatures.tensor_from_packed(p) for p in present]
            if any(t.shape != present[0].shape for t in present):
                _raise_for_row(loaded, present, present_keys)
            present = np.stack(present)
        done = 0
        try:
            for sig, out, n in scored_in_chunks(loaded, present, None):
                loaded.check_finite(loaded.scores(sig, out, None))
                names, scores = loaded.scores_by_class(sig, out)
                classes = (
                    loaded.top_classes(sig, out)
                    if loaded.classifies(sig, scores.shape[1])
                    else [(None, None)] * n  # a regressor: its value, no class
                )
                part = slice(done, done + n)
                written += writer.write(
                    present_keys[part], [k[part] for k in present_kept], classes, scores, names
                )
                done += n
        except PgmlError:
            _raise_for_row(loaded, present[done:], present_keys[done:])
            raise
    return written


def _raise_for_row(loaded: LoadedModel, inputs, keys: list) -> None:
    """The error of the first of INPUTS the model refuses on its own, with its key in
    the DETAIL (a batch's error cannot say which row it was); or, when each would
    score alone, that the rows' shapes differ."""
    for data, key in zip(inputs, keys, strict=True):
        try:
            loaded.score(data, None)
        except PgmlError as e:
            row = f"The source row with key {key!r}."
            e.detail = f"{e.detail} {row}" if e.detail else row
            raise
    shapes = {tuple(np.shape(d)): k for d, k in zip(inputs, keys, strict=True)}
    if len(shapes) > 1:
        raise PgmlError(
            f"the rows scored with model '{loaded.row.name}' have different shapes",
            INVALID_PARAMETER,
            detail="; ".join(f"key {k!r}: {list(s)}" for s, k in shapes.items()) + ".",
            hint="Give every row's array the same shape.",
        )


class _Writer:
    """Creates TARGET if needed (key its primary key) and writes (key, the kept columns,
    label, class_index, scores, model, version, scored_at), replacing the rows of keys
    already there."""

    def __init__(
        self,
        plpy,
        loaded: LoadedModel,
        target: str,
        key_type: str,
        layout: str,
        kept: list[tuple[str, str]],
    ) -> None:
        self.plpy, self.layout, self.kept = plpy, layout, kept
        self.labels = loaded.row.labels
        self.model, self.version = loaded.row.name, loaded.row.version
        self.name = qualified_name(plpy, target)
        self.columns: list[str] | None = None
        self.key_type = key_type

    def _create(self, width: int, names: list[str] | None) -> None:
        q = self.plpy.quote_ident
        if self.layout == "json":
            self.columns = ["scores"]
            score_types = ["json"]  # json keeps the classes' order (jsonb sorts its keys)
        else:
            self.columns = [f"p_{n}" for n in self._names(width, names)]
            score_types = ["float4"] * width
        kept = [(q(name), sql_type) for name, sql_type in self.kept]
        scored = [
            ("label", "text"),
            ("class_index", "int"),
            *zip(map(q, self.columns), score_types, strict=True),
        ]
        stamped = [("model", "text"), ("version", "int"), ("scored_at", "timestamptz")]
        self.plpy.execute(
            f"CREATE TABLE IF NOT EXISTS {self.name} (key {self.key_type} PRIMARY KEY, "
            + ", ".join(f"{c} {t}" for c, t in [*kept, *scored, *stamped])
            + ")"
        )
        self._check_unique_key()
        # a target made before (by an earlier version, or without these columns) gets them
        self.plpy.execute(
            f"ALTER TABLE {self.name} "
            + ", ".join(f"ADD COLUMN IF NOT EXISTS {c} {t}" for c, t in [*kept, *stamped])
        )
        written = [c for c, _ in [*kept, *scored, *stamped]]
        # parameters: keys, each kept column (as text), label, class_index, the scores
        arrays = [f"$1::{self.key_type}[]"]
        arrays += [f"${2 + i}::text[]" for i in range(len(kept))]
        n = 2 + len(kept)
        arrays += [f"${n}::text[]", f"${n + 1}::int[]"]
        score_params = [f"{t}[]" for t in score_types]
        arrays += [f"${n + 2 + i}::{t}" for i, t in enumerate(score_params)]
        values = ["u.c0"] + [f"u.c{1 + i}::{t}" for i, (_, t) in enumerate(kept)]
        values += [f"u.c{1 + len(kept) + i}" for i in range(2 + len(score_params))]
        values += [
            self.plpy.quote_literal(self.model),
            str(int(self.version)),
            "now()",
        ]
        aliases = ", ".join(f"c{i}" for i in range(len(arrays)))
        self.insert = self.plpy.prepare(
            f"INSERT INTO {self.name} (key, {', '.join(written)}) "
            f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) AS u({aliases}) "
            + replacing_by_key(written),
            [f"{self.key_type}[]", *["text[]"] * len(kept), "text[]", "int[]", *score_params],
        )

    def _check_unique_key(self) -> None:
        """A target that was already there must have a unique key column: its rows are
        replaced by key."""
        found = self.plpy.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            f"WHERE i.indrelid = {self.plpy.quote_literal(self.name)}::regclass "
            "AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL "
            "AND a.attname = 'key') AS ok"
        )[0]["ok"]
        if not found:
            raise PgmlError(
                f"target {self.name} has no unique column 'key'",
                INVALID_PARAMETER,
                detail="pgml.score_into replaces the rows of the keys it scores.",
                hint=f"Add a primary key: ALTER TABLE {self.name} ADD PRIMARY KEY (key); "
                "or write to a new table.",
            )

    def _names(self, width: int, names: list[str] | None) -> list[str]:
        return class_names(self.labels, width, names)

    def write(
        self,
        keys: list,
        kept: list[list],
        classes: list[tuple[int, str]],
        scores: np.ndarray,
        names: list[str] | None = None,
    ) -> int:
        if not hasattr(self, "insert"):
            self._create(scores.shape[1], names)
        labels = [label for _, label in classes]
        indices = [i for i, _ in classes]
        if self.layout == "json":
            names = self._names(scores.shape[1], names)
            docs = [json.dumps(scores_document(names, row)) for row in scores]
            values = [keys, *kept, labels, indices, docs]
        else:
            values = [keys, *kept, labels, indices, *scores.T.tolist()]
        try:
            self.plpy.execute(self.insert, values)
        except self.plpy.SPIError as e:
            if getattr(e, "sqlstate", None) != CARDINALITY_VIOLATION:
                raise
            twice = sorted({k for k in keys if keys.count(k) > 1}, key=str)[:5]
            raise PgmlError(
                "the source has the same key more than once",
                CARDINALITY_VIOLATION,
                detail=f"Keys: {', '.join(map(repr, twice))}.",
                hint="Score a source whose key column is unique (its primary key), or pass "
                "key => a column that is.",
            ) from None
        return len(keys)


def class_names(labels: list[str] | None, width: int, names: list[str] | None) -> list[str]:
    """The name of each score column: the model's own class names, else the labels,
    else the index."""
    if names is None:
        names = [str(x) for x in (labels or range(width))][:width]
    return names + [str(i) for i in range(len(names), width)]


def scores_document(names: list[str], row: np.ndarray) -> dict[str, float]:
    """{class: score} in class order, each score float32's shortest text (6.113e-08),
    not its float64 expansion."""
    return dict(zip(names, (float(str(v)) for v in row.astype(np.float32)), strict=True))


def score_row(ref: str, data: bytes | np.ndarray) -> str:
    """One row's answers as score_into writes them (json layout): {"label",
    "class_index", "scores"}. For score_into over a distributed table, where each worker
    scores its rows inside one INSERT ... SELECT."""
    registry.check_ref(ref)
    loaded = cache.get(ref)
    inputs = np.stack([data]) if isinstance(data, np.ndarray) else [data]
    sig, out = loaded.score(inputs, None, batch=True)
    names, scores = loaded.scores_by_class(sig, out)
    index, label = (
        loaded.top_classes(sig, out)[0]
        if loaded.classifies(sig, scores.shape[1])
        else (None, None)  # a regressor: its value, no class
    )
    names = class_names(loaded.row.labels, scores.shape[1], names)
    return json.dumps(
        {"label": label, "class_index": index, "scores": scores_document(names, scores[0])}
    )
