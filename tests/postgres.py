"""A throwaway PostgreSQL server for the tests: its own data folder, port and databases.

A team's shared MLflow store is an ``mlflow server`` backed by PostgreSQL (``README.md``, "Pointing
lrwatch at a shared MLflow server"), and ``lrwatch.sources.mlflow_store`` reads such a database
directly. The tests run that for real: Debian's ``postgresql`` package (``.ci/run`` installs it)
provides ``initdb`` and ``pg_ctl``; this module starts a private cluster with them.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.net import free_port

INSTALL_HINT = "apt-get install postgresql (.ci/run installs it)"


def _server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folder."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster on 127.0.0.1, trusting local connections, removed by :meth:`stop`.

    Its folder is a fresh one directly under the system's temporary folder: pytest's own
    (``/tmp/pytest-of-root``) is private to its owner, and the server may run as another user.
    """

    def __init__(self) -> None:
        binaries = _server_binaries()
        if binaries is None:
            raise RuntimeError(
                f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
            )
        self.bin, self.port = binaries, free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lrwatch-postgres-"))
        self.data = self.folder / "data"
        # initdb refuses to run as root: run the server as Debian's "postgres" user then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def base_uri(self) -> str:
        return f"postgresql://lrwatch@127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.prefix:
            shutil.chown(self.folder, user="postgres")
        self._run("initdb", "-D", str(self.data), "-U", "lrwatch", "--auth=trust", "-E", "UTF8")
        self.resume()

    def pause(self) -> None:
        """Shut the server down at once (open connections break); the data stays for :meth:`resume`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        """Start the server on the cluster's data (after :meth:`start` made it, or a :meth:`pause`)."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URI (MLflow creates its tables on first use)."""
        import psycopg

        # autocommit: CREATE DATABASE cannot run inside a transaction.
        connection = psycopg.connect(f"{self.base_uri}/postgres", autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return f"{self.base_uri}/{name}"

    def reader_uri(self, database_uri: str) -> str:
        """The URI of a login that may only ``SELECT`` from the database's tables (as they are)."""
        import psycopg

        name = database_uri.rsplit("/", 1)[1]
        reader = f"reader_{name}"[:60]
        connection = psycopg.connect(database_uri, autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE ROLE "{reader}" LOGIN')
                cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{reader}"')
                cursor.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader}"')
        finally:
            connection.close()
        return f"postgresql://{reader}@127.0.0.1:{self.port}/{name}"

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        done = subprocess.run(
            [*self.prefix, str(self.bin / program), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{program} failed: {(done.stderr or done.stdout)[-2000:]}")
