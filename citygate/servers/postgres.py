"""A local PostgreSQL server (Debian package ``postgresql``) on a free loopback port.

The tests' production store: a cluster made by ``initdb`` in a temporary directory,
``trust`` authentication on loopback only, no Unix socket outside the cluster's own
directory. PostgreSQL refuses to run as root; as root (CI), the cluster belongs to the
``postgres`` system user the Debian package creates, and the server runs under it
through ``setpriv`` (which execs, so the process we signal is the postmaster itself).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from citygate.errors import ServerStartError
from citygate.servers.process import ManagedProcess, free_port

SYSTEM_USER = "postgres"  # the Debian package's user, who runs the server when we are root


def postgres_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres`` (Debian keeps them out of PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise ServerStartError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return versions[-1].parent


class LocalPostgres:
    """PostgreSQL on a free loopback port; ``url(db)`` is a SQLAlchemy URL (psycopg 3)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._bindir = postgres_bindir()
        self._as_root = os.geteuid() == 0
        # As root, the cluster lives where the postgres user can reach it: pytest's and
        # tempfile's private parents (0700, root's) are not traversable by it.
        self._own_dir = Path(tempfile.mkdtemp(prefix="citygate-pg-")) if self._as_root else None
        base = self._own_dir or workdir
        self.data_dir = base / "data"
        self.socket_dir = base / "sock"
        self.user = SYSTEM_USER if self._as_root else pwd.getpwuid(os.geteuid()).pw_name
        self._initialised = False
        self.process = ManagedProcess(
            "postgres",
            [
                *self._run_as(),
                str(self._bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
                "-c",
                "fsync=on",  # the store's promises are the production server's: keep durability on
                "-c",
                "max_connections=100",
            ],
            log_path=workdir / "postgres.log",
        )

    def _run_as(self) -> list[str]:
        if not self._as_root:
            return []
        return ["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--"]

    def _initdb(self) -> None:
        base = self.data_dir.parent
        base.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_root:
            pw = pwd.getpwnam(SYSTEM_USER)
            for p in (base, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        argv = [
            *self._run_as(),
            str(self._bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",  # loopback only, a throwaway cluster
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # initdb's own files; the server itself runs with fsync on
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServerStartError(f"initdb failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        self._initialised = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self._dsn("postgres"), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def start(self, timeout: float = 60.0) -> None:
        if not self._initialised:
            self._initdb()
        self.process.start(self.ready, timeout=timeout)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open sessions are ended, not waited for (SIGTERM would wait)."""
        self.process.signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.process.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process.stop(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL of the postmaster: its backends notice and exit; a restart recovers from WAL."""
        self.process.kill()

    def remove(self) -> None:
        """Immediate shutdown (SIGQUIT) and the cluster deleted: the shutdown checkpoint of a
        throwaway cluster with fsync on would only cost time."""
        self.process.signal(signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while self.process.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process.kill()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
