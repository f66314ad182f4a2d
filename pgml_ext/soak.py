"""`pgml-ext soak` / `make soak`: many sessions score while versions come and go.

N scoring sessions run `SELECT pgml.classify(...)` in a loop while an admin session
registers a new version every second and deletes old ones. Each version's labels carry
its number, so every statement can be checked to have used exactly one version.
Reports statements, rows/s, errors by SQLSTATE, mixed statements, backend memory, and
whether the server restarted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

MODEL = "soak"
KEEP_VERSIONS = 1  # older versions are deleted as soon as a newer one is registered


@dataclass
class Report:
    sessions: int
    seconds: float
    statements: int = 0
    rows: int = 0
    mixed_statements: int = 0
    errors: Counter = field(default_factory=Counter)
    registered: int = 0
    deleted: int = 0
    rss_mb_first: dict[int, float] = field(default_factory=dict)
    rss_mb_last: dict[int, float] = field(default_factory=dict)
    server_restarted: bool = False

    @property
    def max_rss_mb(self) -> float:
        return max(self.rss_mb_last.values(), default=0.0)

    @property
    def max_growth_mb(self) -> float:
        return max(
            (
                self.rss_mb_last[p] - self.rss_mb_first.get(p, self.rss_mb_last[p])
                for p in self.rss_mb_last
            ),
            default=0.0,
        )

    def text(self) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.sessions} sessions for {self.seconds:.0f} s: {self.statements:,} statements, "
            f"{self.rows / self.seconds:,.0f} rows/s; {self.registered} versions registered, "
            f"{self.deleted} deleted; errors: {errors}; statements mixing versions: "
            f"{self.mixed_statements}; backend RSS max {self.max_rss_mb:.0f} MB, largest growth "
            f"{self.max_growth_mb:+.0f} MB; server restarted: {self.server_restarted}"
        )


def _labels(version: int) -> list[str]:
    return [f"v{version}-{i}" for i in range(10)]


def _sqlstate(e: Exception) -> str:
    orig = getattr(e, "orig", None)
    if orig is not None and orig.args and isinstance(orig.args[0], dict):
        return orig.args[0].get("C", "?")
    return type(e).__name__


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(
    url: str,
    model_dir: str | Path,
    sessions: int = 16,
    seconds: float = 60,
    table: str = "inputs",
    keep: int = KEEP_VERSIONS,
) -> Report:
    from pgml_ext import client

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pgml.delete_model(:m)"), {"m": MODEL})
    # A connection held open for the whole run: a backend crash restarts the server and
    # drops it (pg_postmaster_start_time() does not change on a crash-restart).
    witness = engine.connect()
    client.register_model(engine, MODEL, model_dir, labels=_labels(1))
    report = Report(sessions, seconds, registered=1)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    pids: list[int] = []

    def score(k: int) -> None:
        with engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with lock:
                pids.append(pid)
            sql = sa.text(
                f"SELECT pgml.classify(:m, pixels) FROM {table} "
                f"WHERE mod(id, {sessions}) = {k} LIMIT 100"
            )
            while time.monotonic() < deadline:
                try:
                    labels = conn.execute(sql, {"m": MODEL}).scalars().all()
                    conn.commit()
                except sa.exc.DBAPIError as e:
                    conn.rollback()
                    with lock:
                        report.errors[_sqlstate(e)] += 1
                    time.sleep(0.1)
                    continue
                versions = {label.split("-")[0] for label in labels}
                with lock:
                    report.statements += 1
                    report.rows += len(labels)
                    report.mixed_statements += len(versions) > 1

    admin = sa.create_engine(url, pool_size=1)  # one backend: TensorFlow imported once

    def administer() -> None:
        version = 1
        while time.monotonic() < deadline - 2:
            time.sleep(1)
            try:
                version = client.register_model(
                    admin, MODEL, model_dir, labels=_labels(version + 1)
                )
                with admin.begin() as conn:
                    gone = (
                        conn.execute(
                            sa.text(
                                "SELECT pgml.delete_model(:m, version) FROM pgml.models "
                                "WHERE name = :m AND version <= :v"
                            ),
                            {"m": MODEL, "v": version - keep},
                        )
                        .scalars()
                        .all()
                    )
                with lock:
                    report.registered += 1
                    report.deleted += sum(gone)
            except sa.exc.DBAPIError as e:
                with lock:
                    report.errors[f"admin {_sqlstate(e)}"] += 1

    def sample_memory() -> None:
        while time.monotonic() < deadline:
            time.sleep(2)
            with lock:
                current = list(pids)
            for pid in current:
                rss = _rss_mb(pid)
                if rss is not None:
                    report.rss_mb_first.setdefault(pid, rss)
                    report.rss_mb_last[pid] = rss

    threads = [threading.Thread(target=score, args=(k,)) for k in range(sessions)]
    threads += [threading.Thread(target=administer), threading.Thread(target=sample_memory)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        witness.execute(sa.text("SELECT 1"))
        witness.close()
    except sa.exc.DBAPIError:
        report.server_restarted = True
    engine.dispose()
    admin.dispose()
    return report
