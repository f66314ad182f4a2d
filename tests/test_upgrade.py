"""ALTER EXTENSION pgml_ext UPDATE from every earlier release, with models in place.

A database made with the last release's script (sql/pgml_ext--0.1.0.sql, frozen as
released) gets models registered and scored; the update (sql/pgml_ext--0.1.0--0.2.0.sql)
must keep them and their answers, and leave the database with exactly what a new install
has: the same functions, views, tables, comments and privileges.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from pgml_ext import __version__, client

ROOT = Path(__file__).resolve().parents[1]
RELEASES = sorted(
    m.group(1)
    for p in (ROOT / "sql").glob("pgml_ext--*.sql")
    if (m := re.fullmatch(r"pgml_ext--(\d+\.\d+\.\d+)\.sql", p.name))
)

# every member object of the extension, as the catalogs describe it (privileges as
# who may do what, whatever order GRANTs made the list in)
MEMBERS = """
SELECT pg_describe_object(d.classid, d.objid, 0) AS object,
       coalesce(
           CASE WHEN d.classid = 'pg_proc'::regclass
                THEN pg_get_functiondef(d.objid) || (
                         SELECT string_agg(a.grantee::regrole || ':' || a.privilege_type, ','
                                           ORDER BY a.grantee, a.privilege_type)
                           FROM pg_proc p,
                                aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                          WHERE p.oid = d.objid)
                WHEN d.classid = 'pg_class'::regclass
                THEN (SELECT coalesce(pg_get_viewdef(c.oid), '') || coalesce((
                         SELECT string_agg(a.grantee::regrole || ':' || a.privilege_type, ','
                                           ORDER BY a.grantee, a.privilege_type)
                           FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a),
                         '')
                             || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid,
                                                   a.atttypmod) || ' '
                                                   || coalesce(col_description(c.oid, a.attnum),
                                                               ''), ', ' ORDER BY a.attnum)
                                   FROM pg_attribute a
                                  WHERE a.attrelid = c.oid AND a.attnum > 0
                                    AND NOT a.attisdropped)
                        FROM pg_class c WHERE c.oid = d.objid) END, '')
       || coalesce(obj_description(d.objid, d.classid::regclass::name), '') AS definition
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgml_ext'
 WHERE d.deptype = 'e' AND d.refclassid = 'pg_extension'::regclass
 ORDER BY 1
"""


def members(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.object: r.definition for r in conn.execute(sa.text(MEMBERS))}


def test_this_release_has_an_upgrade_from_the_last():
    assert RELEASES, "sql/ keeps the install script of each earlier release"
    assert __version__ not in RELEASES  # this version's script is sql/pgml_ext.sql
    assert (ROOT / "sql" / f"pgml_ext--{RELEASES[-1]}--{__version__}.sql").exists()


@pytest.mark.parametrize("release", RELEASES)
def test_update_keeps_models_and_answers(cluster, engine, mlp_dir, release, inputs):
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    database = f"pgml_from_{release.replace('.', '_')}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    old = sa.create_engine(cluster.url(database))
    query = (
        "SELECT pgml.classify('digits', pixels), pgml.predict_class('digits', pixels) "
        "FROM (SELECT pixels FROM inputs_copy ORDER BY id LIMIT 200) t"
    )
    try:
        with old.begin() as conn:
            conn.exec_driver_sql(f"CREATE EXTENSION pgml_ext VERSION '{release}' CASCADE")
            conn.exec_driver_sql("CREATE TABLE inputs_copy (id int, pixels float4[])")
        with engine.connect() as src, old.begin() as dst:
            rows = src.exec_driver_sql("SELECT id, pixels FROM inputs ORDER BY id LIMIT 200")
            dst.execute(
                sa.text("INSERT INTO inputs_copy VALUES (:id, :pixels)"),
                [{"id": r.id, "pixels": r.pixels} for r in rows],
            )
        client.register_model(old, "digits", mlp_dir, labels=[f"d{i}" for i in range(10)])
        client.register_model(old, "digits", mlp_dir)  # v2 takes the labels, then pin v1
        with old.begin() as conn:
            conn.exec_driver_sql("SELECT pgml.pin_model('digits', 1)")
            before = conn.exec_driver_sql(query).all()

        assert client.install(old) == __version__  # ALTER EXTENSION pgml_ext UPDATE

        with old.begin() as conn:
            assert conn.exec_driver_sql(query).all() == before
            models = conn.exec_driver_sql(
                "SELECT version, pinned, current, labels FROM pgml.models ORDER BY version"
            ).all()
            assert [tuple(m) for m in models] == [
                (1, True, True, [f"d{i}" for i in range(10)]),
                (2, False, False, [f"d{i}" for i in range(10)]),
            ]
            # what the update brought works on the models it found; the library counted
            # the rows scored before the update too: 200 rows, two calls each, twice
            scored = conn.exec_driver_sql(
                "SELECT rows FROM pgml.stats WHERE model = 'digits' AND version = 1"
            ).scalar()
            assert scored == 2 * 2 * 200
        assert members(old) == members(engine)
    finally:
        old.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.dispose()
