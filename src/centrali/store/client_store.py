"""The token endpoint's ClientStore: one index probe by client_id per token request, many
requests' probes in one statement.

This is the hottest query of the server, so it skips the ORM and the SQL expression layer at
run time: the statement is compiled once for the engine's dialect and executed on a raw
DB-API connection kept per thread (the token endpoint runs on the event loop's thread, so a
worker holds one such connection). Nothing is cached: each statement runs after the requests
it answers arrived, so a rotation or a revoke committed by any process before a request is
seen by that request.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Select, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from centrali.oauth.ports import ClientRecord
from centrali.store.tables import ServiceAccount, Workspace

_sa = ServiceAccount.__table__
_ws = Workspace.__table__


def _client_lookup(dialect_name: str) -> Select[Any]:
    """The accounts of a list of client_ids, and their workspaces: one index probe per id.

    The ids are a table (``unnest`` of an array on PostgreSQL, ``json_each`` of a JSON array
    on SQLite) LEFT JOINed to the accounts, so the statement is the same for any number of
    ids, and every id answers one row: a miss is a row of NULLs, down the same path as a hit
    (see find_clients: every failure costs the same work). Group names come from the
    account row (see repositories.set_account_groups)."""
    if dialect_name == "postgresql":
        ids = (
            func.unnest(bindparam("ids", type_=ARRAY(String)))
            .table_valued("cid")
            .render_derived(name="q")
        )
        cid = ids.c.cid
    else:
        ids = func.json_each(bindparam("ids", type_=String)).table_valued("value").alias("q")
        cid = ids.c.value
    return (
        select(
            cid,
            _sa.c.secret_hash,
            _sa.c.status,
            _sa.c.grant_types,
            _sa.c.scope,
            _sa.c.tokens_valid_after,
            _ws.c.slug,
            _sa.c.group_names,
        )
        .select_from(ids)
        .outerjoin(_sa, _sa.c.client_id == cid)
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
        self._array = engine.dialect.name == "postgresql"
        compiled = _client_lookup(engine.dialect.name).compile(dialect=engine.dialect)
        self._sql = compiled.string
        self._positional = compiled.positiontup is not None
        self._local = threading.local()
        # The driver's own errors, and SQLAlchemy's wrapping of them (pool connect).
        self._errors: tuple[type[Exception], ...] = (engine.dialect.loaded_dbapi.Error, DBAPIError)

    def _params(self, client_ids: Sequence[str]) -> Any:
        ids: Any = list(client_ids) if self._array else json.dumps(list(client_ids))
        return (ids,) if self._positional else {"ids": ids}

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
        return self.find_clients([client_id])[0]

    def find_clients(self, client_ids: Sequence[str]) -> list[ClientRecord | None]:
        """The client of each id (None where there is none), in order: one statement,
        however many ids. The token endpoint gathers the lookups of one event-loop turn
        into one call (web.batching), so a busy worker makes one round trip to the
        store per turn instead of one per request."""
        rows: list[Any] = []
        for attempt in (1, 2):  # a connection the server closed is replaced once
            try:
                cursor = self._connection().cursor()
                try:
                    cursor.execute(self._sql, self._params(client_ids))
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
                break
            except self._errors as exc:
                self._drop_connection()
                if attempt == 2:
                    raise StoreUnavailableError(type(exc).__name__) from exc
        found = {row[0]: row[1:] for row in rows if row[2] is not None}  # status: never NULL
        return [_record(client_id, found.get(client_id)) for client_id in client_ids]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


def _record(client_id: str, row: Sequence[Any] | None) -> ClientRecord | None:
    """A hit's record, or None after decoding a stand-in record the same way (a miss)."""
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
