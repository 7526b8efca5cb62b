"""The token endpoint's ClientStore: one indexed lookup by client_id per token request.

This is the hottest query of the server, so it skips the ORM and the SQL expression layer at
run time: the statement is compiled once for the engine's dialect and executed on a raw
DB-API connection kept per thread (the token endpoint runs on the event loop's thread, so a
worker holds one such connection). Nothing is cached: a rotation or a revoke committed by
any process is seen by the very next request.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import DBAPIError

from centrali.oauth.ports import ClientRecord
from centrali.store.tables import ServiceAccount, Workspace

_sa = ServiceAccount.__table__
_ws = Workspace.__table__

# The account by its unique client_id, and its workspace by primary key: one index lookup
# each. Group names come from the account row (see repositories.set_account_groups).
# The probe is a one-row constant LEFT JOINed to the account, so a miss answers one row of
# NULLs down the same path as a hit (see find_client: every failure costs the same work).
_probe = select(bindparam("client_id", type_=_sa.c.client_id.type).label("cid")).subquery("q")
_CLIENT_LOOKUP = (
    select(
        _sa.c.secret_hash,
        _sa.c.status,
        _sa.c.grant_types,
        _sa.c.scope,
        _sa.c.tokens_valid_after,
        _ws.c.slug,
        _sa.c.group_names,
    )
    .select_from(_probe)
    .outerjoin(_sa, _sa.c.client_id == _probe.c.cid)
    .outerjoin(_ws, _ws.c.id == _sa.c.workspace_id)
)
# What a miss decodes instead of a row, shaped like a real one.
_ABSENT = (None, "absent", '["client_credentials"]', "openid", 0, "", '["api-users"]')


class StoreUnavailableError(Exception):
    """The store did not answer; the caller answers 503."""


class SqlClientStore:
    """ClientStore over an autocommit engine (no BEGIN/ROLLBACK around the lookup)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        compiled = _CLIENT_LOOKUP.compile(dialect=engine.dialect)
        self._sql = compiled.string
        positional = compiled.positiontup
        self._positional = positional is not None
        self._local = threading.local()
        # The driver's own errors, and SQLAlchemy's wrapping of them (pool connect).
        self._errors: tuple[type[Exception], ...] = (engine.dialect.loaded_dbapi.Error, DBAPIError)

    def _params(self, client_id: str) -> Any:
        return (client_id,) if self._positional else {"client_id": client_id}

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.raw_connection()
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):  # it is being thrown away anyway
                conn.invalidate()

    def find_client(self, client_id: str) -> ClientRecord | None:
        rows = None
        for attempt in (1, 2):  # a connection the server closed is replaced once
            try:
                cursor = self._connection().cursor()
                try:
                    cursor.execute(self._sql, self._params(client_id))
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
                break
            except self._errors as exc:
                self._drop_connection()
                if attempt == 2:
                    raise StoreUnavailableError(type(exc).__name__) from exc
        row = rows[0] if rows and rows[0][1] is not None else None  # status: never NULL
        # A miss decodes and builds a record as a hit does, then drops it.
        secret_hash, status, grant_types, scope, valid_after, slug, groups = row or _ABSENT
        if isinstance(grant_types, str):  # SQLite hands JSON back as text
            grant_types = json.loads(grant_types)
        if isinstance(groups, str):
            groups = json.loads(groups)
        record = ClientRecord(
            client_id=client_id,
            secret_hash=secret_hash,
            active=status == "active",
            workspace=slug,
            grant_types=tuple(grant_types or ()),
            scopes=tuple(scope.split()),
            groups=tuple(groups or ()),
            tokens_valid_after=int(valid_after or 0),
        )
        return record if row is not None else None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
