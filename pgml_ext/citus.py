"""A Citus cluster on loopback for trying and testing pgml_ext distributed: a coordinator
and workers, each an embedded cluster (pgml_ext.cluster) that preloads Citus and
pgml_ext, run by the unprivileged OS user. `pgml-ext db start --citus` starts one.

Citus is not shipped: scripts/citus.sh builds it from source where the source is given.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pgml_ext.cluster import HOME, PG_BIN, Cluster, ClusterError

CITUS_PORT = 54350


def citus_installed() -> bool:
    """Whether this machine's PostgreSQL has the Citus library."""
    lib = subprocess.run(
        [str(PG_BIN / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return bool(lib) and Path(lib, "citus.so").exists()


@dataclass
class CitusCluster:
    coordinator: Cluster
    workers: list[Cluster]

    @classmethod
    def default(cls, port: int | None = None, workers: int = 2) -> CitusCluster:
        """The coordinator on PORT (54350), its workers on the ports after it."""
        base = port or CITUS_PORT

        def node(p: int) -> Cluster:
            return Cluster(HOME / f"citus-{p}", p, preload="citus,pgml_ext")

        return cls(node(base), [node(base + 1 + i) for i in range(workers)])

    @property
    def nodes(self) -> list[Cluster]:
        return [self.coordinator, *self.workers]

    def start(self, database: str = "postgres") -> str:
        """Start every node, make DATABASE with Citus on each, add the workers to the
        coordinator's metadata; return the coordinator's URL of DATABASE."""
        if not citus_installed():
            raise ClusterError("Citus is not installed: scripts/citus.sh builds it from its source")
        for node in self.nodes:
            node.start()
            admin = sa.create_engine(node.url(), isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    exists = conn.execute(
                        sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}
                    ).scalar()
                    if not exists:
                        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
            finally:
                admin.dispose()
            _run(node.url(database), "CREATE EXTENSION IF NOT EXISTS citus")
        coordinator = self.coordinator
        _run(
            coordinator.url(database),
            f"SELECT citus_set_coordinator_host('{coordinator.host}', {coordinator.port})",
        )
        for worker in self.workers:
            _run(
                coordinator.url(database),
                "SELECT citus_add_node(:h, :p) WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_dist_node WHERE nodename = :h AND nodeport = :p)",
                h=worker.host,
                p=worker.port,
            )
        return coordinator.url(database)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def destroy(self) -> None:
        for node in reversed(self.nodes):
            node.destroy()


def _run(url: str, sql: str, **params) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()
