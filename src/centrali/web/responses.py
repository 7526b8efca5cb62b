"""Answers of the workspace API and of discovery, as pydantic models: the OpenAPI document
describes every answer (so a generated client is typed), and FastAPI serialises them.

The services return typed views (``services.service_accounts.ServiceAccountView`` …); the
``of`` constructors here turn them into these models. Wire names live here only, as
aliases, as for the request bodies in ``web.schemas``. A field that is sometimes absent
(not null) is optional here and the route serialises with ``response_model_exclude_unset``.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from centrali.services.audit import AuditEventView, TokenFailureView
from centrali.services.service_accounts import (
    FederatedView,
    KeyView,
    SecretView,
    ServiceAccountView,
)
from centrali.services.structures import FieldSpec, RecordView, StructureView


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# --- service accounts ---------------------------------------------------------------------


class ServiceAccount(_Out):
    """A service account; never its secrets."""

    id: int
    client_id: str = Field(alias="clientId")
    name: str
    description: str | None
    workspace: str
    grant_types: list[str]
    scope: str
    groups: list[str]
    status: str = Field(description="active or revoked")
    created_at: str = Field(alias="createdAt")
    created_by: str = Field(alias="createdBy")
    updated_at: str = Field(alias="updatedAt")
    last_used_at: str | None = Field(alias="lastUsedAt")
    credentials_expire_at: str | None = Field(
        alias="credentialsExpireAt",
        description="When the last live credential expires; null when one never does",
    )

    @classmethod
    def of(cls, view: ServiceAccountView) -> Self:
        return cls(**_account_fields(view))


def _account_fields(view: ServiceAccountView) -> dict[str, Any]:
    return {
        "id": view.id,
        "client_id": view.client_id,
        "name": view.name,
        "description": view.description,
        "workspace": view.workspace,
        "grant_types": list(view.grant_types),
        "scope": view.scope,
        "groups": list(view.groups),
        "status": view.status,
        "created_at": view.created_at,
        "created_by": view.created_by,
        "updated_at": view.updated_at,
        "last_used_at": view.last_used_at,
        "credentials_expire_at": view.credentials_expire_at,
    }


def _shown_once(view: ServiceAccountView | SecretView) -> str:
    if view.client_secret is None:  # the services always set it on these answers
        raise ValueError("the new secret is missing")
    return view.client_secret


def _new_secret_id(view: ServiceAccountView) -> int:
    if view.secret_id is None:
        raise ValueError("the new secret's id is missing")
    return view.secret_id


class CreatedServiceAccount(ServiceAccount):
    """A new account, with its first secret: shown this once."""

    client_secret: str = Field(alias="clientSecret")
    secret_id: int = Field(alias="secretId")

    @classmethod
    def of(cls, view: ServiceAccountView) -> Self:
        return cls(
            **_account_fields(view),
            client_secret=_shown_once(view),
            secret_id=_new_secret_id(view),
        )


class SecretRotation(_Out):
    """The answer of a rotation: the new secret, shown this once."""

    id: int
    client_id: str = Field(alias="clientId")
    client_secret: str = Field(alias="clientSecret")
    secret_id: int = Field(alias="secretId")
    name: str
    workspace: str
    updated_at: str = Field(alias="updatedAt")

    @classmethod
    def of(cls, view: ServiceAccountView) -> Self:
        return cls(
            id=view.id,
            client_id=view.client_id,
            client_secret=_shown_once(view),
            secret_id=_new_secret_id(view),
            name=view.name,
            workspace=view.workspace,
            updated_at=view.updated_at,
        )


class ServiceAccountPage(_Out):
    """A page of accounts: by number (``page``) or after an account id (``after``)."""

    data: list[ServiceAccount]
    # Absent, never null: the document does not offer null.
    page: int | SkipJsonSchema[None] = Field(
        None, description="Absent when the page was asked with after"
    )
    after: int | SkipJsonSchema[None] = Field(
        None, description="Present only when the page was asked with it"
    )
    limit: int
    total: int
    next_after: int | None = Field(
        alias="nextAfter", description="The after of the next page; null on the last"
    )


class ServiceAccountSecret(_Out):
    """One of an account's secrets: its hint, never the secret."""

    id: int
    hint: str | None
    created_at: str = Field(alias="createdAt")
    created_by: str = Field(alias="createdBy")
    expires_at: str | None = Field(alias="expiresAt")
    last_used_at: str | None = Field(alias="lastUsedAt")

    @classmethod
    def of(cls, view: SecretView) -> Self:
        return cls(**_secret_fields(view))


def _secret_fields(view: SecretView) -> dict[str, Any]:
    return {
        "id": view.id,
        "hint": view.hint,
        "created_at": view.created_at,
        "created_by": view.created_by,
        "expires_at": view.expires_at,
        "last_used_at": view.last_used_at,
    }


class NewServiceAccountSecret(ServiceAccountSecret):
    """A new secret, shown this once."""

    client_secret: str = Field(alias="clientSecret")

    @classmethod
    def of(cls, view: SecretView) -> Self:
        return cls(**_secret_fields(view), client_secret=_shown_once(view))


class ServiceAccountSecretList(_Out):
    data: list[ServiceAccountSecret]


class ServiceAccountKey(_Out):
    """One of an account's public keys for private_key_jwt (not the JWK itself)."""

    kid: str
    kty: str
    alg: str
    created_at: str = Field(alias="createdAt")
    created_by: str = Field(alias="createdBy")
    expires_at: str | None = Field(alias="expiresAt")
    last_used_at: str | None = Field(alias="lastUsedAt")

    @classmethod
    def of(cls, view: KeyView) -> Self:
        return cls(
            kid=view.kid,
            kty=view.kty,
            alg=view.alg,
            created_at=view.created_at,
            created_by=view.created_by,
            expires_at=view.expires_at,
            last_used_at=view.last_used_at,
        )


class ServiceAccountKeyList(_Out):
    data: list[ServiceAccountKey]


class FederatedCredential(_Out):
    """An external issuer's tokens about ``subject`` accepted as the account's."""

    id: int
    name: str
    issuer: str
    subject: str
    audience: str
    created_at: str = Field(alias="createdAt")
    created_by: str = Field(alias="createdBy")
    expires_at: str | None = Field(alias="expiresAt")
    last_used_at: str | None = Field(alias="lastUsedAt")

    @classmethod
    def of(cls, view: FederatedView) -> Self:
        return cls(
            id=view.id,
            name=view.name,
            issuer=view.issuer,
            subject=view.subject,
            audience=view.audience,
            created_at=view.created_at,
            created_by=view.created_by,
            expires_at=view.expires_at,
            last_used_at=view.last_used_at,
        )


class FederatedCredentialList(_Out):
    data: list[FederatedCredential]


# --- structures and records ---------------------------------------------------------------


class StructureField(_Out):
    name: str
    type: str
    required: bool

    @classmethod
    def of(cls, spec: FieldSpec) -> Self:
        return cls(name=spec.name, type=spec.type, required=spec.required)


class Structure(_Out):
    """A record type of the workspace."""

    id: int
    slug: str
    name: str
    description: str | None
    fields: list[StructureField]
    created_at: str = Field(alias="createdAt")
    created_by: str = Field(alias="createdBy")
    updated_at: str = Field(alias="updatedAt")

    @classmethod
    def of(cls, view: StructureView) -> Self:
        return cls(
            id=view.id,
            slug=view.slug,
            name=view.name,
            description=view.description,
            fields=[StructureField.of(f) for f in view.fields],
            created_at=view.created_at,
            created_by=view.created_by,
            updated_at=view.updated_at,
        )


class StructurePage(_Out):
    data: list[Structure]
    page: int
    limit: int
    total: int


class Record(_Out):
    """A record of one of the workspace's structures."""

    id: int
    record_slug: str = Field(alias="recordSlug")
    data: dict[str, Any]
    created_at: str = Field(alias="createdAt")
    created_by: str = Field(alias="createdBy")
    updated_at: str = Field(alias="updatedAt")

    @classmethod
    def of(cls, view: RecordView) -> Self:
        # The API's hot read. Validating construction (pydantic-core) measured faster than
        # model_construct (Python) here: about 1.5 us against 3.5 us.
        return cls(
            id=view.id,
            record_slug=view.record_slug,
            data=view.data,
            created_at=view.created_at,
            created_by=view.created_by,
            updated_at=view.updated_at,
        )


class RecordPage(_Out):
    data: list[Record]
    page: int
    limit: int
    total: int


# --- audit --------------------------------------------------------------------------------


class AuditEvent(_Out):
    id: int
    action: str
    actor: str = Field(description="A user's subject, or a service account's client id")
    target: str | None
    source_ip: str | None = Field(alias="sourceIp")
    created_at: str = Field(alias="createdAt")
    details: dict[str, Any]

    @classmethod
    def of(cls, view: AuditEventView) -> Self:
        return cls(
            id=view.id,
            action=view.action,
            actor=view.actor,
            target=view.target,
            source_ip=view.source_ip,
            created_at=view.created_at,
            details=view.details,
        )


class AuditEventPage(_Out):
    data: list[AuditEvent]
    page: int
    limit: int
    total: int


class TokenFailure(_Out):
    """Failed token requests of one client id for one reason in one hour (UTC)."""

    client_id: str = Field(alias="clientId")
    reason: str
    window_start: str = Field(alias="windowStart")
    count: int
    last_seen_at: str = Field(alias="lastSeenAt")

    @classmethod
    def of(cls, view: TokenFailureView) -> Self:
        return cls(
            client_id=view.client_id,
            reason=view.reason,
            window_start=view.window_start,
            count=view.count,
            last_seen_at=view.last_seen_at,
        )


class TokenFailurePage(_Out):
    data: list[TokenFailure]
    page: int
    limit: int
    total: int


# --- discovery and operations -------------------------------------------------------------


class ProviderMetadata(BaseModel):
    """OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata (wire names are the field
    names). Members added to ``oauth.discovery`` later pass through (``extra``)."""

    model_config = ConfigDict(extra="allow")

    issuer: str
    token_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    authorization_endpoint: str
    userinfo_endpoint: str
    end_session_endpoint: str
    response_modes_supported: list[str]
    code_challenge_methods_supported: list[str]
    authorization_response_iss_parameter_supported: bool
    prompt_values_supported: list[str]
    claims_parameter_supported: bool
    request_parameter_supported: bool
    request_uri_parameter_supported: bool
    introspection_endpoint: str
    introspection_endpoint_auth_methods_supported: list[str]
    introspection_endpoint_auth_signing_alg_values_supported: list[str]
    revocation_endpoint: str
    revocation_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_signing_alg_values_supported: list[str]
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    claims_supported: list[str]


class Liveness(BaseModel):
    status: str
