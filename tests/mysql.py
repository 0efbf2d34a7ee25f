"""A throwaway MySQL server (MariaDB) for the tests: its own data folder, port and databases.

MySQL is the other database MLflow's docs set a shared store on, and ``lrwatch.sources.mlflow_sql``
reads it directly (backtick-quoted identifiers: ``key`` is a reserved word there; PyMySQL's
``%s`` parameters). Debian's ``mariadb-server`` package (``.ci/run`` installs it) provides
``mariadb-install-db`` and ``mariadbd``; this module starts a private server with them, as
``tests/postgres.py`` does a PostgreSQL cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.net import free_port

INSTALL_HINT = "apt-get install mariadb-server (.ci/run installs it)"
# Seconds the server may take to accept connections (about 1 s here).
_START_TIMEOUT_S = 60
_PASSWORD = "lrwatch"


class MysqlServer:
    """A MariaDB server on 127.0.0.1, removed by :meth:`stop`. Its administrator is ``root``
    over the server's own socket; each database gets its own logins over TCP."""

    def __init__(self) -> None:
        self.server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        self.install_db = shutil.which("mariadb-install-db")
        if self.server is None or self.install_db is None:
            raise RuntimeError(f"MariaDB server binaries (mariadbd) not found: {INSTALL_HINT}")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lrwatch-mysql-"))
        self.data, self.socket = self.folder / "data", self.folder / "mysqld.sock"
        # mariadbd refuses to run as root unless told a user: Debian's "mysql" then.
        self.user = ["--user=mysql"] if os.geteuid() == 0 else []
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if self.user:
            shutil.chown(self.folder, user="mysql")
        done = subprocess.run(
            [self.install_db, *self.user, f"--datadir={self.data}", "--skip-test-db",
             "--auth-root-authentication-method=normal"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(done.stderr or done.stdout)[-2000:]}")
        self.process = subprocess.Popen(
            [self.server, "--no-defaults", *self.user, f"--datadir={self.data}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={self.folder / 'mysqld.pid'}", "--innodb-flush-log-at-trx-commit=0",
             f"--log-error={self.folder / 'server.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                self._admin("SELECT 1")
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"mariadbd did not start: {log}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A new, empty database and a login that owns it; its URI (MLflow creates the tables)."""
        self._admin(
            f"CREATE DATABASE `{name}`",
            f"CREATE USER `{name}`@'127.0.0.1' IDENTIFIED BY '{_PASSWORD}'",
            f"GRANT ALL ON `{name}`.* TO `{name}`@'127.0.0.1'",
        )
        return f"mysql+pymysql://{name}:{_PASSWORD}@127.0.0.1:{self.port}/{name}"

    def reader_uri(self, database_uri: str) -> str:
        """The URI of a login that may only ``SELECT`` from the database's tables."""
        name = database_uri.rsplit("/", 1)[1]
        reader = f"r_{name}"[:32]  # MariaDB's longest user name: 80; MySQL's: 32
        self._admin(
            f"CREATE USER `{reader}`@'127.0.0.1' IDENTIFIED BY '{_PASSWORD}'",
            f"GRANT SELECT ON `{name}`.* TO `{reader}`@'127.0.0.1'",
        )
        return f"mysql+pymysql://{reader}:{_PASSWORD}@127.0.0.1:{self.port}/{name}"

    def _admin(self, *statements: str) -> None:
        import pymysql

        connection = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()
