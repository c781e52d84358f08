"""A real PostgreSQL server in a temporary folder, on a free port of 127.0.0.1.

Started with the machine's own `initdb` and `pg_ctl` (PostgreSQL 15 on the image; `.ci/run`
installs it where it is missing). PostgreSQL refuses to run as root, and tests and CI run
as root, so there the server runs as the unprivileged `postgres` user (`.ci/run` creates
it), in a folder that user owns. Durability is switched off (`fsync=off`): these servers
hold test data only, and they start and answer faster without it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg

from core.errors import DatabaseError

T = TypeVar("T")
SERVER_USER = "postgres"
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresUnavailable(RuntimeError):
    """This machine cannot run a test server: what is missing, and how to get it."""


def find_binaries() -> Path:
    """The folder of `initdb` and `pg_ctl`: on PATH, or where Debian installs them."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no initdb): `apt-get install postgresql`, "
        "or run `.ci/run`, which installs it"
    )


class PostgresServer:
    """`with PostgresServer() as server:` a running server; `server.url(name)` a database."""

    def __init__(self) -> None:
        self._bin = find_binaries()
        self._user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="pg-test-"))
        if self._user:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._count = 0

    def __enter__(self) -> PostgresServer:
        try:
            self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--no-instructions")  # fmt: skip
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(f"port = {self.port}\n")
                conf.writelines(f"{name} = {value}\n" for name, value in _SETTINGS.items())
            self.start()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once, as a crash or an outage would: connections are cut."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        self._count += 1
        name = f"test_{self._count}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self, program: str, *args: object) -> None:
        command = [str(self._bin / program), *map(str, args)]
        result = subprocess.run(
            command,
            cwd=self.root,  # the server's user may not be allowed into ours
            user=self._user.pw_uid if self._user else None,
            group=self._user.pw_gid if self._user else None,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )


def once_it_answers(call: Callable[[], T], attempts: int = 30) -> T:
    """`call()`'s result once the database is back: each failed try waits out the pool's
    `wait_seconds` while it reconnects."""
    for _ in range(attempts - 1):
        with contextlib.suppress(DatabaseError):
            return call()
    return call()


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: we ourselves, unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"PostgreSQL does not run as root and there is no user {SERVER_USER!r} to run it: "
            f"`useradd --system {SERVER_USER}` (`.ci/run` does)"
        ) from None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
