"""Trust: nothing a scorer sends or an admin stores crashes the server or escapes the
database. One test (or more) per finding of the adversarial review (issue 10); the
crash witness of conftest.py watches every one of them."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from conftest import LABELS, built_model, ddl, model_files, new_engine, rows, scalar, sql_error
from pgml_ext import client, reference
from pgml_ext.cluster import HOME

pytestmark = pytest.mark.usefixtures("models", "inputs")


def _login(engine: sa.Engine, db_url: str, name: str, role: str) -> sa.Engine:
    """A login role NAME, member of ROLE, that may read the inputs."""
    with engine.begin() as conn:
        if not conn.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{name}'").scalar():
            conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN")
        conn.exec_driver_sql(f"GRANT {role} TO {name}")
        conn.exec_driver_sql(f"GRANT SELECT ON inputs TO {name}")
    return new_engine(db_url.replace("postgres@", f"{name}@"))


@pytest.fixture(scope="module")
def scorer(engine, db_url):
    return _login(engine, db_url, "sam", "pgml_scorer")


@pytest.fixture(scope="module")
def admin(engine, db_url):
    return _login(engine, db_url, "ada", "pgml_admin")


def execute(engine: sa.Engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


# -- 1. sizes are checked before anything is allocated ---------------------------------


@pytest.mark.parametrize(
    "call",
    [
        "classify_tensor_native(REF, :b, NULL, NULL)",
        "predict_tensor_native(REF, :b, NULL, NULL)",
        "classify_batch_tensor_native(REF, :b, NULL, NULL)",
        "predict_class_batch_tensor_native(REF, :b, NULL, NULL)",
        "predict_batch_tensor(REF, :b, NULL, NULL)",
    ],
)
def test_forged_packed_tensor_is_refused_before_allocation(scorer, call):
    call = "pgml_internal." + call.replace("REF", "pgml_internal.model_ref('mlp')")
    if call.startswith("pgml_internal.predict_batch"):  # set-returning
        call = f"(SELECT count(*) FROM {call})"
    for forged in (
        struct.pack("=iii", 2, 2147483647, 0),  # 2^31 - 1 empty rows, no floats
        struct.pack("=ii", 1, -5),
        struct.pack("=i", 7),
        struct.pack("=iii", 2, 65536, 65536),  # 16 GB claimed, nothing given
        b"\x01",
    ):
        code, message, _ = sql_error(scorer, f"SELECT {call}", b=forged)
        assert code == "22023" and "packed" in message, (call, forged, message)


# -- 2. flatbuffers are verified before C maps them ------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_flatbuffer_with_matching_checksum_is_a_clean_error(engine, mlp_dir, damage):
    name = f"rotten_fb_{damage}"
    client.register_model(engine, name, mlp_dir)
    data = bytes(
        scalar(
            engine,
            "SELECT l.data FROM pgml.model_litert l JOIN pgml.model_versions m "
            "ON m.id = l.model_id WHERE m.name = :n",
            n=name,
        )
    )
    if damage == "flip":
        bad = bytearray(data)
        for i in range(512, len(bad), 1024):
            bad[i] ^= 0xFF
        bad = bytes(bad)
    else:
        bad = data[:4096]
    # a superuser (admins cannot) rewrites the blob and its checksum to match
    execute(
        engine,
        "UPDATE pgml.model_litert SET data = :d, checksum = :c WHERE model_id = "
        "(SELECT id FROM pgml.model_versions WHERE name = :n)",
        d=bad,
        c=hashlib.sha256(bad).hexdigest(),
        n=name,
    )
    for _ in range(2):  # every new backend
        fresh = new_engine(engine.url)
        code, message, _ = sql_error(
            fresh, f"SELECT pgml.classify('{name}', pixels) FROM inputs WHERE id = 1"
        )
        fresh.dispose()
        assert code == "XX001" and "not a valid flatbuffer" in message, message


# -- 3. no user-settable model path; files only under the data directory -----------------


def test_model_dir_setting_is_gone_and_files_live_in_the_data_directory(
    scorer, engine, mlp_dir, cluster
):
    code = sql_error(scorer, "SET pgml.model_dir = '/tmp/planted'")[0]
    assert code in ("42704", "42602"), code  # no such setting under the reserved prefix
    client.register_model(engine, "tf_files", mlp_dir, runtime="tensorflow")
    assert (
        scalar(engine, "SELECT pgml.predict_class('tf_files', pixels) FROM inputs WHERE id = 3")
        == 3
    )
    ref = model_files(engine, "tf_files")
    assert ref.startswith(str(cluster.datadir) + "/pgsql_tmp_pgml_ext/")
    unpacked = Path(ref) / "savedmodel"
    assert (unpacked / "saved_model.pb").is_file()
    assert (Path(ref).stat().st_mode & 0o077) == 0 and (unpacked.stat().st_mode & 0o077) == 0


# -- 4. the op audit ----------------------------------------------------------------------


def _file_ops_model(path: str) -> None:
    import tensorflow as tf

    class Leaky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            secret = tf.io.read_file("/etc/hostname")
            tf.io.write_file("/tmp/pgml_ext_leak", secret)
            return {"scores": x * 2.0}

    module = Leaky()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def test_graphs_with_file_ops_are_refused_unless_a_superuser_opts_in(engine, admin):
    leaky = built_model("trust-file-ops", _file_ops_model)
    with admin.connect() as conn, pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(conn, "leaky", leaky)
    fields = info.value.orig.args[0]
    assert fields["C"] == "42501" and "ReadFile" in fields["M"] and "WriteFile" in fields["M"]
    with admin.connect() as conn, pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(conn, "leaky", leaky, allow_unsafe_ops=True)
    assert info.value.orig.args[0]["C"] == "42501"
    assert rows(engine, "SELECT 1 FROM pgml.model_versions WHERE name = 'leaky'") == []

    client.register_model(engine, "leaky", leaky, allow_unsafe_ops=True, runtime="tensorflow")
    audit = scalar(engine, "SELECT audit FROM pgml.models WHERE name = 'leaky'")
    assert {"ReadFile", "WriteFile"} <= set(audit["unsafe_ops"]) and audit["allowed_by"]
    clean = scalar(engine, "SELECT audit FROM pgml.models WHERE name = 'mlp'")
    assert clean["unsafe_ops"] == [] and clean["ops"] > 0
    mnist = scalar(engine, "SELECT audit FROM pgml.models WHERE name = 'mnist'")
    assert mnist["unsafe_ops"] == []  # a TF1 graph: its saver's RestoreV2 is expected


# -- 5. settings are real GUCs with bounds -------------------------------------------------


def test_settings_refuse_bad_values_and_show(scorer):
    for sql in (
        "SET pgml.threads = 2000",
        "SET pgml.batch_chunk_rows = 10000000",
        "SET pgml.batch_chunk_rows = 0",
        "SET pgml.batch_chunk_rows = 'abc'",
        "SET pgml.model_cache_size = 1000",
        "SET pgml.native_scoring = 'maybe'",
        "SET pgml.block_rows = 0",
        "SET pgml.block_rows = 100000",
        "SET pgml.track_stats = off",
        "SET pgml.stats_max = 10",
    ):
        assert sql_error(scorer, sql)[0] in ("22023", "42501", "55P02"), sql
    assert sql_error(scorer, "SET pgml.threads = 2")[0] == "42501"  # superusers decide
    assert sql_error(scorer, "SET pgml.no_such_setting = 1")[0] in ("42704", "42602")
    got = rows(
        scorer,
        "SELECT name, setting, min_val, max_val, context FROM pg_settings "
        "WHERE name LIKE 'pgml.%' ORDER BY name",
    )
    assert [r[0] for r in got] == [
        "pgml.batch_chunk_rows",
        "pgml.block_rows",
        "pgml.model_cache_size",
        "pgml.native_scoring",
        "pgml.stats_max",
        "pgml.threads",
        "pgml.track_stats",
    ]
    assert ("pgml.threads", "1", "1", "16", "superuser") in got
    assert ("pgml.track_stats", "on", None, None, "superuser") in got
    assert ("pgml.block_rows", "64", "1", "8192", "user") in got
    assert scalar(scorer, "SHOW pgml.batch_chunk_rows") == "1024"


def test_statement_timeout_stops_a_batch_at_the_largest_chunk_setting(engine):
    """Chunks are sized by time as well (benchmarks/cancel.py measures how soon)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET pgml.batch_chunk_rows = 65536")
        conn.exec_driver_sql("SET statement_timeout = '300ms'")
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.exec_driver_sql(
                "SELECT cardinality(pgml.classify_batch('mnist', array_agg(pixels))) "
                "FROM inputs, generate_series(1, 60)"
            )
        assert info.value.orig.args[0]["C"] == "57014"
        conn.rollback()


# -- 6 and 9. the C parser: O(input) memory, and exactly what upb accepts ------------------


def _entry(key: bytes, feature: bytes) -> bytes:
    body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + _varint(len(feature)) + feature
    return b"\x0a" + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _floats(values: np.ndarray) -> bytes:
    raw = values.astype("<f4").tobytes()
    return b"\x0a" + _varint(len(raw)) + raw


def _example(features: bytes) -> bytes:
    return b"\x0a" + _varint(len(features)) + features


def test_examples_that_upb_reads_differently_score_the_same_on_both_paths(engine, digits):
    x = digits[0][7].ravel()
    float_list = b"\x12" + _varint(len(_floats(x))) + _floats(x)
    cases = {
        "plain": _example(_entry(b"x", float_list)),
        "float_list twice (upb merges: 1568 values)": _example(
            _entry(b"x", float_list + float_list)
        ),
        "field 0 as a two-byte tag": _example(_entry(b"x", float_list)) + b"\x80\x00\x00",
        "field number 2^29": _example(_entry(b"x", float_list)) + _varint((1 << 29) << 3) + b"\x00",
        "non-minimal tag": b"\x8a\x00"
        + _varint(len(_entry(b"x", float_list)))
        + _entry(b"x", float_list),
        "features twice": _example(_entry(b"x", float_list)) * 2,
        "duplicate key": _example(_entry(b"x", float_list) + _entry(b"x", float_list)),
        "bad UTF-8 key": _example(_entry(b"\xff", float_list)),
    }
    for what, example in cases.items():
        answers = []
        for native in ("on", "off"):
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
                try:
                    got = conn.execute(
                        sa.text("SELECT pgml.predict_class('mlp', CAST(:e AS bytea))"),
                        {"e": example},
                    ).scalar()
                    answers.append(("ok", got))
                except sa.exc.DatabaseError as e:
                    answers.append(("error", e.orig.args[0]["C"]))
                    conn.rollback()
        assert answers[0] == answers[1], (what, answers)
        if what == "plain":
            assert answers[0] == ("ok", 7)


def test_many_empty_map_entries_cost_memory_in_proportion(engine):
    example = _example(b"\x0a\x00" * 10_000_000)  # 20 MB of empty entries
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pgml.predict_class('mlp', pixels) FROM inputs LIMIT 1"))
        before = conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()["rss_mb"]
        with pytest.raises(sa.exc.DatabaseError) as info:
            conn.execute(
                sa.text("SELECT pgml.predict_class('mlp', CAST(:e AS bytea))"), {"e": example}
            )
        assert info.value.orig.args[0]["C"] == "22023"
        conn.rollback()
        after = conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()["rss_mb"]
    assert after - before < 4 * 20, (before, after)


# -- 7. outputs without a batch dimension ----------------------------------------------------


def _batch_mean_model(path: str) -> None:
    import tensorflow as tf

    w = tf.constant(np.random.default_rng(1).random((784, 10)), tf.float32)

    class Mean(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
        def serve(self, x):
            return {"scores": tf.reduce_mean(tf.matmul(x, w), axis=0, keepdims=True)}

    module = Mean()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def test_batch_of_a_model_without_a_batch_dimension_never_reads_unwritten_memory(engine):
    client.register_model(engine, "batch_mean", built_model("trust-batch-mean", _batch_mean_model))
    query = (
        "SELECT pgml.predict_class_batch('batch_mean', array_agg(pixels ORDER BY id)) "
        "FROM inputs WHERE id <= 40"
    )
    outcomes = []
    for native in ("on", "off", "on"):
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET pgml.native_scoring = {native}")
            try:
                outcomes.append(("ok", conn.execute(sa.text(query)).scalar()))
            except sa.exc.DatabaseError as e:
                outcomes.append(("error", e.orig.args[0]["C"]))
                conn.rollback()
    assert outcomes[0] == outcomes[1] == outcomes[2], outcomes


# -- 8. a directory never serves a different row ------------------------------------------


def test_reinstalled_extension_and_new_labels_never_serve_stale_files(cluster, mlp_dir):
    admin_engine = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS trust_stale WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE trust_stale")
    url = cluster.url("trust_stale")
    client.install(url)
    db = new_engine(url)
    try:
        reference.load_table(db, "inputs", 20)
        query = "SELECT pgml.classify('d', pixels) FROM inputs WHERE id = 7"
        client.register_model(db, "d", mlp_dir, labels=[f"a{i}" for i in range(10)])
        assert scalar(db, query) == "a7"
        with db.begin() as conn:
            conn.exec_driver_sql("DROP EXTENSION pgml_ext CASCADE")
        client.install(url)
        client.register_model(db, "d", mlp_dir, labels=LABELS)  # same id, same checksum
        assert scalar(db, "SELECT max(id) FROM pgml.model_versions") == 1
        assert scalar(db, query) == "seven"
        execute(
            db, "UPDATE pgml.model_versions SET labels = ARRAY['x','x','x','x','x','x','x','z']"
        )
        assert scalar(db, query) == "z"
    finally:
        db.dispose()
        with admin_engine.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE trust_stale WITH (FORCE)")
        admin_engine.dispose()


# -- 10. no blobs, paths or deleted versions for scorers --------------------------------------


def test_deleted_version_cannot_be_scored_through_its_directory(engine, scorer, mlp_dir):
    client.register_model(engine, "to_delete", mlp_dir)
    ref = scalar(engine, "SELECT pgml_internal.model_ref('to_delete')")
    assert "/" not in ref  # a name: no server path for anyone
    assert os.path.isdir(model_files(engine, "to_delete"))
    execute(engine, "SELECT pgml.delete_model('to_delete')")
    for who in (engine, scorer):
        code, message, _ = sql_error(
            who,
            "SELECT pgml_internal.classify_native(:r, example, NULL, NULL) FROM inputs LIMIT 1",
            r=ref,
        )
        assert code == "22023" and "not a model reference" in message
    for sql in (
        "SELECT * FROM pgml_internal.model_files(1)",
        "SELECT pgml_internal.native_plan(pgml_internal.model_ref('mlp'), true, NULL)",
    ):
        assert sql_error(scorer, sql)[0] == "42501", sql


# -- 11. one writer per version; leftovers cleaned --------------------------------------------


def test_concurrent_first_loads_write_one_copy_and_leftovers_go(engine, mlp_dir, cluster):
    version = client.register_model(engine, "crowd", mlp_dir)
    identity = scalar(
        engine,
        "SELECT id || '-' || pgml_internal.model_identity(id) FROM pgml.model_versions "
        "WHERE name = 'crowd' AND version = :v",
        v=version,
    )
    db_oid = scalar(engine, "SELECT oid FROM pg_database WHERE datname = current_database()")
    root = cluster.datadir / "pgsql_tmp_pgml_ext" / str(db_oid)
    leftover = root / f"{identity}.tmp999999"
    leftover.mkdir(parents=True)  # what a writer killed mid-write leaves
    (leftover / "savedmodel.tar").write_bytes(b"partial")
    owner = root.stat()
    for p in (leftover, leftover / "savedmodel.tar"):
        os.chown(p, owner.st_uid, owner.st_gid)

    results, errors = [], []

    def first_load():
        e = new_engine(engine.url)
        try:
            results.append(
                scalar(e, "SELECT pgml.predict_class('crowd', pixels) FROM inputs WHERE id = 9")
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            e.dispose()

    threads = [threading.Thread(target=first_load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [9] * 8
    names = sorted(os.listdir(root))
    assert identity in names and not [n for n in names if n.startswith(identity + ".tmp")]


def test_references_hold_across_a_cursors_fetches(scorer):
    """A reference is good for the statement that resolved it; each FETCH of a cursor
    is a statement of its own and resolves again (same snapshot, same version)."""
    with scorer.begin() as conn:
        conn.exec_driver_sql(
            "DECLARE c CURSOR FOR SELECT pgml.predict_class('mlp', example) FROM inputs "
            "WHERE id < 30 ORDER BY id"
        )
        got = []
        for _ in range(3):
            got += [r[0] for r in conn.exec_driver_sql("FETCH 10 FROM c")]
        conn.exec_driver_sql("CLOSE c")
    plain = rows(
        scorer, "SELECT pgml.predict_class('mlp', example) FROM inputs WHERE id < 30 ORDER BY id"
    )
    assert got == [r[0] for r in plain] and len(got) == 30, (got, plain)


# -- 12. the crash witness sees a crash -------------------------------------------------


def test_the_crash_witness_sees_a_backend_crash(tmp_path):
    """On a throwaway cluster of its own: a backend killed by SIGSEGV restarts every
    connection; the witness of conftest.py must notice (the start time would not)."""
    import signal

    import pg8000.dbapi

    from conftest import Witness
    from pgml_ext.cluster import Cluster, free_port

    other = Cluster(HOME / "crash-cluster", free_port("127.0.0.1", 54369))
    other.destroy()
    other.start()
    try:
        witness = Witness(other)
        witness.arm()
        victim = pg8000.dbapi.connect(user=other.user, host=other.host, port=other.port)
        cur = victim.cursor()
        cur.execute("SELECT pg_backend_pid(), pg_postmaster_start_time()")
        pid, started = cur.fetchone()
        os.kill(pid, signal.SIGSEGV)
        for _ in range(100):  # the postmaster ends every backend, then starts afresh
            if not witness.alive():
                break
            time.sleep(0.1)
        assert witness.conn is None  # dropped
        other._wait_ready()
        assert any("terminated by signal" in line for line in witness.crashes())
        check = pg8000.dbapi.connect(user=other.user, host=other.host, port=other.port)
        cur = check.cursor()
        cur.execute("SELECT pg_postmaster_start_time()")
        assert cur.fetchone()[0] == started  # why the start time cannot tell
        check.close()
    finally:
        other.destroy()


def test_pl_python_sees_the_server_packages_and_no_dev_tools(engine):
    """PL/Python's path holds the server venv (the `server` extra): what scoring needs,
    no test runner, linter or client library a model's code could reach."""
    ddl(
        engine,
        """DO $$
import importlib.util
missing = [m for m in ("numpy", "google.protobuf", "tensorflow", "ai_edge_litert",
                       "pgml_ext.indb") if importlib.util.find_spec(m) is None]
extra = [m for m in ("pytest", "ruff", "sqlalchemy", "pg8000", "psycopg", "matplotlib",
                     "sklearn", "fastapi") if importlib.util.find_spec(m) is not None]
if missing or extra:
    plpy.error(f"missing {missing}, not for the server {extra}")
$$ LANGUAGE plpython3u""",
    )


# -- round 3: references and shared memory ----------------------------------------------

# Every PL/Python function that takes a reference and is granted to scorers.
PL_PYTHON_ENTRIES = [
    "pgml_internal.predict_text(:r, 'a text', NULL, NULL)",
    "pgml_internal.classify_text(:r, 'a text', NULL, NULL)",
    "pgml_internal.predict_class_text(:r, 'a text', NULL, NULL)",
    "pgml_internal.score_row(:r, (SELECT example FROM inputs LIMIT 1), false)",
]


def test_an_old_reference_is_refused_after_delete_and_pin(engine, scorer, mlp_dir):
    """A deleted or unpinned version kept answering through the PL/Python entry points
    (which skipped the check the C path makes), while still loaded in the backend."""
    for _ in range(2):
        client.register_model(engine, "old_ref", mlp_dir)
    with scorer.connect() as conn:
        conn.exec_driver_sql("SET pgml.native_scoring = off")  # every row to PL/Python
        ref = conn.exec_driver_sql("SELECT pgml_internal.model_ref('old_ref')").scalar()
        with pytest.raises(sa.exc.DatabaseError) as info:  # from another statement
            conn.execute(
                sa.text("SELECT pgml_internal.score_row(:r, example, false) FROM inputs LIMIT 1"),
                {"r": ref},
            ).all()
        assert info.value.orig.args[0]["C"] == "22023"
        conn.rollback()
        # loaded in this backend, scored by PL/Python
        assert conn.exec_driver_sql(
            "SELECT pgml.classify('old_ref', example) FROM inputs LIMIT 1"
        ).scalar()
        conn.commit()
        execute(engine, "SELECT pgml.pin_model('old_ref', 1)")
        execute(engine, "SELECT pgml.delete_model('old_ref', 2)")
        for call in PL_PYTHON_ENTRIES:
            with pytest.raises(sa.exc.DatabaseError) as info:
                conn.execute(sa.text(f"SELECT {call}"), {"r": ref}).all()
            fields = info.value.orig.args[0]
            assert fields["C"] == "22023" and "not a model reference" in fields["M"], call
            conn.rollback()
    execute(engine, "SELECT pgml.delete_model('old_ref', force => true)")


def _stats_entries(engine) -> int:
    return scalar(engine, "SELECT count(*) FROM pgml_internal.stats_entries()")


def test_forged_references_make_no_stats_entries(engine, scorer):
    """A scorer looping over forged references made 13,129 entries in shared memory with
    stats_max = 1000; a role with no privileges then got 'out of shared memory'."""
    before, dropped = _stats_entries(engine), scalar(engine, "SELECT pgml.stats_dropped()")
    loop = """
        DO $$ BEGIN
          FOR n IN 1000000..1001500 LOOP
            BEGIN
              PERFORM pgml_internal.predict_text(n || '-0123456789abcdef', 'x', NULL, NULL);
            EXCEPTION WHEN others THEN NULL;
            END;
          END LOOP;
        END $$"""
    with scorer.begin() as conn:
        conn.exec_driver_sql(loop)
    assert _stats_entries(engine) == before
    assert scalar(engine, "SELECT pgml.stats_dropped()") == dropped
    with engine.begin() as conn:  # shared memory is there for everyone
        conn.exec_driver_sql("CREATE TEMP TABLE after_forgery (i int)")


# -- round 3: a damaged copy on disk -----------------------------------------------------


@pytest.mark.parametrize("every", [31, 97])
def test_a_flatbuffer_damaged_on_disk_is_written_again(engine, mlp_dir, every):
    """Bit flips in the mapped .tflite of the data directory (a bad restore, damage)
    segfaulted every new backend that scored the model. It is found by its checksum
    before first use, written again from the database, and scores as before. (A restore
    writes new files: a new inode. Damage that keeps a file's inode, size and times is
    not looked for again once the file was found sound: see file_check.c.)"""
    name = f"disk_rot_{every}"
    client.register_model(engine, name, mlp_dir)
    sql = f"SELECT pgml.classify('{name}', pixels) FROM inputs WHERE id < 50 ORDER BY id"
    want = rows(engine, sql)
    directory = Path(model_files(engine, name))
    flatbuffers = sorted(directory.glob("*.tflite"))
    assert flatbuffers
    for path in flatbuffers:
        bad = bytearray(path.read_bytes())
        for i in range(0, len(bad), every):
            bad[i] ^= 0x5A
        restored = path.with_name(path.name + ".restored")
        restored.write_bytes(bytes(bad))
        os.chown(restored, path.stat().st_uid, path.stat().st_gid)
        os.replace(restored, path)
    for attempt in range(2):  # new backends: the first one writes the copy again
        fresh = new_engine(engine.url)
        with fresh.connect() as conn:
            got = conn.exec_driver_sql(sql).all()
            notices = [n.get(b"M", b"").decode() for n in conn.connection.driver_connection.notices]
        fresh.dispose()
        assert got == want
        damaged = [n for n in notices if "damaged" in n]
        assert bool(damaged) == (attempt == 0), notices
    assert all(path.read_bytes() != bytes(bad) for path in flatbuffers)


def test_a_sound_copy_is_hashed_once_per_file(engine, mlp_dir):
    """Later backends trust a file hashed sound while its identity (inode, size, times)
    stays: the first call stays in milliseconds for a large model."""
    client.register_model(engine, "hashed_once", mlp_dir)
    scalar(engine, "SELECT pgml.classify('hashed_once', pixels) FROM inputs LIMIT 1")
    directory = Path(model_files(engine, "hashed_once"))
    markers = sorted(directory.glob("*.tflite.sound"))
    assert markers and len(markers) == len(list(directory.glob("*.tflite")))
    marked = [m.stat().st_mtime_ns for m in markers]
    fresh = new_engine(engine.url)
    scalar(fresh, "SELECT pgml.classify('hashed_once', pixels) FROM inputs LIMIT 1")
    fresh.dispose()
    assert [m.stat().st_mtime_ns for m in markers] == marked


# -- round 3: a schema pgml that is not ours -----------------------------------------------


def test_install_refuses_a_schema_pgml_it_does_not_own(cluster):
    """CREATE EXTENSION took an existing schema pgml as it found it: PostgresML's, or one
    made first by a user with CREATE on the database, whose pgml.predict(text, real[])
    then answered, and whose owner could drop the model tables."""
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS hijack WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE hijack")
        if not conn.exec_driver_sql("SELECT 1 FROM pg_roles WHERE rolname = 'mallory'").scalar():
            conn.exec_driver_sql("CREATE ROLE mallory LOGIN")
        conn.exec_driver_sql("GRANT CREATE ON DATABASE hijack TO mallory")
    admin.dispose()
    engine = sa.create_engine(cluster.url("hijack"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET ROLE mallory")
            conn.exec_driver_sql("CREATE SCHEMA pgml")
            conn.exec_driver_sql(
                "CREATE FUNCTION pgml.predict(text, real[]) RETURNS real[] LANGUAGE sql "
                "AS 'SELECT ARRAY[1]::real[]'"
            )
            conn.exec_driver_sql("RESET ROLE")
            for attempt in ("mallory's, with her function", "mallory's, empty", "ours, used"):
                with pytest.raises(sa.exc.DatabaseError) as info:
                    conn.exec_driver_sql("CREATE EXTENSION pgml_ext CASCADE")
                fields = info.value.orig.args[0]
                assert fields["C"] == "42P06", (attempt, fields)
                assert "not pgml_ext's" in fields["M"] and "PostgresML" in fields["H"]
                if attempt.startswith("mallory's, with"):
                    conn.exec_driver_sql("DROP FUNCTION pgml.predict(text, real[])")
                elif attempt.startswith("mallory's, empty"):
                    conn.exec_driver_sql("DROP SCHEMA pgml")
                    conn.exec_driver_sql("CREATE SCHEMA pgml")
                    conn.exec_driver_sql("CREATE TABLE pgml.other (i int)")
            assert (
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_extension WHERE extname = 'pgml_ext'"
                ).scalar()
                == 0
            )
            conn.exec_driver_sql("DROP TABLE pgml.other")  # empty and the superuser's
            conn.exec_driver_sql("CREATE EXTENSION pgml_ext CASCADE")
            assert conn.exec_driver_sql("SELECT count(*) FROM pgml.models").scalar() == 0
    finally:
        engine.dispose()
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS hijack WITH (FORCE)")
        admin.dispose()
