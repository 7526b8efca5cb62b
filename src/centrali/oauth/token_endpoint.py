"""The token endpoint (RFC 6749 §3.2, §5): form in, TokenResponse out, checks in order.

parse form → grant_type present and supported → authenticate client →
grant allowed for the client → scope allowed → issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from centrali.oauth.client_auth import authenticate_client, extract_client_credentials
from centrali.oauth.errors import InvalidRequestError, UnsupportedGrantTypeError
from centrali.oauth.grants import GRANTS, IssuerConfig, TokenResponse
from centrali.oauth.ports import ClientStore, Clock

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


def handle_token_request(
    request: TokenRequest, *, clients: ClientStore, config: IssuerConfig, clock: Clock
) -> TokenResponse:
    """Run the checks in order; raise an OAuthError or return the token."""
    grant_type = request.form.get("grant_type")
    if grant_type is None:
        raise InvalidRequestError("Missing required parameter: grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError()
    credentials = extract_client_credentials(request.form, request.authorization)
    client = authenticate_client(credentials, clients)
    return grant.handle(client, request.form, config, clock)
