"""score_into over a Citus distributed table: scored on the workers, next to the shards.

The predictions table is made (from the source's first row, scored here) and distributed
co-located with the source, by its key; then one INSERT ... SELECT, which Citus runs on
every shard, scores each row on its worker (pgml_internal.score_row: the same answers as
score_into writes) with the version resolved here, so all of them score with the same
one. All of it is one distributed transaction: nothing is left half-written.
"""

from __future__ import annotations

from pgml_ext.indb import server
from pgml_ext.indb.bulk import qualified_name, replacing_by_key
from pgml_ext.indb.errors import INVALID_PARAMETER, PgmlError


def distribution_column(relation: str) -> str | None:
    """The distribution column of RELATION (quoted name) if it is a hash-distributed Citus
    table, else None (no Citus, a local or a reference table)."""
    plpy = server.plpy()
    if not plpy.execute("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL AS citus")[
        0
    ]["citus"]:
        return None
    found = plpy.execute(
        "SELECT column_to_column_name(logicalrelid, partkey) AS name FROM pg_dist_partition "
        f"WHERE logicalrelid = {plpy.quote_literal(relation)}::regclass AND partmethod = 'h'"
    )
    return found[0]["name"] if found else None


def score_on_workers(
    model: str,
    version: int,
    relation: str,
    target: str,
    key: str,
    input_column: str,
    packed: bool,
    layout: str,
    keep: list[str] | None,
    first_row,
) -> int:
    """Score distributed RELATION into TARGET on the workers; FIRST_ROW(query) scores a
    query here (making TARGET). Returns the rows written."""
    plpy = server.plpy()
    q, ident = plpy.quote_literal, plpy.quote_ident
    if layout != "json":
        raise PgmlError(
            "score_into over a distributed table writes the json layout only",
            INVALID_PARAMETER,
            hint="Use layout => 'json', or score a query of it on the coordinator: "
            "source => 'SELECT * FROM ...'.",
        )
    if first_row(f"SELECT * FROM {relation} LIMIT 1") == 0:
        return 0  # nothing to score: no predictions table either
    name = qualified_name(plpy, target)
    placed = plpy.execute(
        "SELECT t.colocationid = s.colocationid AS together FROM pg_dist_partition t, "
        f"pg_dist_partition s WHERE t.logicalrelid = {q(name)}::regclass "
        f"AND s.logicalrelid = {q(relation)}::regclass"
    )
    if not placed:
        plpy.execute(
            f"SELECT create_distributed_table({q(name)}, 'key', colocate_with => {q(relation)})"
        )
        plpy.execute(f"SELECT truncate_local_data_after_distributing_table({q(name)})")
    elif not placed[0]["together"]:
        raise PgmlError(
            f"target {target} is distributed, but not with source {relation}",
            INVALID_PARAMETER,
            detail="score_into writes each worker's answers into the shard next to its rows.",
            hint=f"Write to a new table, or distribute {target} with colocate_with => "
            f"'{relation}'.",
        )
    kept = [ident(k) for k in keep or [] if k != key]
    source = f"s.{ident(input_column)}"
    if packed:
        source = f"pgml_internal.tensor({source}, {q(model)})"
    # resolved on each worker: Citus would evaluate a call with constant arguments once,
    # on the coordinator, and a reference is good only where model_ref handed it out
    ref = (
        f"pgml_internal.model_ref(CASE WHEN s.{ident(key)} IS NOT NULL "
        f"THEN {q(f'{model}@{version}')} END)"
    )
    row = f"pgml_internal.score_row({ref}, {source}, {'true' if packed else 'false'})"
    # Citus pushes down neither a subquery that would call the function once per row
    # nor a LATERAL one over a function that is not IMMUTABLE: the row's whole answer
    # goes into scores, and a second statement, on the same shards, spreads it out
    columns = ["key", *kept, "scores", "model", "version", "scored_at"]
    values = [f"s.{ident(key)}", *(f"s.{k}" for k in kept), row, q(model), str(version), "now()"]
    written = [c for c in columns if c != "key"]
    inserted = plpy.execute(
        f"INSERT INTO {name} ({', '.join(columns)}) SELECT {', '.join(values)} "
        f"FROM {relation} s WHERE s.{ident(input_column)} IS NOT NULL " + replacing_by_key(written)
    )
    plpy.execute(
        f"UPDATE {name} SET label = scores ->> 'label', "
        "class_index = (scores ->> 'class_index')::int, scores = scores -> 'scores' "
        "WHERE scored_at = now() AND json_typeof(scores -> 'scores') = 'object' "
        "AND scores::jsonb ? 'class_index'"
    )
    return inserted.nrows()
