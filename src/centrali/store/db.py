"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000

# The backends we ship and test: SQLite (pysqlite) and PostgreSQL (psycopg 3, or psycopg2 /
# asyncpg-free drivers a user installs), each with or without a named driver.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
_EXAMPLES = "sqlite:///PATH/centrali.db or postgresql://USER@HOST:5432/DATABASE"


class DatabaseUrlError(ValueError):
    """A database URL this server cannot use: the message is one line saying why."""


class StoreMissingError(Exception):
    """A read-only command found no store where the settings point."""


def check_database_url(url: str, *, create_dir: bool = False) -> None:
    """Refuse, in one line, a URL of another backend, a PostgreSQL URL without a database
    name, and a SQLite file in a directory that does not exist (unless ``create_dir``: the
    data directory, which is made on first use)."""
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy.exc.ArgumentError and friends: not a URL at all
        raise DatabaseUrlError(f"not a database URL: {url!r} (use {_EXAMPLES})") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in SUPPORTED_BACKENDS:
        raise DatabaseUrlError(
            f"unsupported database {parsed.drivername!r}: centrali stores its data in SQLite "
            f"or PostgreSQL ({_EXAMPLES})"
        )
    if backend == "postgresql" and not parsed.database:
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseUrlError(
            f"no database name in {shown}: name it, e.g. postgresql://USER@HOST:5432/centrali"
        )
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        directory = Path(parsed.database).parent
        if not create_dir and not directory.is_dir():
            raise DatabaseUrlError(
                f"no such directory for the SQLite file: {directory} (create it first)"
            )


def require_existing_store(url: str) -> None:
    """For commands that only read: a SQLite file must already be there (a PostgreSQL
    database is checked by connecting)."""
    parsed = make_url(url)
    if not parsed.get_backend_name() == "sqlite":
        return
    database = parsed.database
    if database and database != ":memory:" and not Path(database).is_file():
        raise StoreMissingError(
            f"no store at {parsed.render_as_string(hide_password=True)} (nothing created): "
            "point --data-dir or --database-url at one, or make it with `centrali bootstrap`"
        )


# The SQLite store holds the private signing keys (in clear without CENTRALI_MASTER_KEY) and
# the login-ticket key: for the server's user only, whatever the process umask.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# The files SQLite keeps beside the database; it creates them with the database's mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger("centrali.store")


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here, the driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine with the pragmas and pool settings each backend needs; ``create=False``
    makes no directory for a SQLite file (nor the file: the connection is read-write, not
    create)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if not create and database and database != ":memory:":
            kwargs.setdefault("connect_args", {})
            # SQLite's URI form without mode=rwc: a missing file is an error, not a new store.
            url = f"sqlite:///file:{Path(database).resolve()}?mode=rw&uri=true"
        elif database and database != ":memory:":
            make_private_sqlite_file(Path(database))
        kwargs.setdefault("pool_size", 16)
        kwargs.setdefault("max_overflow", 48)
        connect_args = {
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            **kwargs.pop("connect_args", {}),
        }
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if kwargs.get("isolation_level") != "AUTOCOMMIT":
            event.listen(engine, "begin", _sqlite_begin)
        if create and database and database != ":memory:":
            # WAL is a property of the file: set once here, not on every new connection.
            raw = engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_timeout", 5)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


def make_private_sqlite_file(database: Path) -> None:
    """The database file, made before SQLite opens it, readable by this user only: a
    missing directory is created 0700 and a missing file 0600 (the -wal, -shm and -journal
    files SQLite creates later take the database file's mode).

    Files already there with group or other bits (every store made before this, under the
    usual 0022 umask) lose those bits: they hold the keys, and SQLite would hand the same
    mode on to its new -wal/-shm files. An existing directory is left as it is: it may be
    the operator's (a volume, /var/lib/...), and 0600 files inside it are not readable
    through it anyway."""
    directory = database.parent
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is subject to the umask
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass  # an existing store (or another worker made it just now): tightened below
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_SIDE_FILES)):
        _restrict_to_owner(path)


def _restrict_to_owner(path: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & ~0o077)
    except PermissionError:  # not the file's owner: say so, the store still opens
        log.warning("cannot make %s private (mode %o): chmod go-rwx it", path, mode)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # We emit BEGIN ourselves (below), so pysqlite must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A write transaction takes the write lock up front (BEGIN IMMEDIATE), so two writers
    # queue on busy_timeout instead of failing with "database is locked" on lock upgrade.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The engine plus the two ways to use it: a read session and a write transaction."""

    def __init__(self, url: str, *, create: bool = True, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, create=create, **engine_kwargs)
        self._create = create
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )
        self._engine_kwargs = engine_kwargs
        self._autocommit: Engine | None = None

    @property
    def autocommit_engine(self) -> Engine:
        """A second pool for single-statement reads on hot paths: no BEGIN, no ROLLBACK,
        so one lookup is one round trip."""
        if self._autocommit is None:
            # Its reads run on the event loop (token endpoint, token check, GET /records/{id}):
            # a store that does not answer must cost seconds, not the default minutes.
            # No pre-ping either: it is a round trip per checkout, as much as the query. A
            # connection the server dropped fails one request (503) and is replaced.
            kwargs: dict[str, Any] = {
                "pool_timeout": 2,
                "pool_pre_ping": False,
                **self._engine_kwargs,
            }
            if not self.url.startswith("sqlite"):
                kwargs.setdefault("connect_args", {"connect_timeout": 2})
            self._autocommit = make_engine(
                self.url, create=self._create, isolation_level="AUTOCOMMIT", **kwargs
            )
        return self._autocommit

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; nothing it does is committed."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self._autocommit is not None:
            self._autocommit.dispose()
