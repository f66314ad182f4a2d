"""The benchmark's best client reads float4[] rows from a binary COPY with numpy
(pgml_ext.bench.float4_rows): its reading must be PostgreSQL's own values."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from pgml_ext.bench import float4_rows

pytestmark = pytest.mark.usefixtures("inputs")


def _copy_out(engine: sa.Engine, query: str) -> bytes:
    import psycopg

    url = engine.url
    with (
        psycopg.connect(
            f"host={url.host} port={url.port} dbname={url.database} user={url.username}"
        ) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy,
    ):
        return b"".join(copy)


def test_float4_rows_reads_a_binary_copy_as_postgres_wrote_it(engine, digits):
    data = _copy_out(engine, "SELECT id, pixels FROM inputs ORDER BY id")
    ids, x = float4_rows(data, 784)
    assert ids.tolist() == list(range(len(digits[0])))
    assert np.array_equal(x, digits[0])


@pytest.mark.parametrize(
    "query",
    [
        "SELECT id, pixels[1:783] FROM inputs",  # another width
        "SELECT id, NULL::float4[] FROM inputs",
        "SELECT id, array_fill(0::float4, ARRAY[28, 28]) FROM inputs",  # two dimensions
        "SELECT id, CASE WHEN id = 3 THEN NULL ELSE pixels END FROM inputs",
    ],
)
def test_float4_rows_refuses_any_other_layout(engine, query):
    with pytest.raises(ValueError):
        float4_rows(_copy_out(engine, query), 784)
