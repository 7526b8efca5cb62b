"""The token endpoint's ClientStore: one indexed lookup by client_id per token request."""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, select

from centrali.oauth.ports import ClientRecord
from centrali.store.tables import Group, ServiceAccount, ServiceAccountGroup, Workspace

_sa = ServiceAccount.__table__
_ws = Workspace.__table__
_sag = ServiceAccountGroup.__table__
_g = Group.__table__

# One row per group (or one row with a NULL group): still a single round trip.
_CLIENT_LOOKUP = (
    select(
        _sa.c.secret_hash,
        _sa.c.status,
        _sa.c.grant_types,
        _sa.c.scope,
        _sa.c.tokens_valid_after,
        _ws.c.slug,
        _g.c.name,
    )
    .join(_ws, _ws.c.id == _sa.c.workspace_id)
    .outerjoin(_sag, _sag.c.service_account_id == _sa.c.id)
    .outerjoin(_g, _g.c.id == _sag.c.group_id)
    .where(_sa.c.client_id == bindparam("client_id"))
    .order_by(_g.c.name)
)


class SqlClientStore:
    """Reads the account on every request, so a rotation or revoke is seen at once."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find_client(self, client_id: str) -> ClientRecord | None:
        with self._engine.connect() as conn:
            rows = conn.execute(_CLIENT_LOOKUP, {"client_id": client_id}).all()
        if not rows:
            return None
        first = rows[0]
        return ClientRecord(
            client_id=client_id,
            secret_hash=first.secret_hash,
            active=first.status == "active",
            workspace=first.slug,
            grant_types=tuple(first.grant_types or ()),
            scopes=tuple(first.scope.split()),
            groups=tuple(r.name for r in rows if r.name is not None),
            tokens_valid_after=int(first.tokens_valid_after or 0),
        )
