"""Roles and privileges: scorers score, admins register, everybody else only reads
metadata; SECURITY DEFINER functions pin their search_path."""

import pytest
import sqlalchemy as sa

from conftest import new_engine, rows, sql_error
from pgml_ext import client

pytestmark = pytest.mark.usefixtures("models", "inputs")


@pytest.fixture(scope="module")
def users(engine, db_url):
    with engine.begin() as conn:
        for name, role in (("alice", "pgml_scorer"), ("carol", "pgml_admin"), ("bob", None)):
            conn.exec_driver_sql(
                f"DROP OWNED BY {name} CASCADE" if _exists(conn, name) else "SELECT 1"
            )
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN")
            if role:
                conn.exec_driver_sql(f"GRANT {role} TO {name}")
        conn.exec_driver_sql("GRANT SELECT ON inputs TO alice, bob, carol")
        conn.exec_driver_sql("GRANT CREATE ON SCHEMA public TO alice")
    return {n: new_engine(db_url.replace("postgres@", f"{n}@")) for n in ("alice", "bob", "carol")}


def _exists(conn, role: str) -> bool:
    return bool(conn.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").scalar())


def test_scorer_scores_but_cannot_read_blobs_or_register(users, mlp_dir):
    alice = users["alice"]
    got = rows(
        alice,
        "SELECT pgml.classify('mlp', example), pgml.predict_class('mnist', pixels) "
        "FROM inputs WHERE id = 4",
    )
    assert got == [("4", 4)]
    # a row by column name and a jsonb object: the C encoders they are planned as
    by_name = rows(
        alice,
        "SELECT pgml.classify('mlp', i), pgml.classify('mlp', to_jsonb(i)), "
        "pgml.predict_class('mlp', pgml.example('mlp', i)) FROM inputs i WHERE id = 4",
    )
    assert by_name == [("4", "4", 4)]
    for sql in (
        "SELECT data FROM pgml.model_chunks LIMIT 1",
        "SELECT data FROM pgml.model_litert LIMIT 1",
        "SELECT pgml.load_model('x', '/tmp')",
        "SELECT pgml.delete_model('mlp')",
    ):
        assert sql_error(alice, sql)[0] == "42501", sql  # insufficient_privilege
    with alice.connect() as conn, pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(conn, "by_alice", mlp_dir)
    assert info.value.orig.args[0]["C"] == "42501"
    # The internal scoring functions take what pgml_internal.model_ref returns, nothing else;
    # the PL/Python twins and the model readers are not callable at all.
    for ref in ("/tmp", "/etc/passwd", "../1-" + "0" * 64):
        for call in (
            f"classify_native('{ref}', example, NULL, NULL)",
            f"classify_batch_native('{ref}', ARRAY[example], NULL, NULL)",
        ):
            code, message = sql_error(alice, f"SELECT pgml_internal.{call} FROM inputs LIMIT 1")[:2]
            assert code == "22023" and "not a model reference" in message, (call, ref)
    for sql in (
        "SELECT pgml_internal.classify('/tmp', example, NULL, NULL) FROM inputs LIMIT 1",
        "SELECT pgml_internal.native_plan('/tmp', true, NULL)",
        "SELECT * FROM pgml_internal.model_files(1)",
        "SELECT * FROM pgml_internal.model_version('mlp')",
        "SELECT pgml_internal.model_document(1)",
        "SELECT pgml_internal.check_model_files('/tmp')",
    ):
        assert sql_error(alice, sql)[0] == "42501", sql
    with alice.begin() as conn:
        conn.execute(sa.text("SELECT pgml.create_function('alice_classify', 'mlp')"))
    same = "SELECT alice_classify(pixels) = pgml.classify('mlp', pixels) FROM inputs WHERE id = 5"
    assert rows(alice, same) == [(True,)]


def test_ordinary_user_sees_metadata_only(users):
    bob = users["bob"]
    assert {r[0] for r in rows(bob, "SELECT name FROM pgml.models")} >= {"mlp", "mnist"}
    for sql in (
        "SELECT pgml.classify('mlp', pixels) FROM inputs LIMIT 1",
        "SELECT * FROM pgml_internal.model_files(1)",
        "SELECT pgml_internal.model_ref('mlp')",
        "SELECT pgml_internal.classify('/tmp', example, NULL, NULL) FROM inputs LIMIT 1",
        "SELECT data FROM pgml.model_chunks LIMIT 1",
    ):
        assert sql_error(bob, sql)[0] == "42501", sql


def test_admin_registers_pins_and_deletes(users, mlp_dir, engine):
    carol = users["carol"]
    assert client.register_model(carol, "by_carol", mlp_dir) == 1
    with carol.begin() as conn:
        conn.execute(sa.text("SELECT pgml.pin_model('by_carol', 1)"))
        assert conn.execute(sa.text("SELECT pgml.delete_model('by_carol')")).scalar() == 1
    # load_model reads the server's files: only with pg_read_server_files
    assert sql_error(carol, "SELECT pgml.load_model('from_carol', :p)", p=str(mlp_dir))[0] == (
        "42501"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("GRANT pg_read_server_files TO carol")
    try:
        assert rows(carol, "SELECT pgml.load_model('from_carol', :p)", p=str(mlp_dir)) == [(1,)]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("REVOKE pg_read_server_files FROM carol")


def test_admin_changes_models_only_through_functions(users):
    """Every row and blob is made by the extension's code: admins read the tables."""
    carol = users["carol"]
    for sql in (
        "UPDATE pgml.model_litert SET checksum = checksum",
        "UPDATE pgml.model_versions SET labels = ARRAY['x']",
        "INSERT INTO pgml.model_chunks VALUES (1, 99, '')",
        "DELETE FROM pgml.pins",
        "SELECT pgml_internal.upload_chunk(1, 99, '')",  # not an upload in progress
    ):
        code = sql_error(carol, sql)[0]
        assert code in ("42501", "42704"), (sql, code)
    assert rows(carol, "SELECT count(*) > 0 FROM pgml.model_chunks") == [(True,)]


def test_security_definer_functions_pin_search_path(engine):
    unpinned = rows(
        engine,
        """
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('pgml', 'pgml_internal') AND p.prosecdef
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')""",
    )
    assert unpinned == []
    definers = rows(
        engine,
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON "
        "n.oid = p.pronamespace WHERE n.nspname IN ('pgml', 'pgml_internal') AND p.prosecdef",
    )
    assert definers[0][0] >= 2


def test_the_public_surface_documents_itself(engine):
    """\\df+ pgml.* and \\d+ pgml.models show a description of every function, the view
    and each of its columns."""
    undocumented = rows(
        engine,
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'pgml'::regnamespace "
        "AND obj_description(p.oid, 'pg_proc') IS NULL "
        "UNION ALL "
        "SELECT 'pgml.' || c.relname || '.' || a.attname FROM pg_class c "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
        "WHERE c.relnamespace = 'pgml'::regnamespace AND c.relkind = 'v' "
        "AND col_description(c.oid, a.attnum) IS NULL "
        "UNION ALL "
        "SELECT 'pgml.' || c.relname FROM pg_class c "
        "WHERE c.relnamespace = 'pgml'::regnamespace AND c.relkind = 'v' "
        "AND obj_description(c.oid, 'pg_class') IS NULL",
    )
    assert undocumented == []
