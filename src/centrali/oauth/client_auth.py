"""Client authentication at the token endpoint (RFC 6749 §2.3.1): client_secret_basic and
client_secret_post, never both in one request; and ``none`` for public clients (§2.1,
§3.2.1: ``client_id`` in the body, no secret), offered only for the grants that allow it.

Service accounts are unaffected by ``none``: a grant that does not allow it keeps answering
a ``client_id`` without a secret with 401 ``invalid_client``, and a public client id is
never looked up among the service accounts (nor the other way round)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from centrali.oauth.credentials import verify_secret
from centrali.oauth.errors import InvalidClientError, InvalidRequestError
from centrali.oauth.ports import ClientRecord, ClientStore
from centrali.oauth.user_ports import PublicClient, PublicClientStore

BASIC = "client_secret_basic"
POST = "client_secret_post"
NONE = "none"
AUTH_METHODS = (BASIC, POST)
# The token endpoint's: AUTH_METHODS for confidential clients, "none" for public ones.
TOKEN_AUTH_METHODS = (BASIC, POST, NONE)
_MAX_CREDENTIAL_LEN = 512
_LOOKUP_ID = re.compile(rf"[\x21-\x7e]{{1,{_MAX_CREDENTIAL_LEN}}}")


def is_lookup_id(client_id: str) -> bool:
    """Whether ``client_id`` may be looked up at all: printable ASCII, not too long (a NUL or
    a control character never reaches SQL)."""
    return _LOOKUP_ID.fullmatch(client_id) is not None


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    method: str


def extract_client_credentials(
    form: Mapping[str, str], authorization: str | None, *, allow_none: bool = False
) -> ClientCredentials:
    """Find the credentials in the Authorization header or the form, not both.

    ``allow_none``: a body ``client_id`` without any secret is a public client (method
    ``none``, empty secret) instead of ``invalid_client``."""
    basic = _parse_basic(authorization)
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    if basic is not None:
        # §2.3: one method per request; a body client_id may only repeat the Basic one.
        if body_secret is not None or (body_id is not None and body_id != basic[0]):
            raise InvalidRequestError("Client credentials given by more than one method")
        return ClientCredentials(basic[0], basic[1], BASIC)
    if allow_none and body_id is not None and body_secret is None:
        return ClientCredentials(body_id, "", NONE)
    if body_id is None or body_secret is None:
        raise InvalidClientError(detail="no client authentication")
    return ClientCredentials(body_id, body_secret, POST)


def _parse_basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequestError("Malformed HTTP Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidRequestError("Malformed HTTP Basic credentials")
    # §2.3.1: id and secret are form-urlencoded before Basic encoding.
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not client_id or not secret:
        raise InvalidClientError(detail="empty basic credentials", basic=True)
    return client_id, secret


def authenticate_client(creds: ClientCredentials, store: ClientStore) -> ClientRecord:
    """The authenticated client, or InvalidClientError after the same work in every case."""
    basic = creds.method == BASIC
    record = None
    if is_lookup_id(creds.client_id):
        record = store.find_client(creds.client_id)
    secret = creds.client_secret[:_MAX_CREDENTIAL_LEN]
    secret_ok = verify_secret(secret, record.secret_hash if record is not None else None)
    if record is None:
        raise InvalidClientError(detail="unknown client", basic=basic)
    if not secret_ok or len(creds.client_secret) > _MAX_CREDENTIAL_LEN:
        raise InvalidClientError(detail="wrong secret", basic=basic)
    if not record.active:
        raise InvalidClientError(detail="client not active", basic=basic)
    return record


def authenticate_public_client(creds: ClientCredentials, store: PublicClientStore) -> PublicClient:
    """The registered public client named by ``client_id`` (method ``none``), or
    InvalidClientError. No secret to compare: a public client id is not a secret."""
    record = None
    if creds.method == NONE and is_lookup_id(creds.client_id):
        record = store.find_public_client(creds.client_id)
    if record is None:
        raise InvalidClientError(detail="unknown client")
    return record
