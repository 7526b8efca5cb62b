"""The token endpoint's client lookup: one index probe by client_id per token request, many
requests' probes in one statement.

This is the hottest query of the server, so it skips the ORM and the SQL expression layer at
run time: the statement is compiled once for the engine's dialect and executed on a raw
DB-API connection kept per thread (web.batching runs it on one dedicated thread per worker,
so a worker holds one such connection and its event loop never waits for the store).
Nothing is cached: each statement runs after the requests it answers arrived, so a rotation
or a revoke committed by any process before a request is seen by that request.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Select, String, Text, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from centrali.oauth.credentials import PADDING, SECRET_SLOTS
from centrali.oauth.ports import ClientKey, ClientRecord, FederatedCredential, StoredSecret
from centrali.store.tables import ServiceAccount, Workspace

_sa = ServiceAccount.__table__
_ws = Workspace.__table__


def _client_lookup(dialect_name: str) -> Select[Any]:
    """The accounts of a list of client_ids, and their workspaces: one index probe per id.

    The ids are a table (``unnest`` of an array on PostgreSQL, ``json_each`` of a JSON array
    on SQLite) LEFT JOINed to the accounts, so the statement is the same for any number of
    ids, and every id answers one row: a miss is a row of NULLs, down the same path as a hit
    (see find_clients: every failure costs the same work). Group names come from the
    account row (see repositories.set_account_groups), and so do its keys and federated
    credentials (repositories.sync_account_credentials)."""
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
            # JSON as text on every dialect, decoded by _record for a hit and a miss alike
            # (a driver decoding a hit's JSON itself would make a hit cost more).
            cast(_sa.c.secrets, Text),
            _sa.c.status,
            cast(_sa.c.grant_types, Text),
            _sa.c.scope,
            _sa.c.tokens_cutoff_ms,
            _ws.c.slug,
            cast(_sa.c.group_names, Text),
            cast(_sa.c.public_keys, Text),
            cast(_sa.c.federated, Text),
            _sa.c.tokens_epoch,
        )
        .select_from(ids)
        .outerjoin(_sa, _sa.c.client_id == cid)
        .outerjoin(_ws, _ws.c.id == _sa.c.workspace_id)
    )


# What a miss decodes instead of a row, shaped like a real one, its secrets padded like a
# real row's (repositories.sync_account_credentials).
_ABSENT = (
    json.dumps([[PADDING.id, PADDING.hash, PADDING.expires_at_ms]] * SECRET_SLOTS),
    "absent",
    '["client_credentials"]',
    "openid",
    0,
    "",
    '["api-users"]',
    "[]",
    "[]",
    0,
)


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
        # Every connection handed out, by any thread (close() gives them all back).
        self._held: set[Any] = set()
        self._held_lock = threading.Lock()
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
            with self._held_lock:
                self._held.add(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._held_lock:
                self._held.discard(conn)
            with contextlib.suppress(Exception):  # it is being thrown away anyway
                conn.invalidate()

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
        """Give back every connection this store holds, whichever thread opened it (the
        lookups run on a thread of their own: web.batching), so none is left for the
        garbage collector once the engine is disposed. Call it once nothing looks up."""
        self._local.conn = None
        with self._held_lock:
            held, self._held = self._held, set()
        for conn in held:
            with contextlib.suppress(Exception):  # closing anyway
                conn.close()


def _record(client_id: str, row: Sequence[Any] | None) -> ClientRecord | None:
    """A hit's record, or None after decoding a stand-in record the same way (a miss)."""
    secrets, status, grant_types, scope, cutoff_ms, slug, groups, keys, federated, epoch = (
        row or _ABSENT
    )
    secrets = json.loads(secrets) if secrets else ()
    grant_types = json.loads(grant_types) if grant_types else ()
    groups = json.loads(groups) if groups else ()
    keys = json.loads(keys) if keys else ()
    federated = json.loads(federated) if federated else ()
    record = ClientRecord(
        client_id=client_id,
        secrets=tuple(StoredSecret(int(i), h, e) for i, h, e in secrets or ()),
        active=status == "active",
        workspace=slug,
        grant_types=tuple(grant_types or ()),
        scopes=tuple(scope.split()),
        groups=tuple(groups or ()),
        tokens_cutoff_ms=int(cutoff_ms or 0),
        tokens_epoch=int(epoch or 0),
        keys=tuple(ClientKey(int(i), kid, alg, jwk, e) for i, kid, alg, jwk, e in keys or ()),
        federated=tuple(
            FederatedCredential(int(i), iss, sub, aud, e) for i, iss, sub, aud, e in federated or ()
        ),
    )
    return record if row is not None else None
