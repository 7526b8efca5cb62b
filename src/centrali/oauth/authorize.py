"""The authorization endpoint's protocol core: request validation (RFC 6749 §3.1, §4.1.1;
OpenID Connect Core 1.0 §3.1.2.1-§3.1.2.2; RFC 7636; RFC 9700 §2.1, §4.1), answers
(RFC 6749 §4.1.2, §4.1.2.1 with ``iss`` per RFC 9207), redirect-URI registration rules
(RFC 8252 §7, RFC 9700 §4.1.3) and the login ticket.

Checks run in this order. Until the client and its redirect URI are known to match, an error
is shown to the user (``AuthorizePageError``) and never sent anywhere: redirecting to an
unchecked URI would make us an open redirector (RFC 6749 §4.1.2.1, RFC 9700 §4.11). A missing
``state`` is also shown, not redirected: we require it (besides PKCE) so that the client can
tie the answer to its own request, and an answer without it could not be told apart.

1. ``client_id`` present, once, and a registered public client → else page
2. ``redirect_uri`` present, once, and exactly one of the client's → else page
3. ``state`` present (at most 1024 characters) → else page
4. from here on errors are redirected with ``error``, ``state`` and ``iss``: no repeated
   parameter, ``response_type=code``, no ``request``/``request_uri``, ``response_mode``
   ``query`` if given, ``scope`` with ``openid`` and only known scopes,
   ``code_challenge`` + ``code_challenge_method=S256``, ``nonce``/``prompt``/``max_age``/
   ``workspace`` well formed.

The login ticket: the validated request under an HMAC (HS256) of the server's ticket key
(``typ: centrali-login+jwt``, 10 minutes), carried by the sign-in form as a hidden field, so
the form cannot be pointed at another client or redirect URI, and bound to the browser by the
digest of its CSRF cookie. The key is random, one per store (``services.ticket_key``), so
every worker and instance of the store reads every ticket; the access-token keys never sign
what an unauthenticated request asks for.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import jwt

from centrali.oauth.pkce import S256, is_valid_challenge
from centrali.oauth.signing import InvalidTokenError, TokenExpiredError
from centrali.oauth.user_ports import PublicClientStore

CODE_TTL = 60  # seconds an authorization code lives (RFC 6749 §4.1.2: short, single use)
TICKET_TTL = 600
LOGIN_TICKET_TYP = "centrali-login+jwt"
TICKET_ALG = "HS256"
TICKET_KEY_BYTES = 32
MAX_TICKET = 16 * 1024  # a ticket holds a request of bounded fields: a few KiB at most
AUTHORIZATION_SCOPES = ("openid", "profile", "email")
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
MAX_STATE = 1024
MAX_NONCE = 512
MAX_REDIRECT_URI = 2048
_WORKSPACE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,128}")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+\-]*(\.[a-z0-9+\-]+)+")


class AuthorizeError(Exception):
    """A refused authorization request: an RFC 6749 §4.1.2.1 ``error`` and a description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class AuthorizePageError(AuthorizeError):
    """Shown to the user as a page, never redirected (the target cannot be trusted)."""


class AuthorizeRedirectError(AuthorizeError):
    """Sent back to the client's (validated) redirect URI."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state

    def url(self, issuer: str) -> str:
        return response_url(
            self.redirect_uri,
            {
                "error": self.error,
                "error_description": self.description,
                "state": self.state,
                "iss": issuer,
            },
        )


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    nonce: str | None = None
    workspace: str | None = None
    prompt: frozenset[str] = field(default_factory=frozenset)
    max_age: int | None = None
    login_hint: str | None = None

    def refuse(self, error: str, description: str) -> AuthorizeRedirectError:
        """An error to redirect back to this request's client."""
        return AuthorizeRedirectError(
            error, description, redirect_uri=self.redirect_uri, state=self.state
        )

    def code_url(self, code: str, issuer: str) -> str:
        """The successful answer (§4.1.2 + RFC 9207 ``iss``)."""
        return response_url(self.redirect_uri, {"code": code, "state": self.state, "iss": issuer})

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.code_challenge,
        }
        optional = {
            "nonce": self.nonce,
            "workspace": self.workspace,
            "prompt": " ".join(sorted(self.prompt)) or None,
            "max_age": self.max_age,
            "login_hint": self.login_hint,
        }
        claims.update({k: v for k, v in optional.items() if v is not None})
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AuthorizationRequest:
        max_age = claims.get("max_age")
        return cls(
            client_id=str(claims["client_id"]),
            redirect_uri=str(claims["redirect_uri"]),
            scope=str(claims["scope"]),
            state=str(claims["state"]),
            code_challenge=str(claims["code_challenge"]),
            nonce=_opt_str(claims.get("nonce")),
            workspace=_opt_str(claims.get("workspace")),
            prompt=frozenset(str(claims.get("prompt", "")).split()),
            max_age=max_age if isinstance(max_age, int) else None,
            login_hint=_opt_str(claims.get("login_hint")),
        )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def response_url(redirect_uri: str, params: Mapping[str, str | None]) -> str:
    """``redirect_uri`` with ``params`` added to its query (an existing query is kept,
    RFC 6749 §3.1.2)."""
    parts = urlsplit(redirect_uri)
    extra = urlencode([(k, v) for k, v in params.items() if v is not None])
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _single_values(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """The first value of each parameter, blank ones omitted (§3.1), and the repeated names."""
    values: dict[str, str] = {}
    seen: set[str] = set()
    repeated: set[str] = set()
    for name, value in pairs:
        if name in seen:
            repeated.add(name)
        seen.add(name)
        if value != "" and name not in values:
            values[name] = value
    return values, repeated


def validate_authorization_request(
    pairs: Iterable[tuple[str, str]], clients: PublicClientStore
) -> AuthorizationRequest:
    """The checks of the module docstring, in order; raises AuthorizeError."""
    params, repeated = _single_values(pairs)
    client_id = params.get("client_id")
    if client_id is None or "client_id" in repeated:
        raise AuthorizePageError("invalid_request", "The request names no client (client_id).")
    client = clients.find_public_client(client_id) if _CLIENT_ID.fullmatch(client_id) else None
    if client is None:
        raise AuthorizePageError("invalid_client", "The application is not registered here.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None or "redirect_uri" in repeated:
        raise AuthorizePageError("invalid_request", "The request names no redirect_uri.")
    if redirect_uri not in client.redirect_uris:
        raise AuthorizePageError(
            "invalid_request", "The redirect_uri is not registered for this application."
        )
    state = params.get("state")
    if state is None or "state" in repeated or len(state) > MAX_STATE:
        raise AuthorizePageError(
            "invalid_request", "The request carries no usable state parameter."
        )

    def refuse(error: str, description: str) -> AuthorizeRedirectError:
        return AuthorizeRedirectError(error, description, redirect_uri=redirect_uri, state=state)

    if repeated:
        raise refuse("invalid_request", f"Parameter repeated: {sorted(repeated)[0]}")
    response_type = params.get("response_type")
    if response_type is None:
        raise refuse("invalid_request", "Missing required parameter: response_type")
    if response_type != "code":
        raise refuse("unsupported_response_type", "Only response_type=code is supported")
    if "request" in params:
        raise refuse("request_not_supported", "Request objects are not supported")
    if "request_uri" in params:
        raise refuse("request_uri_not_supported", "request_uri is not supported")
    if params.get("response_mode", "query") != "query":
        raise refuse("invalid_request", "Only response_mode=query is supported")
    scope = _check_scope(params.get("scope"), refuse)
    challenge = params.get("code_challenge")
    if challenge is None:
        raise refuse("invalid_request", "PKCE is required: code_challenge is missing")
    if params.get("code_challenge_method") != S256:
        raise refuse("invalid_request", "code_challenge_method must be S256")
    if not is_valid_challenge(challenge):
        raise refuse("invalid_request", "code_challenge is malformed")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise refuse("invalid_request", f"nonce is longer than {MAX_NONCE} characters")
    prompt = frozenset(params.get("prompt", "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise refuse("invalid_request", "prompt is not supported")
    workspace = params.get("workspace")
    if workspace is not None and not _WORKSPACE.fullmatch(workspace):
        raise refuse("invalid_request", "workspace is not a workspace slug")
    max_age = _check_max_age(params.get("max_age"), refuse)
    login_hint = params.get("login_hint")
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_challenge=challenge,
        nonce=nonce,
        workspace=workspace,
        prompt=prompt,
        max_age=max_age,
        login_hint=login_hint if login_hint is not None and len(login_hint) <= 320 else None,
    )


def _check_scope(raw: str | None, refuse: Any) -> str:
    wanted = list(dict.fromkeys((raw or "").split()))
    if "openid" not in wanted:
        raise refuse("invalid_scope", "scope must include openid")
    if any(s not in AUTHORIZATION_SCOPES for s in wanted):
        raise refuse("invalid_scope", "scope names an unknown value")
    return " ".join(wanted)


def _check_max_age(raw: str | None, refuse: Any) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise refuse("invalid_request", "max_age must be a number of seconds")
    return int(raw)


def needs_fresh_login(request: AuthorizationRequest, auth_time: float, now: float) -> bool:
    """Whether a signed-in user must still enter the password (``prompt=login``, ``max_age``)."""
    if "login" in request.prompt:
        return True
    return request.max_age is not None and now - auth_time > request.max_age


def choose_workspace(request: AuthorizationRequest, member_of: Sequence[str]) -> str | None:
    """The workspace the tokens will be for, or None when the user must pick one.

    A ``workspace`` parameter names it (the user must be a member); a user of one workspace
    gets that one; a user of several picks on a page (``prompt=select_account`` asks for
    that page even when a workspace was named), unless ``prompt=none`` forbids any page."""
    if not member_of:
        raise request.refuse("access_denied", "You are not a member of any workspace.")
    if request.workspace is not None and "select_account" not in request.prompt:
        if request.workspace not in member_of:
            raise request.refuse(
                "access_denied", f"You are not a member of workspace {request.workspace}."
            )
        return request.workspace
    if len(member_of) == 1:
        return member_of[0]
    if "none" in request.prompt:
        raise request.refuse("interaction_required", "Choose a workspace to continue.")
    return None


# --- redirect URIs at registration ------------------------------------------------------------


def check_redirect_uri(uri: str) -> str:
    """A redirect URI fit to register, or ValueError: absolute, no fragment, no credentials;
    ``https``, ``http`` on a loopback host only (RFC 8252 §7.3), or a private-use scheme
    with a dot (RFC 8252 §7.1)."""
    if len(uri) > MAX_REDIRECT_URI or not uri.isascii() or not uri.isprintable() or " " in uri:
        raise ValueError(f"not a usable redirect URI: {uri!r}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in uri:
        raise ValueError(f"a redirect URI must not have a fragment: {uri!r}")
    if scheme in ("https", "http"):
        if not parts.hostname or "@" in parts.netloc:
            raise ValueError(f"a redirect URI needs a host and no credentials: {uri!r}")
        if scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(f"http is allowed for loopback hosts only: {uri!r}")
        return uri
    if _PRIVATE_SCHEME.fullmatch(scheme) and parts.path:
        return uri
    raise ValueError(
        f"a redirect URI must be https, http on a loopback host, or a private-use scheme: {uri!r}"
    )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the login ticket -------------------------------------------------------------------------


def csrf_digest(csrf_token: str) -> str:
    return hashlib.sha256(csrf_token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_matches(cookie: str | None, form_value: str | None) -> bool:
    """The double-submit check: the form repeats the cookie (constant time)."""
    if not cookie or not form_value:
        return False
    return hmac.compare_digest(cookie.encode(), form_value.encode())


def new_ticket_key() -> bytes:
    """A fresh key for login tickets (HMAC-SHA256: 256 random bits)."""
    return secrets.token_bytes(TICKET_KEY_BYTES)


def sign_login_ticket(
    request: AuthorizationRequest, *, csrf: str, key: bytes, issuer: str, now: float
) -> str:
    """The validated request, bound to the browser's CSRF token by its digest, under an HMAC
    of the server's ticket key: a ticket is only ever read back by this server, so no
    private key (and no RSA signature, on the event loop, for anyone who asks) is used."""
    iat = int(now)
    claims = {
        "iss": issuer,
        "aud": f"{issuer}/oidc/login",
        "iat": iat,
        "exp": iat + TICKET_TTL,
        "csrf": csrf_digest(csrf),
        "req": request.to_claims(),
    }
    return jwt.encode(claims, key, algorithm=TICKET_ALG, headers={"typ": LOGIN_TICKET_TYP})


def read_login_ticket(
    ticket: str, *, csrf: str, key: bytes, issuer: str, now: float
) -> AuthorizationRequest:
    """The request of a ticket we made, for this browser's CSRF token, not yet expired;
    raises InvalidTokenError (TokenExpiredError when only too old)."""
    if not ticket.isascii() or len(ticket) > MAX_TICKET:
        raise InvalidTokenError("malformed ticket")
    try:
        if jwt.get_unverified_header(ticket).get("typ") != LOGIN_TICKET_TYP:
            raise InvalidTokenError("not a login ticket")
        claims = jwt.decode(
            ticket,
            key,
            algorithms=[TICKET_ALG],
            issuer=issuer,
            audience=f"{issuer}/oidc/login",
            # exp is checked against ``now`` below (the caller's clock), not PyJWT's.
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError("invalid ticket") from exc
    digest = claims.get("csrf")
    if not isinstance(digest, str) or not hmac.compare_digest(digest, csrf_digest(csrf)):
        raise InvalidTokenError("ticket of another browser")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise InvalidTokenError("ticket without exp")
    if exp <= now:
        raise TokenExpiredError("ticket expired")
    req = claims.get("req")
    if not isinstance(req, dict):
        raise InvalidTokenError("ticket without a request")
    try:
        return AuthorizationRequest.from_claims(req)
    except KeyError as exc:
        raise InvalidTokenError("incomplete ticket") from exc
