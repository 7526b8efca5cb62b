"""Repositories: queries by purpose. They take a Session, never commit, return rows or None."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    bindparam,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from centrali.oauth.credentials import PADDING, SECRET_SLOTS
from centrali.store.tables import (
    AuditEvent,
    Group,
    GroupPermission,
    Membership,
    MembershipGroup,
    Record,
    RevokedToken,
    ServerSetting,
    ServiceAccount,
    ServiceAccountFederatedCredential,
    ServiceAccountGroup,
    ServiceAccountKey,
    ServiceAccountSecret,
    SigningKeyRow,
    Structure,
    User,
    UtcDateTime,
    Workspace,
)

# --- workspaces, users, groups -------------------------------------------------------------


def get_workspace(session: Session, *, slug: str) -> Workspace | None:
    return session.scalars(select(Workspace).where(Workspace.slug == slug)).one_or_none()


def get_user_by_email(session: Session, *, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email)).one_or_none()


def get_membership(session: Session, *, workspace_id: int, user_id: int) -> Membership | None:
    stmt = select(Membership).where(
        Membership.workspace_id == workspace_id, Membership.user_id == user_id
    )
    return session.scalars(stmt).one_or_none()


def list_groups(session: Session, *, workspace_id: int) -> Sequence[Group]:
    stmt = select(Group).where(Group.workspace_id == workspace_id).order_by(Group.name)
    return session.scalars(stmt).all()


def get_groups_by_name(
    session: Session, *, workspace_id: int, names: Iterable[str]
) -> dict[str, Group]:
    names = list(names)
    if not names:
        return {}
    stmt = select(Group).where(Group.workspace_id == workspace_id, Group.name.in_(names))
    return {g.name: g for g in session.scalars(stmt)}


def default_groups(session: Session, *, workspace_id: int) -> Sequence[Group]:
    stmt = select(Group).where(Group.workspace_id == workspace_id, Group.is_default.is_(True))
    return session.scalars(stmt.order_by(Group.name)).all()


def membership_group_names(session: Session, *, membership_id: int) -> list[str]:
    stmt = (
        select(Group.name)
        .join(MembershipGroup, MembershipGroup.group_id == Group.id)
        .where(MembershipGroup.membership_id == membership_id)
        .order_by(Group.name)
    )
    return list(session.scalars(stmt))


def workspace_exists(conn: Connection | Session, *, slug: str) -> bool:
    return conn.execute(select(Workspace.id).where(Workspace.slug == slug)).first() is not None


class UserGrants(NamedTuple):
    member: bool
    grants: dict[str, set[str]]
    # The presented token's jti is in revoked_tokens (known only for a member).
    token_revoked: bool = False


def user_grants(
    conn: Connection | Session, *, subject: str, workspace_slug: str, jti: str | None = None
) -> UserGrants:
    """Whether the user is a member of the workspace, its groups with their permissions, and
    whether the token ``jti`` was revoked; one statement."""
    stmt = (
        select(Membership.id, Group.name, GroupPermission.permission, _jti_revoked(jti))
        .join(User, User.id == Membership.user_id)
        .join(Workspace, Workspace.id == Membership.workspace_id)
        .outerjoin(MembershipGroup, MembershipGroup.membership_id == Membership.id)
        .outerjoin(Group, Group.id == MembershipGroup.group_id)
        .outerjoin(GroupPermission, GroupPermission.group_id == Group.id)
        .where(User.subject == subject, Workspace.slug == workspace_slug)
    )
    member = revoked = False
    grants: dict[str, set[str]] = {}
    for _membership_id, group, permission, jti_revoked in conn.execute(stmt):
        member, revoked = True, bool(jti_revoked)
        if group is not None:
            perms = grants.setdefault(group, set())
            if permission is not None:
                perms.add(permission)
    return UserGrants(member, grants, revoked)


def _jti_revoked(jti: str | None) -> ColumnElement[bool]:
    """A column: whether ``jti`` is in revoked_tokens. Uncorrelated, so the database runs it
    once per statement (a primary-key probe), not once per row."""
    if jti is None:
        return false().label("jti_revoked")
    return exists().where(RevokedToken.jti == jti).label("jti_revoked")


# --- service accounts ----------------------------------------------------------------------


def _live_accounts(workspace_id: int) -> Select[ServiceAccount]:
    return select(ServiceAccount).where(
        ServiceAccount.workspace_id == workspace_id, ServiceAccount.status != "deleted"
    )


def get_service_account(
    session: Session, *, workspace_id: int, account_id: int, for_update: bool = False
) -> ServiceAccount | None:
    """A live (not deleted) account of this workspace, or None."""
    stmt = _live_accounts(workspace_id).where(ServiceAccount.id == account_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


# The three credential tables (secrets, keys, federated credentials): each has
# service_account_id, expires_at and last_used_at.
_CREDENTIAL_TABLES: tuple[Any, ...] = (
    ServiceAccountSecret,
    ServiceAccountKey,
    ServiceAccountFederatedCredential,
)


def _expiring(now: datetime, before: datetime) -> ColumnElement[bool]:
    """The account holds a live credential (of any kind) that expires by ``before``."""
    return or_(
        *(
            exists().where(
                table.service_account_id == ServiceAccount.id,
                table.expires_at > now,
                table.expires_at <= before,
            )
            for table in _CREDENTIAL_TABLES
        )
    )


def count_expiring_accounts(
    session: Session, *, workspace_id: int, now: datetime, before: datetime
) -> int:
    """How many live accounts of the workspace hold a live credential expiring by
    ``before``."""
    stmt = select(func.count(ServiceAccount.id)).where(
        ServiceAccount.workspace_id == workspace_id,
        ServiceAccount.status != "deleted",
        _expiring(now, before),
    )
    return int(session.scalar(stmt) or 0)


def list_service_accounts(
    session: Session,
    *,
    workspace_id: int,
    offset: int,
    limit: int,
    after: int | None = None,
    expiring: tuple[datetime, datetime] | None = None,
) -> Sequence[ServiceAccount]:
    """One page of live accounts by id. The page's ids come from the partial index
    ``ix_service_accounts_live`` alone (a deferred join), so a deep page skips index entries,
    not table rows; with ``after`` (keyset paging) it skips nothing at all. ``expiring``
    (now, before): only the accounts with a live credential expiring by ``before``."""
    page_ids = (
        select(ServiceAccount.id)
        .where(ServiceAccount.workspace_id == workspace_id, ServiceAccount.status != "deleted")
        .order_by(ServiceAccount.id)
        .limit(limit)
    )
    if expiring is not None:
        page_ids = page_ids.where(_expiring(*expiring))
    page_ids = (
        page_ids.where(ServiceAccount.id > after)
        if after is not None
        else (page_ids.offset(offset))
    )
    stmt = (
        select(ServiceAccount)
        .where(ServiceAccount.id.in_(page_ids.scalar_subquery()))
        .order_by(ServiceAccount.id)
    )
    return session.scalars(stmt).all()


def account_group_names(session: Session, *, account_ids: Sequence[int]) -> dict[int, list[str]]:
    if not account_ids:
        return {}
    stmt = (
        select(ServiceAccountGroup.service_account_id, Group.name)
        .join(Group, Group.id == ServiceAccountGroup.group_id)
        .where(ServiceAccountGroup.service_account_id.in_(account_ids))
        .order_by(Group.name)
    )
    names: dict[int, list[str]] = {i: [] for i in account_ids}
    for account_id, name in session.execute(stmt):
        names[account_id].append(name)
    return names


def set_account_groups(session: Session, *, account_id: int, groups: Iterable[Group]) -> None:
    """The account's groups, in the association table and in ``group_names`` (the token
    endpoint's copy): the one place that writes either."""
    groups = list(groups)
    session.execute(
        delete(ServiceAccountGroup).where(ServiceAccountGroup.service_account_id == account_id)
    )
    session.add_all(
        ServiceAccountGroup(service_account_id=account_id, group_id=g.id) for g in groups
    )
    session.execute(
        update(ServiceAccount)
        .where(ServiceAccount.id == account_id)
        .values(group_names=sorted(g.name for g in groups))
    )


def count_live_accounts(session: Session, *, workspace_id: int, delta: int) -> None:
    """Move a workspace's live-account count, atomically (UPDATE … SET n = n + delta)."""
    session.execute(
        update(Workspace)
        .where(Workspace.id == workspace_id)
        .values(service_account_count=Workspace.service_account_count + delta)
    )


# --- service-account secrets -----------------------------------------------------------------


def list_account_secrets(session: Session, *, account_id: int) -> Sequence[ServiceAccountSecret]:
    """The account's secrets (expired ones too), newest first."""
    stmt = (
        select(ServiceAccountSecret)
        .where(ServiceAccountSecret.service_account_id == account_id)
        .order_by(ServiceAccountSecret.id.desc())
    )
    return session.scalars(stmt).all()


def delete_account_secrets(session: Session, *, account_id: int, ids: Iterable[int]) -> None:
    ids = list(ids)
    if ids:
        session.execute(
            delete(ServiceAccountSecret).where(
                ServiceAccountSecret.service_account_id == account_id,
                ServiceAccountSecret.id.in_(ids),
            )
        )


def list_account_keys(session: Session, *, account_id: int) -> Sequence[ServiceAccountKey]:
    """The account's keys (expired ones too), newest first."""
    stmt = (
        select(ServiceAccountKey)
        .where(ServiceAccountKey.service_account_id == account_id)
        .order_by(ServiceAccountKey.id.desc())
    )
    return session.scalars(stmt).all()


def delete_account_keys(session: Session, *, account_id: int, ids: Iterable[int]) -> None:
    ids = list(ids)
    if ids:
        session.execute(
            delete(ServiceAccountKey).where(
                ServiceAccountKey.service_account_id == account_id,
                ServiceAccountKey.id.in_(ids),
            )
        )


def list_account_federated(
    session: Session, *, account_id: int
) -> Sequence[ServiceAccountFederatedCredential]:
    """The account's federated credentials (expired ones too), newest first."""
    stmt = (
        select(ServiceAccountFederatedCredential)
        .where(ServiceAccountFederatedCredential.service_account_id == account_id)
        .order_by(ServiceAccountFederatedCredential.id.desc())
    )
    return session.scalars(stmt).all()


def delete_account_federated(session: Session, *, account_id: int, ids: Iterable[int]) -> None:
    ids = list(ids)
    if ids:
        session.execute(
            delete(ServiceAccountFederatedCredential).where(
                ServiceAccountFederatedCredential.service_account_id == account_id,
                ServiceAccountFederatedCredential.id.in_(ids),
            )
        )


class LiveCredentials(NamedTuple):
    """An account's live credentials of each kind, newest first."""

    secrets: list[ServiceAccountSecret]
    keys: list[ServiceAccountKey]
    federated: list[ServiceAccountFederatedCredential]


def _epoch_ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def sync_account_credentials(
    session: Session, *, account_id: int, now: datetime, live: bool = True
) -> LiveCredentials:
    """Write the token endpoint's copies (``service_accounts.secrets``, ``.public_keys``,
    ``.federated``) of the account's credentials live at ``now`` (none when ``live`` is
    False: a deleted account), and return them: the one place that writes those copies."""
    session.flush()

    def alive(rows: Sequence[Any]) -> list[Any]:
        return [r for r in rows if live and (r.expires_at is None or r.expires_at > now)]

    found = LiveCredentials(
        alive(list_account_secrets(session, account_id=account_id)),
        alive(list_account_keys(session, account_id=account_id)),
        alive(list_account_federated(session, account_id=account_id)),
    )
    secrets: list[list[Any]] = [
        [r.id, r.secret_hash, _epoch_ms(r.expires_at)] for r in found.secrets
    ]
    # Padded to a fixed length: every account's row costs the same to read and decode.
    secrets += [[PADDING.id, PADDING.hash, PADDING.expires_at_ms]] * (SECRET_SLOTS - len(secrets))
    session.execute(
        update(ServiceAccount)
        .where(ServiceAccount.id == account_id)
        .values(
            secrets=secrets,
            public_keys=[
                [r.id, r.kid, r.alg, dict(r.jwk), _epoch_ms(r.expires_at)] for r in found.keys
            ],
            federated=[
                [r.id, r.issuer, r.subject, r.audience, _epoch_ms(r.expires_at)]
                for r in found.federated
            ],
        )
    )
    return found


def count_live_credentials(session: Session, *, account_id: int, now: datetime) -> int:
    """How many live credentials of any kind the account holds."""
    total = 0
    for table in _CREDENTIAL_TABLES:
        stmt = select(func.count()).where(
            table.service_account_id == account_id,
            or_(table.expires_at.is_(None), table.expires_at > now),
        )
        total += int(session.scalar(stmt) or 0)
    return total


def credentials_expire_at(
    session: Session, *, account_ids: Sequence[int], now: datetime
) -> dict[int, datetime]:
    """The earliest expiry among each account's live credentials of every kind (accounts
    with none absent)."""
    if not account_ids:
        return {}
    expiring = union_all(
        *(
            select(
                table.service_account_id.label("account_id"),
                table.expires_at.label("expires_at"),
            ).where(table.service_account_id.in_(account_ids), table.expires_at > now)
            for table in _CREDENTIAL_TABLES
        )
    ).subquery()
    stmt = select(expiring.c.account_id, func.min(expiring.c.expires_at)).group_by(
        expiring.c.account_id
    )
    found: dict[int, datetime] = {}
    for account_id, at in session.execute(stmt):
        if at is not None:
            found[account_id] = _utc(at)
    return found


def _utc(at: datetime | str) -> datetime:
    """An aggregate's datetime: SQLite hands back text (no column type to decode it)."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _mark_used(table: Any) -> Any:
    """UPDATE one credential's last_used_at to :at unless it is already later."""
    return (
        update(table)
        .where(
            table.id == bindparam("sid"),
            or_(
                table.last_used_at.is_(None),
                table.last_used_at < bindparam("at", type_=UtcDateTime()),
            ),
        )
        .values(last_used_at=bindparam("at", type_=UtcDateTime()))
    )


# By credential kind (oauth.ports.SECRET, KEY, FEDERATED).
_USED = {
    "secret": _mark_used(ServiceAccountSecret),
    "key": _mark_used(ServiceAccountKey),
    "federated": _mark_used(ServiceAccountFederatedCredential),
}
_used_account = (
    update(ServiceAccount)
    .where(
        ServiceAccount.client_id == bindparam("cid"),
        or_(
            ServiceAccount.last_used_at.is_(None),
            ServiceAccount.last_used_at < bindparam("at", type_=UtcDateTime()),
        ),
    )
    .values(last_used_at=bindparam("at", type_=UtcDateTime()))
)


def mark_credentials_used(
    session: Session,
    *,
    credentials: dict[tuple[str, int], datetime],
    accounts: dict[str, datetime],
) -> None:
    """Move last-use times forward (never back: other workers and instances flush too).
    ``credentials``: (kind, id) -> time, kind "secret", "key" or "federated" (the kinds
    of oauth.ports; another kind is ignored)."""
    conn = session.connection()
    for kind, stmt in _USED.items():
        used = sorted((cid, at) for (k, cid), at in credentials.items() if k == kind)
        if used:
            conn.execute(stmt, [{"sid": k, "at": v} for k, v in used])
    if accounts:
        conn.execute(_used_account, [{"cid": k, "at": v} for k, v in sorted(accounts.items())])


def count_expiring_credentials(
    session: Session, *, now: datetime, horizons: Sequence[datetime]
) -> list[int]:
    """Live credentials (secrets, keys, federated credentials) of live accounts expiring by
    each horizon (all workspaces)."""
    counts = []
    for before in horizons:
        total = 0
        for table in _CREDENTIAL_TABLES:
            stmt = (
                select(func.count(table.id))
                .join(ServiceAccount, ServiceAccount.id == table.service_account_id)
                .where(
                    ServiceAccount.status != "deleted",
                    table.expires_at > now,
                    table.expires_at <= before,
                )
            )
            total += int(session.scalar(stmt) or 0)
        counts.append(total)
    return counts


class AccountState(NamedTuple):
    status: str
    tokens_cutoff_ms: int
    workspace: str
    # The presented token's jti is in revoked_tokens.
    token_revoked: bool = False
    tokens_epoch: int = 0


def service_account_grants(
    conn: Connection, *, client_id: str, jti: str | None = None
) -> tuple[AccountState, dict[str, set[str]]] | None:
    """The account's state by client id, its groups with their permissions, and whether the
    token ``jti`` was revoked; one query, plain rows (no ORM entity), so it serves every API
    request cheaply."""
    return service_accounts_grants(conn, [(client_id, jti or "")])[0]


def _pair_table(
    dialect_name: str, first: tuple[str, Any], second: tuple[str, Any]
) -> tuple[Any, ColumnElement[Any], ColumnElement[Any]]:
    """A table of (first, second) pairs bound as one parameter, and its two columns:
    ``unnest`` of two arrays on PostgreSQL, ``json_each`` of a JSON array of pairs on SQLite
    (see _pair_params). Lets one statement answer many requests."""
    if dialect_name == "postgresql":
        pairs = (
            func.unnest(
                bindparam(first[0], type_=ARRAY(first[1])),
                bindparam(second[0], type_=ARRAY(second[1])),
            )
            .table_valued(first[0], second[0])
            .render_derived(name="q")
        )
        return pairs, pairs.c[first[0]], pairs.c[second[0]]
    table = func.json_each(bindparam("pairs", type_=String)).table_valued("value").alias("q")
    return (
        table,
        func.json_extract(table.c.value, "$[0]"),
        func.json_extract(table.c.value, "$[1]"),
    )


def _pair_params(
    dialect_name: str, names: tuple[str, str], pairs: Sequence[tuple[Any, Any]]
) -> dict[str, Any]:
    """The parameters of a _pair_table for these pairs."""
    if dialect_name == "postgresql":
        return {names[0]: [p[0] for p in pairs], names[1]: [p[1] for p in pairs]}
    return {"pairs": json.dumps([list(p) for p in pairs])}


def _cached(cache: dict[str, Select[Any]], dialect_name: str, build: Any) -> Select[Any]:
    stmt = cache.get(dialect_name)
    if stmt is None:
        stmt = cache[dialect_name] = build(dialect_name)
    return stmt


def _sa_grants_many(dialect_name: str) -> Select[Any]:
    """The account check (state, groups and their permissions, revoked jti) for many
    (client_id, jti) pairs in one statement: the pairs are a table (``unnest`` of two arrays
    on PostgreSQL, ``json_each`` of a JSON array of pairs on SQLite) joined to the accounts
    by their unique client_id, each row tagged with its pair."""
    pairs, cid, jti = _pair_table(dialect_name, ("cid", String), ("jti", String))
    return (
        select(
            cid.label("cid"),
            jti.label("jti"),
            ServiceAccount.status,
            ServiceAccount.tokens_cutoff_ms,
            ServiceAccount.tokens_epoch,
            Workspace.slug,
            Group.name,
            GroupPermission.permission,
            exists().where(RevokedToken.jti == jti).label("jti_revoked"),
        )
        .select_from(pairs)
        .join(ServiceAccount, ServiceAccount.client_id == cid)
        .join(Workspace, Workspace.id == ServiceAccount.workspace_id)
        .outerjoin(ServiceAccountGroup, ServiceAccountGroup.service_account_id == ServiceAccount.id)
        .outerjoin(Group, Group.id == ServiceAccountGroup.group_id)
        .outerjoin(GroupPermission, GroupPermission.group_id == Group.id)
    )


# Built once per dialect: this statement runs on every API request of a service account.
_SA_GRANTS_MANY: dict[str, Select[Any]] = {}

AccountGrants = tuple[AccountState, dict[str, set[str]]]


def service_accounts_grants(
    conn: Connection, pairs: Sequence[tuple[str, str]]
) -> list[AccountGrants | None]:
    """``service_account_grants`` for each (client_id, jti) pair, in order, in one statement
    (the workspace API gathers the checks of one event-loop turn: web.batching). A jti of ""
    is never revoked."""
    if not pairs:
        return []
    dialect = conn.dialect.name
    stmt = _cached(_SA_GRANTS_MANY, dialect, _sa_grants_many)
    params = _pair_params(dialect, ("cid", "jti"), pairs)
    found: dict[tuple[str, str], AccountGrants] = {}
    for row in conn.execute(stmt, params):
        cid, jti, status, cutoff_ms, epoch, slug, group, permission, jti_revoked = row
        key = (cid, jti)
        state = AccountState(status, int(cutoff_ms or 0), slug, bool(jti_revoked), int(epoch or 0))
        grants = found[key][1] if key in found else {}
        found[key] = (state, grants)
        if group is not None:
            perms = grants.setdefault(group, set())
            if permission is not None:
                perms.add(permission)
    return [found.get((cid, jti)) for cid, jti in pairs]


# --- audit -----------------------------------------------------------------------------------


def add_audit_event(
    session: Session,
    *,
    workspace_id: int,
    action: str,
    actor: str,
    target: str | None,
    source_ip: str | None,
    details: dict[str, object] | None,
    now: datetime,
) -> AuditEvent:
    event = AuditEvent(
        workspace_id=workspace_id,
        action=action,
        actor=actor,
        target=target,
        source_ip=source_ip,
        details=details or {},
        created_at=now,
    )
    session.add(event)
    return event


# --- signing keys --------------------------------------------------------------------------


def live_signing_keys(session: Session) -> Sequence[SigningKeyRow]:
    """Keys not retired, newest generation first."""
    stmt = (
        select(SigningKeyRow)
        .where(SigningKeyRow.retired_at.is_(None))
        .order_by(SigningKeyRow.generation.desc())
    )
    return session.scalars(stmt).all()


_KEY_WRITERS_LOCK = 7261120456  # migrations use ...455


def lock_signing_keys(session: Session) -> None:
    """Serialize writers of the key table until the transaction ends. SQLite's write
    transactions are serialized already (BEGIN IMMEDIATE); on PostgreSQL, READ COMMITTED
    would let two writers both see "no key" and store one generation each."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _KEY_WRITERS_LOCK})


def max_key_generation(session: Session) -> int:
    return int(session.scalar(select(func.max(SigningKeyRow.generation))) or 0)


def signing_keys(session: Session) -> Sequence[SigningKeyRow]:
    """Every key, retired ones too, newest generation first."""
    return session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.generation.desc())).all()


def signing_key_fingerprint(session: Session) -> tuple[int, int, int]:
    """(newest generation, keys, retired keys): changes whenever a key is added or retired."""
    row = session.execute(
        select(
            func.coalesce(func.max(SigningKeyRow.generation), 0),
            func.count(SigningKeyRow.id),
            func.count(SigningKeyRow.retired_at),
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def retire_signing_keys(session: Session, *, kids: Iterable[str], at: datetime) -> None:
    """Set ``retired_at`` on the keys named that are not retired yet."""
    kids = list(kids)
    if kids:
        session.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid.in_(kids), SigningKeyRow.retired_at.is_(None))
            .values(retired_at=at)
        )


# --- server settings -----------------------------------------------------------------------


def get_server_setting(session: Session, *, name: str) -> str | None:
    row = session.get(ServerSetting, name)
    return None if row is None else row.value


def put_server_setting(session: Session, *, name: str, value: str) -> None:
    """Insert or replace, atomically (two servers may start at once)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(ServerSetting).values(name=name, value=value)
    session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"value": value}))


# --- structures and records ------------------------------------------------------------------


def get_structure(
    session: Session, *, workspace_id: int, slug: str, for_update: bool = False
) -> Structure | None:
    stmt = select(Structure).where(Structure.workspace_id == workspace_id, Structure.slug == slug)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def list_structures(
    session: Session, *, workspace_id: int, offset: int, limit: int
) -> tuple[Sequence[Structure], int]:
    base = select(Structure).where(Structure.workspace_id == workspace_id)
    total = session.scalar(select(func.count()).select_from(base.subquery()))
    rows = session.scalars(base.order_by(Structure.id).offset(offset).limit(limit)).all()
    return rows, int(total or 0)


def count_records(session: Session, *, structure_id: int) -> int:
    stmt = select(func.count()).select_from(Record).where(Record.structure_id == structure_id)
    return int(session.scalar(stmt) or 0)


def delete_records(session: Session, *, structure_id: int) -> None:
    session.execute(delete(Record).where(Record.structure_id == structure_id))


def get_record(
    session: Session, *, workspace_id: int, record_id: int, for_update: bool = False
) -> tuple[Record, str] | None:
    """The record of this workspace and the slug of its structure."""
    stmt = (
        select(Record, Structure.slug)
        .join(Structure, Structure.id == Record.structure_id)
        .where(Record.workspace_id == workspace_id, Record.id == record_id)
    )
    if for_update:
        stmt = stmt.with_for_update(of=Record)
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def _read_records(dialect_name: str) -> Select[Any]:
    """Records by (workspace slug, record id) pairs, with their structure's slug, in one
    statement: the pairs are a table (``unnest`` of two arrays on PostgreSQL, ``json_each``
    of a JSON array of pairs on SQLite) joined to the workspace by its unique slug and the
    record by primary key, each row tagged with its pair."""
    pairs, slug, rid = _pair_table(dialect_name, ("slug", String), ("rid", BigInteger))
    return (
        select(
            slug.label("slug"),
            rid.label("rid"),
            Record.id,
            Structure.slug,
            Record.data,
            Record.created_at,
            Record.created_by,
            Record.updated_at,
        )
        .select_from(pairs)
        .join(Workspace, Workspace.slug == slug)
        .join(Record, (Record.workspace_id == Workspace.id) & (Record.id == rid))
        .join(Structure, Structure.id == Record.structure_id)
    )


# Built once per dialect: the API's hot read.
_READ_RECORDS: dict[str, Select[Any]] = {}


def read_records(conn: Connection, keys: Sequence[tuple[str, int]]) -> list[tuple[Any, ...] | None]:
    """Each (workspace slug, record id)'s record and its structure's slug, in order, in one
    statement on an autocommit connection (the workspace API gathers the reads of one
    event-loop turn: web.batching)."""
    if not keys:
        return []
    dialect = conn.dialect.name
    stmt = _cached(_READ_RECORDS, dialect, _read_records)
    params = _pair_params(dialect, ("slug", "rid"), keys)
    found = {(row[0], int(row[1])): tuple(row[2:]) for row in conn.execute(stmt, params)}
    return [found.get((slug, record_id)) for slug, record_id in keys]


def list_records(
    session: Session, *, workspace_id: int, structure_id: int | None, offset: int, limit: int
) -> tuple[Sequence[tuple[Record, str]], int]:
    base = (
        select(Record, Structure.slug)
        .join(Structure, Structure.id == Record.structure_id)
        .where(Record.workspace_id == workspace_id)
    )
    if structure_id is not None:
        base = base.where(Record.structure_id == structure_id)
    count = select(func.count()).select_from(Record).where(Record.workspace_id == workspace_id)
    if structure_id is not None:
        count = count.where(Record.structure_id == structure_id)
    total = session.scalar(count)
    rows = session.execute(base.order_by(Record.id).offset(offset).limit(limit)).all()
    return [(r[0], r[1]) for r in rows], int(total or 0)
