"""The token endpoint (RFC 6749 §3.2, §5): form in, TokenResponse out, checks in order.

parse form → grant_type present and supported → authenticate the client (``client_auth``:
credentials, abuse limits, lookup, verification) → grant allowed for the client → scope
allowed → issue.

Service accounts authenticate with one of their secrets and may use client_credentials only
(their ``grant_types``). The user grants (authorization_code, refresh_token) are for
registered public clients, which authenticate with ``none``; a confidential client asking
for them is authenticated as usual and then refused (``unauthorized_client``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from centrali.oauth.client_auth import NONE, Authenticated
from centrali.oauth.errors import (
    InvalidRequestError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from centrali.oauth.grants import GRANTS, Grant, IssuerConfig, TokenResponse, UserGrant
from centrali.oauth.ports import Clock
from centrali.oauth.user_ports import PublicClient, UserGrantContext

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_MAX_PARAMS = 32


@dataclass(frozen=True, slots=True)
class TokenRequest:
    form: Mapping[str, str]
    authorization: str | None = None


def parse_form(content_type: str | None, body: bytes) -> dict[str, str]:
    """Decode a token-endpoint body: form-encoded UTF-8, no repeated parameters (§3.2).

    Parameters sent without a value are treated as omitted (§3.1).
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE:
        raise InvalidRequestError(f"Content-Type must be {FORM_CONTENT_TYPE}")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=_MAX_PARAMS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError("Malformed form body") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequestError(f"Parameter repeated: {name}")
        form[name] = value
    return {name: value for name, value in form.items() if value != ""}


@dataclass(frozen=True, slots=True)
class PreparedTokenRequest:
    """A request whose grant is known: what the client authentication runs for."""

    grant: Grant | UserGrant
    form: Mapping[str, str]

    @property
    def allows_public_client(self) -> bool:
        """Whether a public client may name itself (``none``): the user grants only."""
        return isinstance(self.grant, UserGrant)


def prepare_token_request(request: TokenRequest) -> PreparedTokenRequest:
    """grant_type present and supported."""
    grant_type = request.form.get("grant_type")
    if grant_type is None:
        raise InvalidRequestError("Missing required parameter: grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError()
    return PreparedTokenRequest(grant=grant, form=request.form)


def needs_user_store(authenticated: Authenticated) -> bool:
    """A public client's user grant: it reads and writes the store (run it off the loop)."""
    return authenticated.method == NONE


def complete_token_request(
    prepared: PreparedTokenRequest,
    authenticated: Authenticated,
    *,
    config: IssuerConfig,
    clock: Clock,
) -> TokenResponse:
    """Run a confidential client's grant (no I/O: one signature)."""
    grant = prepared.grant
    if isinstance(grant, UserGrant):
        raise UnauthorizedClientError(detail="confidential client asked for a user grant")
    return grant.handle(authenticated.confidential, prepared.form, config, clock)


def complete_user_grant_request(
    prepared: PreparedTokenRequest,
    client: PublicClient,
    *,
    config: IssuerConfig,
    clock: Clock,
    users: UserGrantContext,
) -> TokenResponse:
    """Run a public client's user grant (reads and writes the store)."""
    grant = prepared.grant
    if not isinstance(grant, UserGrant):  # not reached: `none` is offered to user grants only
        raise UnauthorizedClientError(detail="public client asked for a client grant")
    return grant.handle(client, prepared.form, config, clock, users)
