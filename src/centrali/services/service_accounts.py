"""Service accounts: create, read, change, rotate, revoke, activate, delete; their
credentials (secrets, public keys for ``private_key_jwt``, federated credentials; several
per account, each with its own expiry and last use); each change audited.

Every change is one transaction holding both the change and its audit row. A deleted
account keeps its row (status ``deleted``, secrets wiped) so its clientId is never reused
and its audit trail still resolves; to the API it no longer exists.

Secrets: at most ``MAX_LIVE_SECRETS`` live (neither expired nor deleted) per account, only
their hashes stored. ``rotate`` adds one and, with no grace period, deletes every other; with
a grace period the others keep working until then (their expiry is lowered to it), so the
replicas of a client can switch over with no failed request.

Keys (at most ``MAX_LIVE_KEYS`` live) and federated credentials (``MAX_LIVE_FEDERATED``)
are added and deleted beside them; rotate touches secrets only. The account's last live
credential of any kind may not be deleted, so an account keeps one way in until it is
deleted; it may well end up with a key and no secret.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from centrali.oauth.credentials import (
    generate_client_id,
    generate_client_secret,
    hash_secret,
    secret_hint,
)
from centrali.oauth.discovery import SUPPORTED_SCOPES
from centrali.oauth.jwk import JwkError, parse_client_jwk
from centrali.services import audit
from centrali.services.context import Actor, isoformat
from centrali.services.errors import ConflictError, InvalidBodyError, NotFoundError
from centrali.services.validation import (
    PageRequest,
    check_description,
    check_name,
    parse_int,
    parse_path_id,
)
from centrali.services.workspaces import require_workspace
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import (
    Group,
    ServiceAccount,
    ServiceAccountFederatedCredential,
    ServiceAccountKey,
    ServiceAccountSecret,
)

SUPPORTED_GRANT_TYPES = ("client_credentials",)
DEFAULT_GRANT_TYPES = ("client_credentials",)
DEFAULT_SCOPE = "openid"
MAX_GROUPS = 50
MAX_LIVE_SECRETS = 5
MAX_LIVE_KEYS = 5
MAX_LIVE_FEDERATED = 20
MAX_FEDERATED_FIELD = 512
MAX_GRACE_SECONDS = 7 * 86400
MAX_EXPIRING_DAYS = 3650


def _iso(value: datetime | None) -> str | None:
    return None if value is None else isoformat(value)


@dataclass(frozen=True, slots=True)
class SecretView:
    """One of an account's secrets as the API shows it; ``client_secret`` only when new."""

    id: int
    hint: str | None
    created_at: str
    created_by: str
    expires_at: str | None
    last_used_at: str | None
    client_secret: str | None = None


def _secret_view(row: ServiceAccountSecret, secret: str | None = None) -> SecretView:
    return SecretView(
        id=row.id,
        hint=row.hint,
        created_at=isoformat(row.created_at),
        created_by=row.created_by,
        expires_at=_iso(row.expires_at),
        last_used_at=_iso(row.last_used_at),
        client_secret=secret,
    )


@dataclass(frozen=True, slots=True)
class ServiceAccountView:
    """An account as the API shows it; ``client_secret`` only right after create/rotate."""

    id: int
    client_id: str
    name: str
    description: str | None
    workspace: str
    grant_types: tuple[str, ...]
    scope: str
    groups: tuple[str, ...]
    status: str
    created_at: str
    created_by: str
    updated_at: str
    last_used_at: str | None = None
    credentials_expire_at: str | None = None
    client_secret: str | None = None
    secret_id: int | None = None


def _view(
    account: ServiceAccount,
    workspace_slug: str,
    groups: Sequence[str],
    expire_at: datetime | None = None,
) -> ServiceAccountView:
    return ServiceAccountView(
        id=account.id,
        client_id=account.client_id,
        name=account.name,
        description=account.description,
        workspace=workspace_slug,
        grant_types=tuple(account.grant_types),
        scope=account.scope,
        groups=tuple(sorted(groups)),
        status=account.status,
        created_at=isoformat(account.created_at),
        created_by=account.created_by,
        updated_at=isoformat(account.updated_at),
        last_used_at=_iso(account.last_used_at),
        credentials_expire_at=_iso(expire_at),
    )


def _views(
    session: Session, accounts: Sequence[ServiceAccount], workspace_slug: str, now: datetime
) -> list[ServiceAccountView]:
    ids = [a.id for a in accounts]
    groups = repo.account_group_names(session, account_ids=ids)
    expiry = repo.credentials_expire_at(session, account_ids=ids, now=now)
    return [_view(a, workspace_slug, groups[a.id], expiry.get(a.id)) for a in accounts]


def parse_account_id(raw: str) -> int:
    return parse_path_id(raw, "Service account not found")


def _check_grant_types(grant_types: Sequence[str] | None) -> tuple[str, ...]:
    if grant_types is None:
        return DEFAULT_GRANT_TYPES
    if not grant_types:
        raise InvalidBodyError("grant_types must not be empty", field="grant_types")
    for g in grant_types:
        if g not in SUPPORTED_GRANT_TYPES:
            raise InvalidBodyError(f"unsupported grant type: {g[:64]!r}", field="grant_types")
    return tuple(dict.fromkeys(grant_types))


def _check_scope(scope: str | None) -> str:
    if scope is None:
        return DEFAULT_SCOPE
    scopes = scope.split()
    if not scopes:
        raise InvalidBodyError("scope must not be empty", field="scope")
    for s in scopes:
        if s not in SUPPORTED_SCOPES:
            raise InvalidBodyError(f"unsupported scope: {s[:64]!r}", field="scope")
    return " ".join(dict.fromkeys(scopes))


def _resolve_groups(session: Session, workspace_id: int, names: Sequence[str]) -> list[Group]:
    if len(names) > MAX_GROUPS:
        raise InvalidBodyError(f"at most {MAX_GROUPS} groups", field="groups")
    wanted = list(dict.fromkeys(names))
    found = repo.get_groups_by_name(session, workspace_id=workspace_id, names=wanted)
    for name in wanted:
        if name not in found:
            raise InvalidBodyError(f"unknown group: {name[:64]!r}", field="groups")
    return [found[n] for n in wanted]


def _cut_tokens(account: ServiceAccount, actor: Actor) -> None:
    """Every token issued to the account so far dies: its epoch moves on (tokens carrying
    an older one are dead), and, for tokens from before the epoch claim, the time cut-off
    is now."""
    account.tokens_epoch = (account.tokens_epoch or 0) + 1
    account.tokens_cutoff_ms = math.floor(actor.at.timestamp() * 1000)


def parse_expiry(raw: str | None, field: str, now: datetime) -> datetime | None:
    """An ISO 8601 time with its offset, in the future; 400 otherwise. None: never."""
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw.strip()) if len(raw) <= 64 else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise InvalidBodyError(
            f"{field} must be an ISO 8601 date and time with a UTC offset", field=field
        )
    at = at.astimezone(UTC)
    if at <= now:
        raise InvalidBodyError(f"{field} must be in the future", field=field)
    return at


def parse_expiring_within(raw: str | None) -> int | None:
    if raw is None:
        return None
    return parse_int(raw, "expiringWithinDays", 0, 1, MAX_EXPIRING_DAYS)


def _new_secret(
    session: Session, account: ServiceAccount, actor: Actor, expires_at: datetime | None
) -> tuple[ServiceAccountSecret, str]:
    secret = generate_client_secret()
    row = ServiceAccountSecret(
        service_account_id=account.id,
        secret_hash=hash_secret(secret),
        hint=secret_hint(secret),
        created_at=actor.at,
        created_by=actor.subject,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def create(
    db: Database,
    *,
    workspace_slug: str,
    actor: Actor,
    name: str,
    description: str | None = None,
    grant_types: Sequence[str] | None = None,
    scope: str | None = None,
    groups: Sequence[str] | None = None,
    secret_expires_at: str | None = None,
) -> ServiceAccountView:
    """A new active account; the answer is the only place its secret ever appears."""
    name = check_name(name)
    description = check_description(description)
    checked_grants = _check_grant_types(grant_types)
    checked_scope = _check_scope(scope)
    expires_at = parse_expiry(secret_expires_at, "secretExpiresAt", actor.at)
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        if groups is None:
            chosen: list[Group] = list(repo.default_groups(session, workspace_id=workspace.id))
        else:
            chosen = _resolve_groups(session, workspace.id, groups)
        account = ServiceAccount(
            workspace_id=workspace.id,
            client_id=generate_client_id(),
            secrets=[],
            name=name,
            description=description,
            grant_types=list(checked_grants),
            scope=checked_scope,
            status="active",
            tokens_cutoff_ms=0,
            tokens_epoch=0,
            created_at=actor.at,
            created_by=actor.subject,
            updated_at=actor.at,
        )
        session.add(account)
        session.flush()
        row, secret = _new_secret(session, account, actor, expires_at)
        repo.sync_account_credentials(session, account_id=account.id, now=actor.at)
        repo.set_account_groups(session, account_id=account.id, groups=chosen)
        repo.count_live_accounts(session, workspace_id=workspace.id, delta=1)
        audit.record(
            session,
            workspace_id=workspace.id,
            action="service_account.created",
            actor=actor,
            target=account.client_id,
            details={
                "id": account.id,
                "name": name,
                "groups": [g.name for g in chosen],
                "secretId": row.id,
            },
        )
        view = _view(account, workspace.slug, [g.name for g in chosen], expires_at)
    return replace(view, client_secret=secret, secret_id=row.id)


def list_accounts(
    db: Database,
    *,
    workspace_slug: str,
    page: PageRequest,
    after: int | None = None,
    expiring_within_days: int | None = None,
    now: datetime | None = None,
) -> tuple[list[ServiceAccountView], int]:
    """A page by number, or (``after``: the last id of the previous page) by keyset, which
    costs the same at any depth; ``expiring_within_days``: only the accounts with a live
    credential (of any kind) expiring that soon."""
    now = now or datetime.now(UTC)
    expiring = None
    if expiring_within_days is not None:
        expiring = (now, now + timedelta(days=expiring_within_days))
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        rows = repo.list_service_accounts(
            session,
            workspace_id=workspace.id,
            offset=page.offset,
            limit=page.limit,
            after=after,
            expiring=expiring,
        )
        total = workspace.service_account_count
        if expiring is not None:
            total = repo.count_expiring_accounts(
                session, workspace_id=workspace.id, now=expiring[0], before=expiring[1]
            )
        return _views(session, rows, workspace.slug, now), total


def get(db: Database, *, workspace_slug: str, account_id: int) -> ServiceAccountView:
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id)
        return _views(session, [account], workspace.slug, datetime.now(UTC))[0]


def _require_account(
    session: Session, workspace_id: int, account_id: int, *, for_update: bool = False
) -> ServiceAccount:
    account = repo.get_service_account(
        session, workspace_id=workspace_id, account_id=account_id, for_update=for_update
    )
    if account is None:
        raise NotFoundError("Service account not found")
    return account


def _change(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    action: str,
    apply: Any,
    new_secret: list[tuple[str, int]] | None = None,
) -> ServiceAccountView:
    """Load the account for update, apply a change, audit it, all in one transaction.
    ``new_secret``: where ``apply`` puts a new secret (and its id) to show in the answer,
    this once."""
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id, for_update=True)
        details: dict[str, Any] = {"id": account.id}
        details.update(apply(session, workspace, account) or {})
        account.updated_at = actor.at
        audit.record(
            session,
            workspace_id=workspace.id,
            action=action,
            actor=actor,
            target=account.client_id,
            details=details,
        )
        session.flush()
        view = _views(session, [account], workspace.slug, actor.at)[0]
    if not new_secret:
        return view
    return replace(view, client_secret=new_secret[0][0], secret_id=new_secret[0][1])


def rename(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor, name: str
) -> ServiceAccountView:
    name = check_name(name)

    def apply(_s: Session, _w: object, account: ServiceAccount) -> dict[str, Any]:
        old, account.name = account.name, name
        return {"from": old, "to": name}

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.renamed",
        apply=apply,
    )


def describe(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor, description: str | None
) -> ServiceAccountView:
    description = check_description(description)

    def apply(_s: Session, _w: object, account: ServiceAccount) -> None:
        account.description = description

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.described",
        apply=apply,
    )


def set_groups(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor, groups: Sequence[str]
) -> ServiceAccountView:
    def apply(session: Session, workspace: Any, account: ServiceAccount) -> dict[str, Any]:
        chosen = _resolve_groups(session, workspace.id, groups)
        old = repo.account_group_names(session, account_ids=[account.id])[account.id]
        repo.set_account_groups(session, account_id=account.id, groups=chosen)
        return {"from": old, "to": sorted(g.name for g in chosen)}

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.groups_changed",
        apply=apply,
    )


def rotate(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    revoke_tokens: bool = False,
    grace_period_seconds: int = 0,
    expires_at: str | None = None,
) -> ServiceAccountView:
    """A new secret. With no grace period every other secret fails from the commit on;
    with one, the other live secrets keep working until now + grace, then fail. Never
    refused for the live-secret limit. Issued tokens live on unless ``revoke_tokens``."""
    if not 0 <= grace_period_seconds <= MAX_GRACE_SECONDS:
        raise InvalidBodyError(
            f"gracePeriodSeconds must be an integer from 0 to {MAX_GRACE_SECONDS}",
            field="gracePeriodSeconds",
        )
    new_expiry = parse_expiry(expires_at, "expiresAt", actor.at)
    holder: list[tuple[str, int]] = []

    def apply(session: Session, _w: object, account: ServiceAccount) -> dict[str, Any]:
        others = repo.list_account_secrets(session, account_id=account.id)
        if grace_period_seconds == 0:
            repo.delete_account_secrets(session, account_id=account.id, ids=[r.id for r in others])
        else:
            until = actor.at + timedelta(seconds=grace_period_seconds)
            for row in others:
                if row.expires_at is None or row.expires_at > until:
                    row.expires_at = until
        row, secret = _new_secret(session, account, actor, new_expiry)
        repo.sync_account_credentials(session, account_id=account.id, now=actor.at)
        holder.append((secret, row.id))
        if revoke_tokens:
            _cut_tokens(account, actor)
        return {
            "secretId": row.id,
            "gracePeriodSeconds": grace_period_seconds,
            "revokeTokens": revoke_tokens,
        }

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.rotated",
        apply=apply,
        new_secret=holder,
    )


def revoke(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor
) -> ServiceAccountView:
    """Disable the account and kill every token issued to it so far."""

    def apply(_s: Session, _w: object, account: ServiceAccount) -> None:
        account.status = "revoked"
        _cut_tokens(account, actor)

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.revoked",
        apply=apply,
    )


def activate(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor
) -> ServiceAccountView:
    """Enable the account again; tokens killed by an earlier revoke stay dead."""

    def apply(_s: Session, _w: object, account: ServiceAccount) -> None:
        account.status = "active"

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.activated",
        apply=apply,
    )


def delete(db: Database, *, workspace_slug: str, account_id: int, actor: Actor) -> None:
    def apply(session: Session, workspace: Any, account: ServiceAccount) -> None:
        repo.count_live_accounts(session, workspace_id=workspace.id, delta=-1)
        account.status = "deleted"
        _cut_tokens(account, actor)
        secrets = repo.list_account_secrets(session, account_id=account.id)
        repo.delete_account_secrets(session, account_id=account.id, ids=[r.id for r in secrets])
        keys = repo.list_account_keys(session, account_id=account.id)
        repo.delete_account_keys(session, account_id=account.id, ids=[r.id for r in keys])
        federated = repo.list_account_federated(session, account_id=account.id)
        repo.delete_account_federated(session, account_id=account.id, ids=[r.id for r in federated])
        repo.sync_account_credentials(session, account_id=account.id, now=actor.at, live=False)

    _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.deleted",
        apply=apply,
    )


# --- secrets ---------------------------------------------------------------------------------


def list_secrets(db: Database, *, workspace_slug: str, account_id: int) -> list[SecretView]:
    """The account's secrets, expired ones too, newest first."""
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id)
        return [_secret_view(r) for r in repo.list_account_secrets(session, account_id=account.id)]


def _refuse_last_live_credential(
    session: Session, account: ServiceAccount, expires_at: datetime | None, now: datetime
) -> None:
    """409 when a credential expiring at ``expires_at`` is live and the account's only live
    credential of any kind (secret, key, federated); an expired one may always go."""
    if expires_at is not None and expires_at <= now:
        return
    if repo.count_live_credentials(session, account_id=account.id, now=now) <= 1:
        raise ConflictError(
            "This is the account's last live credential; add another one first, or "
            "delete the account"
        )


def _credential_change(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    action: str,
    apply: Any,
) -> Any:
    """Like _change, for a change to the account's credentials (secrets, keys, federated
    credentials): the account row locked, the token endpoint's copies rewritten, the audit
    row, one transaction."""
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id, for_update=True)
        result, details = apply(session, account)
        repo.sync_account_credentials(session, account_id=account.id, now=actor.at)
        account.updated_at = actor.at
        audit.record(
            session,
            workspace_id=workspace.id,
            action=action,
            actor=actor,
            target=account.client_id,
            details={"id": account.id, **details},
        )
        return result


def add_secret(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    expires_at: str | None = None,
) -> SecretView:
    """One more secret (409 at MAX_LIVE_SECRETS live ones); shown in the answer, this once."""
    expiry = parse_expiry(expires_at, "expiresAt", actor.at)

    def apply(session: Session, account: ServiceAccount) -> tuple[SecretView, dict[str, Any]]:
        live = repo.sync_account_credentials(session, account_id=account.id, now=actor.at)
        if len(live.secrets) >= MAX_LIVE_SECRETS:
            raise ConflictError(
                f"The account already holds {MAX_LIVE_SECRETS} live secrets; delete one first"
            )
        row, secret = _new_secret(session, account, actor, expiry)
        view = _secret_view(row, secret)
        return view, {"secretId": row.id, "expiresAt": view.expires_at}

    result: SecretView = _credential_change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.secret_added",
        apply=apply,
    )
    return result


def parse_secret_id(raw: str) -> int:
    return parse_path_id(raw, "Secret not found")


def delete_secret(
    db: Database, *, workspace_slug: str, account_id: int, secret_id: int, actor: Actor
) -> None:
    """Delete one secret; it fails from the commit on. The account's last live credential
    may not be deleted (409); an expired secret always may."""

    def apply(session: Session, account: ServiceAccount) -> tuple[None, dict[str, Any]]:
        rows = repo.list_account_secrets(session, account_id=account.id)
        target = next((r for r in rows if r.id == secret_id), None)
        if target is None:
            raise NotFoundError("Secret not found")
        _refuse_last_live_credential(session, account, target.expires_at, actor.at)
        repo.delete_account_secrets(session, account_id=account.id, ids=[secret_id])
        return None, {"secretId": secret_id}

    _credential_change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.secret_deleted",
        apply=apply,
    )


# --- keys (private_key_jwt) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyView:
    """One of an account's public keys as the API shows it (never the JWK itself)."""

    kid: str
    kty: str
    alg: str
    created_at: str
    created_by: str
    expires_at: str | None
    last_used_at: str | None


def _key_view(row: ServiceAccountKey) -> KeyView:
    return KeyView(
        kid=row.kid,
        kty=row.kty,
        alg=row.alg,
        created_at=isoformat(row.created_at),
        created_by=row.created_by,
        expires_at=_iso(row.expires_at),
        last_used_at=_iso(row.last_used_at),
    )


def list_keys(db: Database, *, workspace_slug: str, account_id: int) -> list[KeyView]:
    """The account's keys, expired ones too, newest first."""
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id)
        return [_key_view(r) for r in repo.list_account_keys(session, account_id=account.id)]


def add_key(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    jwk: Any,
    expires_at: str | None = None,
) -> KeyView:
    """Register a public JWK (oauth.jwk's rules; 400 saying why one is refused); 409 for a
    kid already on the account or at MAX_LIVE_KEYS live keys."""
    try:
        parsed = parse_client_jwk(jwk)
    except JwkError as exc:
        raise InvalidBodyError(str(exc), field="jwk") from None
    expiry = parse_expiry(expires_at, "expiresAt", actor.at)

    def apply(session: Session, account: ServiceAccount) -> tuple[KeyView, dict[str, Any]]:
        rows = repo.list_account_keys(session, account_id=account.id)
        if any(r.kid == parsed.kid for r in rows):
            raise ConflictError("The account already holds a key with this kid")
        live = [r for r in rows if r.expires_at is None or r.expires_at > actor.at]
        if len(live) >= MAX_LIVE_KEYS:
            raise ConflictError(
                f"The account already holds {MAX_LIVE_KEYS} live keys; delete one first"
            )
        row = ServiceAccountKey(
            service_account_id=account.id,
            kid=parsed.kid,
            kty=parsed.kty,
            alg=parsed.alg,
            jwk=dict(parsed.jwk),
            created_at=actor.at,
            created_by=actor.subject,
            expires_at=expiry,
        )
        session.add(row)
        session.flush()
        return _key_view(row), {"kid": row.kid, "alg": row.alg}

    result: KeyView = _credential_change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.key_added",
        apply=apply,
    )
    return result


def delete_key(
    db: Database, *, workspace_slug: str, account_id: int, kid: str, actor: Actor
) -> None:
    """Delete one key by kid; it fails from the commit on. Not the account's last live
    credential of any kind (409); an expired key always may go."""

    def apply(session: Session, account: ServiceAccount) -> tuple[None, dict[str, Any]]:
        rows = repo.list_account_keys(session, account_id=account.id)
        target = next((r for r in rows if r.kid == kid), None)
        if target is None:
            raise NotFoundError("Key not found")
        _refuse_last_live_credential(session, account, target.expires_at, actor.at)
        repo.delete_account_keys(session, account_id=account.id, ids=[target.id])
        return None, {"kid": target.kid, "alg": target.alg}

    _credential_change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.key_deleted",
        apply=apply,
    )


# --- federated credentials -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FederatedView:
    """One of an account's federated credentials as the API shows it."""

    id: int
    name: str
    issuer: str
    subject: str
    audience: str
    created_at: str
    created_by: str
    expires_at: str | None
    last_used_at: str | None


def _federated_view(row: ServiceAccountFederatedCredential) -> FederatedView:
    return FederatedView(
        id=row.id,
        name=row.name,
        issuer=row.issuer,
        subject=row.subject,
        audience=row.audience,
        created_at=isoformat(row.created_at),
        created_by=row.created_by,
        expires_at=_iso(row.expires_at),
        last_used_at=_iso(row.last_used_at),
    )


def check_issuer_url(issuer: str, *, allow_http: bool = False) -> str:
    """An issuer as OpenID Connect Discovery §4 wants it: an absolute https URL with a host
    and no query or fragment (http too when ``allow_http``: development and tests)."""
    schemes = ("https", "http") if allow_http else ("https",)
    wanted = "an https:// URL" if not allow_http else "an https:// or http:// URL"
    message = f"issuer must be {wanted} with a host and no query or fragment"
    if not issuer or len(issuer) > MAX_FEDERATED_FIELD or not issuer.isprintable():
        raise InvalidBodyError(
            f"issuer must be 1 to {MAX_FEDERATED_FIELD} printable characters", field="issuer"
        )
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 (raises ValueError for a malformed port)
    except ValueError:
        raise InvalidBodyError(message, field="issuer") from None
    if (
        parts.scheme not in schemes
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or "?" in issuer
        or "#" in issuer
        or any(c.isspace() for c in issuer)
    ):
        raise InvalidBodyError(message, field="issuer")
    return issuer


def _check_claim(value: str, field: str) -> str:
    """A subject or audience, compared exactly with a token's claim: 1 to 512 characters."""
    if not value or len(value) > MAX_FEDERATED_FIELD or not value.isprintable():
        raise InvalidBodyError(
            f"{field} must be 1 to {MAX_FEDERATED_FIELD} printable characters", field=field
        )
    return value


def list_federated(db: Database, *, workspace_slug: str, account_id: int) -> list[FederatedView]:
    """The account's federated credentials, expired ones too, newest first."""
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id)
        rows = repo.list_account_federated(session, account_id=account.id)
        return [_federated_view(r) for r in rows]


def add_federated(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    name: str,
    issuer: str,
    subject: str,
    default_audience: str,
    audience: str | None = None,
    expires_at: str | None = None,
    allow_http: bool = False,
) -> FederatedView:
    """Trust tokens of ``issuer`` about ``subject`` for ``audience`` (default: ours) as the
    account; 409 at MAX_LIVE_FEDERATED live ones or for the same triple already on the
    account. The issuer is not contacted."""
    name = check_name(name)
    issuer = check_issuer_url(issuer, allow_http=allow_http)
    subject = _check_claim(subject, "subject")
    audience = _check_claim(default_audience if audience is None else audience, "audience")
    expiry = parse_expiry(expires_at, "expiresAt", actor.at)

    def apply(session: Session, account: ServiceAccount) -> tuple[FederatedView, dict[str, Any]]:
        rows = repo.list_account_federated(session, account_id=account.id)
        if any((r.issuer, r.subject, r.audience) == (issuer, subject, audience) for r in rows):
            raise ConflictError(
                "The account already holds a federated credential with this issuer, subject "
                "and audience"
            )
        live = [r for r in rows if r.expires_at is None or r.expires_at > actor.at]
        if len(live) >= MAX_LIVE_FEDERATED:
            raise ConflictError(
                f"The account already holds {MAX_LIVE_FEDERATED} live federated credentials; "
                "delete one first"
            )
        row = ServiceAccountFederatedCredential(
            service_account_id=account.id,
            name=name,
            issuer=issuer,
            subject=subject,
            audience=audience,
            created_at=actor.at,
            created_by=actor.subject,
            expires_at=expiry,
        )
        session.add(row)
        session.flush()
        return _federated_view(row), _federated_details(row)

    result: FederatedView = _credential_change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.federated_credential_added",
        apply=apply,
    )
    return result


def _federated_details(row: ServiceAccountFederatedCredential) -> dict[str, Any]:
    return {"federatedCredentialId": row.id, "issuer": row.issuer, "subject": row.subject}


def parse_federated_id(raw: str) -> int:
    return parse_path_id(raw, "Federated credential not found")


def delete_federated(
    db: Database, *, workspace_slug: str, account_id: int, credential_id: int, actor: Actor
) -> None:
    """Delete one federated credential; it fails from the commit on. Not the account's last
    live credential of any kind (409); an expired one always may go."""

    def apply(session: Session, account: ServiceAccount) -> tuple[None, dict[str, Any]]:
        rows = repo.list_account_federated(session, account_id=account.id)
        target = next((r for r in rows if r.id == credential_id), None)
        if target is None:
            raise NotFoundError("Federated credential not found")
        _refuse_last_live_credential(session, account, target.expires_at, actor.at)
        details = _federated_details(target)
        repo.delete_account_federated(session, account_id=account.id, ids=[target.id])
        return None, details

    _credential_change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.federated_credential_deleted",
        apply=apply,
    )


def count_expiring_credentials(db: Database, *, now: datetime) -> dict[str, int]:
    """Live credentials of live accounts expiring within 7 and 30 days (the gauge)."""
    with db.read() as session:
        week, month = repo.count_expiring_credentials(
            session, now=now, horizons=[now + timedelta(days=7), now + timedelta(days=30)]
        )
    return {"7d": week, "30d": month}
