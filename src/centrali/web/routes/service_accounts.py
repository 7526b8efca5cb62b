"""``/workspace/{slug}/api/v1/service-accounts``: the management API of the guide."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from centrali.services import service_accounts as accounts
from centrali.services.errors import InvalidBodyError
from centrali.services.service_accounts import (
    parse_account_id,
    parse_expiring_within,
    parse_federated_id,
    parse_secret_id,
)
from centrali.services.validation import MAX_ID, PageRequest, parse_int
from centrali.web.deps import ManagerDep
from centrali.web.openapi_errors import API_ERRORS, operation_id
from centrali.web.responses import (
    CreatedServiceAccount,
    FederatedCredential,
    FederatedCredentialList,
    NewServiceAccountSecret,
    SecretRotation,
    ServiceAccount,
    ServiceAccountKey,
    ServiceAccountKeyList,
    ServiceAccountPage,
    ServiceAccountSecret,
    ServiceAccountSecretList,
)
from centrali.web.runtime import get_runtime
from centrali.web.schemas import (
    DescriptionUpdate,
    FederatedCredentialCreate,
    GroupsUpdate,
    KeyCreate,
    NameUpdate,
    RotateRequest,
    SecretCreate,
    ServiceAccountCreate,
)

router = APIRouter(
    prefix="/workspace/{workspace_slug}/api/v1/service-accounts",
    tags=["service accounts"],
    responses=API_ERRORS,
    generate_unique_id_function=operation_id,
)


def _no_store(response: Response) -> None:
    """Answers that carry secrets or account data are not to be cached."""
    response.headers["Cache-Control"] = "no-store"


@router.post("", status_code=201)
def create_service_account(
    request: Request,
    response: Response,
    workspace_slug: str,
    body: ServiceAccountCreate,
    actor: ManagerDep,
) -> CreatedServiceAccount:
    """Create an account; the answer holds its secret, shown this once."""
    view = accounts.create(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        actor=actor,
        name=body.name,
        description=body.description,
        grant_types=body.grant_types,
        scope=body.scope,
        groups=body.groups,
        secret_expires_at=body.secret_expires_at,
    )
    _no_store(response)
    return CreatedServiceAccount.of(view)


@router.get("", response_model_exclude_unset=True)
def list_service_accounts(
    request: Request,
    workspace_slug: str,
    actor: ManagerDep,
    page: str | None = None,
    limit: str | None = None,
    after: str | None = None,
    expiring_within_days: Annotated[str | None, Query(alias="expiringWithinDays")] = None,
) -> ServiceAccountPage:
    """A page by number (``page``), or after the account ``after`` (keyset: the same cost
    at any depth). ``nextAfter`` is the ``after`` of the next page, null on the last.
    ``expiringWithinDays`` (1-3650): only the accounts with a live credential (secret, key
    or federated credential) expiring that soon (``total`` counts those)."""
    paging = PageRequest.parse(page, limit)
    cursor = None
    if after is not None:
        if page is not None:
            raise InvalidBodyError("give page or after, not both", field="after")
        cursor = parse_int(after, "after", 0, 0, MAX_ID)
    views, total = accounts.list_accounts(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        page=paging,
        after=cursor,
        expiring_within_days=parse_expiring_within(expiring_within_days),
    )
    # Built with every field it answers: the others stay unset, so absent (not null).
    answer = ServiceAccountPage(
        data=[ServiceAccount.of(v) for v in views],
        limit=paging.limit,
        total=total,
        next_after=views[-1].id if len(views) == paging.limit else None,
    )
    if cursor is None:
        answer.page = paging.page
    else:
        answer.after = cursor
    return answer


@router.get("/{account_id}")
def get_service_account(
    request: Request, workspace_slug: str, account_id: str, actor: ManagerDep
) -> ServiceAccount:
    view = accounts.get(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
    )
    return ServiceAccount.of(view)


@router.put("/{account_id}/name")
def rename_service_account(
    request: Request, workspace_slug: str, account_id: str, body: NameUpdate, actor: ManagerDep
) -> ServiceAccount:
    return ServiceAccount.of(
        accounts.rename(
            get_runtime(request).db,
            workspace_slug=workspace_slug,
            account_id=parse_account_id(account_id),
            actor=actor,
            name=body.name,
        )
    )


@router.put("/{account_id}/description")
def describe_service_account(
    request: Request,
    workspace_slug: str,
    account_id: str,
    body: DescriptionUpdate,
    actor: ManagerDep,
) -> ServiceAccount:
    return ServiceAccount.of(
        accounts.describe(
            get_runtime(request).db,
            workspace_slug=workspace_slug,
            account_id=parse_account_id(account_id),
            actor=actor,
            description=body.description,
        )
    )


@router.put("/{account_id}/groups")
def set_service_account_groups(
    request: Request, workspace_slug: str, account_id: str, body: GroupsUpdate, actor: ManagerDep
) -> ServiceAccount:
    return ServiceAccount.of(
        accounts.set_groups(
            get_runtime(request).db,
            workspace_slug=workspace_slug,
            account_id=parse_account_id(account_id),
            actor=actor,
            groups=body.groups,
        )
    )


@router.post("/{account_id}/rotate")
def rotate_service_account_secret(
    request: Request,
    workspace_slug: str,
    account_id: str,
    actor: ManagerDep,
    response: Response,
    body: RotateRequest | None = None,
) -> SecretRotation:
    """A new secret, shown this once. The other secrets fail from now on, or with
    ``gracePeriodSeconds`` (0-604800) once that time has passed."""
    body = body or RotateRequest()
    view = accounts.rotate(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        actor=actor,
        revoke_tokens=body.revoke_tokens,
        grace_period_seconds=body.grace_period_seconds,
        expires_at=body.expires_at,
    )
    _no_store(response)
    return SecretRotation.of(view)


@router.post("/{account_id}/revoke")
def revoke_service_account(
    request: Request, workspace_slug: str, account_id: str, actor: ManagerDep
) -> ServiceAccount:
    return ServiceAccount.of(
        accounts.revoke(
            get_runtime(request).db,
            workspace_slug=workspace_slug,
            account_id=parse_account_id(account_id),
            actor=actor,
        )
    )


@router.post("/{account_id}/activate")
def activate_service_account(
    request: Request, workspace_slug: str, account_id: str, actor: ManagerDep
) -> ServiceAccount:
    return ServiceAccount.of(
        accounts.activate(
            get_runtime(request).db,
            workspace_slug=workspace_slug,
            account_id=parse_account_id(account_id),
            actor=actor,
        )
    )


@router.delete("/{account_id}", status_code=204)
def delete_service_account(
    request: Request, workspace_slug: str, account_id: str, actor: ManagerDep
) -> Response:
    accounts.delete(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        actor=actor,
    )
    return Response(status_code=204)


@router.get("/{account_id}/secrets")
def list_service_account_secrets(
    request: Request, response: Response, workspace_slug: str, account_id: str, actor: ManagerDep
) -> ServiceAccountSecretList:
    """The account's secrets (hint, created, expiry, last use), newest first; never the
    secrets themselves."""
    views = accounts.list_secrets(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
    )
    _no_store(response)
    return ServiceAccountSecretList(data=[ServiceAccountSecret.of(v) for v in views])


@router.post("/{account_id}/secrets", status_code=201)
def add_service_account_secret(
    request: Request,
    response: Response,
    workspace_slug: str,
    account_id: str,
    actor: ManagerDep,
    body: SecretCreate | None = None,
) -> NewServiceAccountSecret:
    """One more secret (at most 5 live), shown this once; the others keep working."""
    view = accounts.add_secret(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        actor=actor,
        expires_at=body.expires_at if body else None,
    )
    _no_store(response)
    return NewServiceAccountSecret.of(view)


@router.delete("/{account_id}/secrets/{secret_id}", status_code=204)
def delete_service_account_secret(
    request: Request, workspace_slug: str, account_id: str, secret_id: str, actor: ManagerDep
) -> Response:
    """Delete one secret; it fails at once. Not the account's last live credential (409)."""
    accounts.delete_secret(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        secret_id=parse_secret_id(secret_id),
        actor=actor,
    )
    return Response(status_code=204)


@router.get("/{account_id}/keys")
def list_service_account_keys(
    request: Request, response: Response, workspace_slug: str, account_id: str, actor: ManagerDep
) -> ServiceAccountKeyList:
    """The account's public keys for ``private_key_jwt`` (kid, type, algorithm, created,
    expiry, last use), newest first."""
    views = accounts.list_keys(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
    )
    _no_store(response)
    return ServiceAccountKeyList(data=[ServiceAccountKey.of(v) for v in views])


@router.post("/{account_id}/keys", status_code=201)
def add_service_account_key(
    request: Request,
    response: Response,
    workspace_slug: str,
    account_id: str,
    body: KeyCreate,
    actor: ManagerDep,
) -> ServiceAccountKey:
    """Register a public JWK (RSA ≥ 2048 bits with RS256 or PS256, EC P-256 with ES256,
    Ed25519 with EdDSA; at most 5 live); ``kid`` defaults to its RFC 7638 thumbprint."""
    view = accounts.add_key(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        actor=actor,
        jwk=body.jwk,
        expires_at=body.expires_at,
    )
    _no_store(response)
    return ServiceAccountKey.of(view)


# ``:path``: a kid may hold "/" (any printable ASCII), sent percent-encoded.
@router.delete("/{account_id}/keys/{kid:path}", status_code=204)
def delete_service_account_key(
    request: Request, workspace_slug: str, account_id: str, kid: str, actor: ManagerDep
) -> Response:
    """Delete one key; it fails at once. Not the account's last live credential (409)."""
    accounts.delete_key(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        kid=kid,
        actor=actor,
    )
    return Response(status_code=204)


@router.get("/{account_id}/federated-credentials")
def list_service_account_federated_credentials(
    request: Request, response: Response, workspace_slug: str, account_id: str, actor: ManagerDep
) -> FederatedCredentialList:
    """The account's federated credentials, newest first."""
    views = accounts.list_federated(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
    )
    _no_store(response)
    return FederatedCredentialList(data=[FederatedCredential.of(v) for v in views])


@router.post("/{account_id}/federated-credentials", status_code=201)
def add_service_account_federated_credential(
    request: Request,
    response: Response,
    workspace_slug: str,
    account_id: str,
    body: FederatedCredentialCreate,
    actor: ManagerDep,
) -> FederatedCredential:
    """Trust an external issuer's tokens about ``subject`` as this account (at most 20
    live); ``audience`` defaults to this server's issuer. The issuer is not contacted."""
    runtime = get_runtime(request)
    view = accounts.add_federated(
        runtime.db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        actor=actor,
        name=body.name,
        issuer=body.issuer,
        subject=body.subject,
        audience=body.audience,
        default_audience=runtime.settings.issuer,
        expires_at=body.expires_at,
        allow_http=runtime.settings.federation_allow_http,
    )
    _no_store(response)
    return FederatedCredential.of(view)


@router.delete("/{account_id}/federated-credentials/{credential_id}", status_code=204)
def delete_service_account_federated_credential(
    request: Request,
    workspace_slug: str,
    account_id: str,
    credential_id: str,
    actor: ManagerDep,
) -> Response:
    """Delete one federated credential; it fails at once. Not the account's last live
    credential (409)."""
    accounts.delete_federated(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        account_id=parse_account_id(account_id),
        credential_id=parse_federated_id(credential_id),
        actor=actor,
    )
    return Response(status_code=204)
