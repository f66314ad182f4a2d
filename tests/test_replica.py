"""A hot standby scores models registered on the primary, with no files copied."""

import time

import pytest
import sqlalchemy as sa

from conftest import new_engine, scalar
from pgml_ext import client

pytestmark = pytest.mark.usefixtures("models", "inputs")


@pytest.fixture(scope="module")
def standby(cluster):
    replica = cluster.standby(cluster.port + 1)
    yield replica
    replica.destroy()


def _wait_for_replay(primary: sa.Engine, replica: sa.Engine, timeout: float = 30) -> None:
    # the insert position: with synchronous_commit = off (the test cluster's setting) a
    # commit can be in WAL buffers, past pg_current_wal_lsn() (the write position)
    target = scalar(primary, "SELECT pg_current_wal_insert_lsn()::text")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if scalar(replica, "SELECT pg_last_wal_replay_lsn() >= CAST(:t AS pg_lsn)", t=target):
            return
        time.sleep(0.1)
    raise AssertionError("standby did not catch up")


def test_standby_scores_a_model_registered_on_the_primary(engine, standby, mlp_dir, db_url):
    version = client.register_model(engine, "on_primary", mlp_dir, labels=list("abcdefghij"))
    replica = new_engine(standby.url(db_url.rsplit("/", 1)[1]))
    _wait_for_replay(engine, replica)
    assert scalar(replica, "SELECT pg_is_in_recovery()")
    assert (
        scalar(
            replica,
            f"SELECT pgml.classify('on_primary@{version}', pixels) FROM inputs WHERE id = 3",
        )
        == "d"
    )
    # both runtimes work read-only: LiteRT (mlp) and TensorFlow (TF Serving classify)
    assert scalar(replica, "SELECT pgml.classify('mnist', example) FROM inputs WHERE id = 2") == "2"
    assert scalar(replica, "SELECT count(*) FROM pgml.models WHERE name = 'on_primary'") == 1
    # registering is for the primary: a standby refuses writes with a clear error
    with replica.connect() as conn, pytest.raises(sa.exc.DatabaseError) as info:
        client.register_model(conn, "on_standby", mlp_dir)
    assert info.value.orig.args[0]["C"] == "25006"  # read_only_sql_transaction
