"""The schema, as SQLAlchemy 2 typed declarative classes. Timestamps are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on SQLite (naive storage) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Live (not deleted) service accounts; kept with each create and delete, so a list's
    # `total` is one row read instead of a count over every account.
    service_account_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(2000))
    # New service accounts created without `groups` join the default groups.
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GroupPermission(Base):
    __tablename__ = "group_permissions"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(64), primary_key=True)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MembershipGroup(Base):
    __tablename__ = "membership_groups"

    membership_id: Mapped[int] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ServiceAccount(Base):
    __tablename__ = "service_accounts"
    __table_args__ = (
        Index("ix_service_accounts_workspace_status_id", "workspace_id", "status", "id"),
        Index(
            "ix_service_accounts_live",
            "workspace_id",
            "id",
            sqlite_where=text("status <> 'deleted'"),
            postgresql_where=text("status <> 'deleted'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The token endpoint's copy of the account's secrets that were live when last written:
    # [[secret id, "sha256$<hex>", expires at (epoch ms) or null], ...], written with
    # service_account_secrets by repositories.sync_account_secrets (the one place that writes
    # either), so a token request reads one row and no join. Empty once the account is deleted.
    secrets: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    # The same for its public keys, [[key id, kid, alg, public JWK, expires at (epoch ms) or
    # null], ...], and its federated credentials, [[id, issuer, subject, audience, expires at
    # (epoch ms) or null], ...]: live ones only, written by
    # repositories.sync_account_credentials with their tables.
    public_keys: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    federated: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(String(512))
    # active | revoked | deleted (deleted rows are kept so a clientId is never reused).
    status: Mapped[str] = mapped_column(String(16))
    # The names of the account's groups, written with service_account_groups by
    # repositories.set_account_groups: the token endpoint reads them without a join.
    group_names: Mapped[list[str] | None] = mapped_column(JSON)
    # Access tokens whose iat, in epoch milliseconds, is at or below this are refused (a
    # revoke, a delete, a rotation with revokeTokens); 0: none. Tokens minted after a revoke
    # carry a later iat, to the millisecond if need be (oauth.grants.issued_at_after).
    tokens_cutoff_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    # Moved on by every revoke, delete and rotation with revokeTokens; tokens carry the one
    # they were issued at (claim accountEpoch) and die when it moves past them: no clock
    # involved, so instances whose clocks disagree cannot let a token survive a revoke.
    tokens_epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    # The latest successful use of any of the account's credentials (flushed every few
    # seconds by services.credential_usage; never moves back).
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ServiceAccountSecret(Base):
    """One of an account's client secrets (at most 5 live): its hash, never the secret."""

    __tablename__ = "service_account_secrets"
    # Ids are never reused (SQLite would hand a deleted row's id out again): a secret id in
    # the audit log names one secret, and a rotation always changes the account's ids.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    service_account_id: Mapped[int] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), index=True
    )
    # sha256$<hex> of the secret (oauth.credentials.hash_secret).
    secret_hash: Mapped[str] = mapped_column(String(128))
    # "…" + the secret's last 4 characters; NULL for a secret from before migration 0006.
    hint: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    # NULL: never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ServiceAccountKey(Base):
    """One of an account's public keys for ``private_key_jwt`` (at most 5 live): the public
    JWK only, never a private member (oauth.jwk)."""

    __tablename__ = "service_account_keys"
    # Ids never reused, like secrets'; a kid names one key of the account.
    __table_args__ = (
        UniqueConstraint("service_account_id", "kid"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    service_account_id: Mapped[int] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), index=True
    )
    kid: Mapped[str] = mapped_column(String(128))
    kty: Mapped[str] = mapped_column(String(8))
    alg: Mapped[str] = mapped_column(String(8))
    # Public members, kid, alg and use (oauth.jwk.ClientJwk.jwk).
    jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    # NULL: never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ServiceAccountFederatedCredential(Base):
    """A workload identity of an external OpenID Connect issuer that stands for the account
    (at most 20 live): tokens of ``issuer`` about ``subject`` for ``audience``."""

    __tablename__ = "service_account_federated_credentials"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    service_account_id: Mapped[int] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(512))
    audience: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    # NULL: never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ServiceAccountGroup(Base):
    __tablename__ = "service_account_groups"

    service_account_id: Mapped[int] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Unique: two servers racing to create key N cannot both succeed.
    generation: Mapped[int] = mapped_column(Integer, unique=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Published in the JWKS from creation; signs only from this time on (None: at once).
    activates_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RevokedToken(Base):
    """An access token revoked by its ``jti`` (RFC 7009); kept until the token expires."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    client_id: Mapped[str] = mapped_column(String(128))
    # The token's own ``exp`` (epoch seconds): the row can go once it has passed.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TokenFailureCount(Base):
    """Failed token requests counted per client id, reason and hour, not row by row.

    Ids that match no account are counted under one ``client_id`` ("unknown") so a flood of
    made-up ids cannot grow the table."""

    __tablename__ = "token_failure_counts"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    workspace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_workspace_id_id", "workspace_id", "id"),
        Index("ix_audit_events_workspace_id_action_id", "workspace_id", "action", "id"),
        Index("ix_audit_events_workspace_id_actor_id", "workspace_id", "actor", "id"),
        Index("ix_audit_events_workspace_id_target_id", "workspace_id", "target", "id"),
        Index("ix_audit_events_workspace_id_created_at", "workspace_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320))
    target: Mapped[str | None] = mapped_column(String(128))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ServerSetting(Base):
    """Values the server publishes for the admin CLI, such as the issuer it serves as."""

    __tablename__ = "server_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Structure(Base):
    """A record type of a workspace: a slug, a name and typed fields."""

    __tablename__ = "structures"
    __table_args__ = (UniqueConstraint("workspace_id", "slug"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    # [{"name": str, "type": str, "required": bool}, ...]
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (Index("ix_records_structure_id_id", "structure_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id", ondelete="CASCADE"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- OpenID Connect provider for users (human sign-in) ---------------------------------------


class PublicClientRow(Base):
    """A registered public OIDC client (no secret; PKCE): the console's peers."""

    __tablename__ = "public_clients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Matched exactly (no prefix, no wildcard, no loopback port leeway).
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BrowserSession(Base):
    """A user signed in at the provider: the cookie's SHA-256 only, never the cookie."""

    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Public id of the session (the ID token's ``sid``); not a secret.
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuthorizationCode(Base):
    """An authorization code (SHA-256 only) and the head of the refresh-token chain it starts:
    ``revoked_at`` set here revokes every refresh token of the chain at once."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # The sign-in it came from: logging out revokes the chains of that session.
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("browser_sessions.id", ondelete="SET NULL"), index=True
    )
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    code_challenge: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(String(512))
    scope: Mapped[str] = mapped_column(String(512))
    auth_time: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RefreshToken(Base):
    """A refresh token (SHA-256 only), one link of the chain headed by its authorization code.
    Used once (``used_at``): presenting it again revokes the chain."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    chain_id: Mapped[int] = mapped_column(
        ForeignKey("authorization_codes.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The access token issued with it: revoked by its jti when the chain is.
    access_jti: Mapped[str] = mapped_column(String(64))
    access_expires_at: Mapped[int] = mapped_column(BigInteger)


class ClientAssertionJti(Base):
    """``private_key_jwt`` assertion ids already used, until the assertion expires (each
    may be used once, on any worker or instance: store.replay)."""

    __tablename__ = "client_assertion_jtis"

    # Hex SHA-256 of client_id + "\n" + jti (fixed length, whatever the client sent).
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Epoch seconds after which the row may go.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
