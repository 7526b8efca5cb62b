"""The token endpoint (RFC 6749 §3.2, §5): form in, TokenResponse out, checks in order.

parse form → grant_type present and supported → client credentials found →
[abuse limits, by the caller] → authenticate client → grant allowed for the client →
scope allowed → issue.

Service accounts authenticate with their secret and may use client_credentials only (their
``grant_types``). The user grants (authorization_code, refresh_token) are for registered
public clients, which authenticate with ``none``; a confidential client asking for them is
authenticated as usual and then refused (``unauthorized_client``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from centrali.oauth.client_auth import (
    NONE,
    ClientCredentials,
    authenticate_client,
    authenticate_public_client,
    extract_client_credentials,
)
from centrali.oauth.errors import (
    InvalidRequestError,
    TemporarilyUnavailableError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from centrali.oauth.grants import GRANTS, Grant, IssuerConfig, TokenResponse, UserGrant
from centrali.oauth.ports import ClientStore, Clock
from centrali.oauth.user_ports import UserGrantContext

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
    """A request that passed the checks needing no secret: what the limits look at."""

    grant: Grant | UserGrant
    credentials: ClientCredentials
    form: Mapping[str, str]

    @property
    def client_id(self) -> str:
        return self.credentials.client_id

    @property
    def needs_user_store(self) -> bool:
        """A public client's user grant: it reads and writes the store (run it off the loop)."""
        return isinstance(self.grant, UserGrant) and self.credentials.method == NONE


def prepare_token_request(request: TokenRequest) -> PreparedTokenRequest:
    """grant_type present and supported, client credentials present by one method."""
    grant_type = request.form.get("grant_type")
    if grant_type is None:
        raise InvalidRequestError("Missing required parameter: grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError()
    credentials = extract_client_credentials(
        request.form, request.authorization, allow_none=isinstance(grant, UserGrant)
    )
    return PreparedTokenRequest(grant=grant, credentials=credentials, form=request.form)


def complete_token_request(
    prepared: PreparedTokenRequest,
    *,
    clients: ClientStore,
    config: IssuerConfig,
    clock: Clock,
    users: UserGrantContext | None = None,
) -> TokenResponse:
    """Authenticate the client (one lookup, one hash) and run the grant."""
    grant = prepared.grant
    if isinstance(grant, UserGrant):
        if prepared.credentials.method != NONE:
            authenticate_client(prepared.credentials, clients)  # a wrong secret is still 401
            raise UnauthorizedClientError(detail="confidential client asked for a user grant")
        if users is None:
            raise TemporarilyUnavailableError(detail="no user store configured")
        public = authenticate_public_client(prepared.credentials, users.store)
        return grant.handle(public, prepared.form, config, clock, users)
    client = authenticate_client(prepared.credentials, clients)
    return grant.handle(client, prepared.form, config, clock)
