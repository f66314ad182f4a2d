"""An embedded, throwaway PostgreSQL cluster for the demo, the tests and local use.

The server runs as an unprivileged OS user (PostgreSQL refuses root): when we are root
that is ``postgres``; otherwise the current user. It listens on loopback only and trusts
local connections, so it is for development, never for data you care about.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PGML_EXT_PG_BIN", "/usr/lib/postgresql/15/bin"))
HOME = Path(os.environ.get("PGML_EXT_HOME", "/var/tmp/pgml_ext"))
DEFAULT_PORT = int(os.environ.get("PGML_EXT_PORT", "54329"))
SERVER_USER = os.environ.get("PGML_EXT_SERVER_USER", "postgres")


class ClusterError(RuntimeError):
    pass


@dataclass
class Cluster:
    datadir: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    user: str = "postgres"  # the database superuser we connect as
    preload: str = "pgml_ext"  # shared_preload_libraries ("citus,pgml_ext" on Citus)

    @classmethod
    def default(cls, port: int | None = None) -> Cluster:
        port = port or DEFAULT_PORT
        return cls(HOME / f"cluster-{port}", port)

    def url(self, database: str = "postgres", driver: str = "pg8000") -> str:
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{database}"

    # -- running commands as the server's OS user ----------------------------------------

    def _os_user(self) -> str | None:
        return SERVER_USER if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        user = self._os_user()
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd[:2])} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def _chown(self, path: Path) -> None:
        user = self._os_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized:
            return False
        return (
            self._run(PG_BIN / "pg_ctl", "status", "-D", self.datadir, check=False).returncode == 0
        )

    def _make_datadir(self) -> None:
        """An empty data directory the server's OS user owns (and can reach)."""
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.datadir.parent, 0o755)
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.datadir)

    def init(self) -> None:
        self._make_datadir()
        self._run(
            PG_BIN / "initdb",
            "-D",
            self.datadir,
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# pgml_ext embedded cluster\n"
                f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.datadir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 256MB\nmax_connections = 50\n"
                "logging_collector = off\n"
            )
        self._preload()

    def _preload(self) -> None:
        """pgml_ext in shared_preload_libraries: pgml.stats counts across backends in
        shared memory, and SHOW pgml.* works in a fresh session. (Appended to a cluster
        made before: the last line wins.)"""
        conf = self.datadir / "postgresql.conf"
        wanted = f"shared_preload_libraries = '{self.preload}'"
        set_to = [
            line.strip()
            for line in conf.read_text().splitlines()
            if line.startswith("shared_preload_libraries")
        ]
        if not set_to or set_to[-1] != wanted:
            with open(conf, "a") as f:
                f.write(f"{wanted}\n")

    def _library_is_newer(self) -> bool:
        """The extension's library was installed after the server started (a preloaded
        library is read once, at start)."""
        pid = self.datadir / "postmaster.pid"
        lib = self._run(PG_BIN / "pg_config", "--pkglibdir", check=False).stdout.strip()
        try:
            return Path(lib, "pgml_ext.so").stat().st_mtime > pid.stat().st_mtime
        except OSError:
            return False

    def start(self) -> str:
        """Start (initialising on first use) and return the SQLAlchemy URL."""
        if not self.initialized:
            self.init()
        self._preload()
        if self.running() and self._library_is_newer():
            self._run(PG_BIN / "pg_ctl", "stop", "-D", self.datadir, "-m", "fast", "-w")
        if not self.running():
            log = self.datadir / "server.log"
            self._run(PG_BIN / "pg_ctl", "start", "-D", self.datadir, "-l", log, "-w", "-t", "60")
            self._wait_ready()
        return self.url()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = self._run(
                PG_BIN / "pg_isready", "-h", self.host, "-p", str(self.port), check=False
            )
            if ok.returncode == 0:
                return
            time.sleep(0.2)
        raise ClusterError(
            f"server on port {self.port} did not become ready; see {self.datadir}/server.log"
        )

    def standby(self, port: int, datadir: Path | None = None) -> Cluster:
        """A hot standby of this cluster (streaming replication on loopback), started.

        Models live in the database, so the standby scores everything the primary
        registered without any file being copied. If PORT is taken (ports in the
        ephemeral range can be, by any client socket), it runs on a free one.
        """
        port = free_port(self.host, port)
        replica = Cluster(datadir or self.datadir.with_name(f"{self.datadir.name}-standby"), port)
        replica.destroy()
        replica._make_datadir()
        self._run(
            PG_BIN / "pg_basebackup",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-D",
            replica.datadir,
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        with open(replica.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\n# pgml_ext standby of port {self.port}\nport = {port}\n"
                f"unix_socket_directories = '{replica.datadir}'\nhot_standby = on\n"
            )
        replica.start()
        return replica

    def stop(self) -> None:
        if self.running():
            self._run(PG_BIN / "pg_ctl", "stop", "-D", self.datadir, "-m", "fast", "-w")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.datadir / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""


def free_port(host: str, preferred: int) -> int:
    """PREFERRED if nothing listens or is bound there, else a port the OS picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ClusterError(f"no free TCP port on {host}")
