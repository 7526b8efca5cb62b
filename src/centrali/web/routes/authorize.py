"""Human sign-in over HTTP (OpenID Connect Core 1.0 §3.1, RFC 9700): the authorization
endpoint, the sign-in form, the workspace chooser, userinfo and RP-initiated logout.

- ``GET|POST /oidc/authorize``: rate limited per source address (IPv6 by /64; 429 page),
  then validates the request (``centrali.oauth.authorize``); a signed-in browser (session
  cookie) goes straight on, others get the sign-in page with a ticket under the store's HMAC
  ticket key (``services.ticket_key``).
- ``POST /oidc/login``: the sign-in form. Checked in order: the CSRF token (the form's
  ``csrf_token`` equals the ``centrali_csrf`` cookie, and the signed ``ticket`` holding the
  authorization request was made for that cookie) → the login limits (per source address,
  IPv6 by /64, per email and all together, before any password is checked) → the password
  (argon2id, in a password-check thread of a bounded pool, ``services.password_gate``: past
  its bound 503 at once; a wrong password and an unknown email get the same page after the
  same work).
- ``POST /oidc/select-workspace``: the chooser's answer, for a user of several workspaces.
- ``GET|POST /oidc/userinfo``: the claims of a user access token's holder; the token in the
  ``Authorization: Bearer`` header or a POST's form-encoded ``access_token`` (RFC 6750 §2.1,
  §2.2), RFC 6750 §3 errors.
- ``GET|POST /oidc/logout``: the discovery's ``end_session_endpoint``.

Cookies (both ``HttpOnly``, ``SameSite=Lax``, ``Path=/oidc``, ``Secure`` over https):
``centrali_session`` (the sign-in; only its SHA-256 is stored) and ``centrali_csrf``.

Answers after a form post are ``303 See Other`` (RFC 9700 §4.12). These endpoints serve
browsers; they are left out of the OpenAPI document.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from centrali.config import Settings
from centrali.oauth.authorize import (
    AuthorizationRequest,
    AuthorizePageError,
    AuthorizeRedirectError,
    choose_workspace,
    csrf_matches,
    needs_fresh_login,
    read_login_ticket,
    response_url,
    sign_login_ticket,
    validate_authorization_request,
)
from centrali.oauth.errors import InvalidRequestError
from centrali.oauth.id_token import IdTokenHint, read_id_token_hint
from centrali.oauth.limits import (
    MAX_RETRY_AFTER,
    Bucket,
    BucketStore,
    MemoryBucketStore,
    address_key,
)
from centrali.oauth.opaque_tokens import new_opaque_token, plausible_token
from centrali.oauth.token_endpoint import FORM_CONTENT_TYPE, parse_form
from centrali.oauth.tokens import TokenError
from centrali.services import auth, oidc, passwords
from centrali.services.errors import UnauthorizedError, bearer_challenge
from centrali.services.password_gate import PasswordGate, PasswordGateFull
from centrali.services.users import check_password
from centrali.web import sign_in_pages as pages
from centrali.web.runtime import Runtime, get_runtime

router = APIRouter(tags=["oidc"], include_in_schema=False)
# Userinfo is a JSON API (not a sign-in page): in the OpenAPI document.
userinfo_router = APIRouter(tags=["oidc"])

SESSION_COOKIE = "centrali_session"
CSRF_COOKIE = "centrali_csrf"
COOKIE_PATH = "/oidc"
_MAX_FORM_PASSWORD = 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_FORM_EXPIRED = (
    "This sign-in form has expired or was not sent by this site. "
    "Go back to the application and sign in again."
)


# --- helpers ---------------------------------------------------------------------------------


def _redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers=_NO_STORE)


def _secure(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or settings.issuer.startswith("https://")


def _set_cookie(
    response: Response, request: Request, settings: Settings, name: str, value: str
) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
    )


def _clear_cookie(response: Response, request: Request, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
    )


def _csrf_of(request: Request) -> tuple[str, bool]:
    """This browser's CSRF token, and whether it is new (to be set as a cookie). Reused while
    the cookie lasts, so two open sign-in tabs both work."""
    current = request.cookies.get(CSRF_COOKIE)
    if plausible_token(current) and current is not None:
        return current, False
    return new_opaque_token(), True


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _ticket_key(request: Request) -> bytes:
    """The store's login-ticket key, loaded at start (``services.ticket_key``)."""
    key: bytes = request.app.state.ticket_key
    return key


async def _form(request: Request) -> dict[str, str] | None:
    """The form body (form-encoded, no repeated parameter), or None when it is not one."""
    try:
        return parse_form(request.headers.get("content-type"), await request.body())
    except InvalidRequestError:
        return None


def _ticket_request(
    runtime: Runtime, request: Request, form: Mapping[str, str]
) -> AuthorizationRequest | None:
    """The authorization request of a posted form, if its CSRF token and ticket hold."""
    cookie = request.cookies.get(CSRF_COOKIE)
    ticket = form.get("ticket")
    if not csrf_matches(cookie, form.get("csrf_token")) or cookie is None or ticket is None:
        return None
    try:
        return read_login_ticket(
            ticket,
            csrf=cookie,
            key=_ticket_key(request),
            issuer=runtime.settings.issuer,
            now=time.time(),
        )
    except TokenError:
        return None


# --- the authorization endpoint --------------------------------------------------------------


@router.get("/oidc/authorize")
async def authorize(request: Request) -> Response:
    """OpenID Connect authorization endpoint (response_type=code, PKCE S256)."""
    return await _authorize(request, request.query_params.multi_items())


@router.post("/oidc/authorize")
async def authorize_post(request: Request) -> Response:
    """The same, with the parameters form-encoded (OpenID Connect Core §3.1.2.1)."""
    body = await request.body()
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    try:
        if media_type != "application/x-www-form-urlencoded":
            raise ValueError("not a form")
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        return pages.error_page("Sign-in request refused", "The request is malformed.")
    return await _authorize(request, pairs)


async def _authorize(request: Request, pairs: Sequence[tuple[str, str]]) -> Response:
    runtime = get_runtime(request)
    issuer = runtime.settings.issuer
    refusal = await _authorize_limit(request, runtime)
    if refusal is not None:
        return refusal
    store = oidc.OidcStore(runtime.db, issuer)
    try:
        auth = await run_in_threadpool(validate_authorization_request, pairs, store)
    except AuthorizePageError as exc:
        return pages.error_page("Sign-in request refused", exc.description)
    except AuthorizeRedirectError as exc:
        return _redirect(exc.url(issuer))
    now = time.time()
    sign_in = await run_in_threadpool(
        oidc.find_sign_in, runtime.db, cookie=request.cookies.get(SESSION_COOKIE), now=now
    )
    if sign_in is not None and not needs_fresh_login(auth, sign_in.auth_time, now):
        return await _continue(request, runtime, auth, sign_in)
    if "none" in auth.prompt:
        return _redirect(auth.refuse("login_required", "Sign-in required.").url(issuer))
    return await _login_form(request, runtime, auth, email=auth.login_hint or "")


async def _authorize_limit(request: Request, runtime: Runtime) -> Response | None:
    """Authorization requests per source address (an IPv6 address by its /64) per minute,
    each one taken whatever its outcome: the endpoint answers anyone, without credentials,
    with a store lookup and a new ticket. None: go on."""
    limit = runtime.settings.authorize_per_ip
    if not limit:
        return None
    bucket = Bucket(f"a:ip:{address_key(_client_ip(request))}", limit)
    wait = await _bucket_store(request, runtime).take([bucket], time.time())
    if wait <= 0:
        return None
    seconds = max(1, min(MAX_RETRY_AFTER, math.ceil(wait)))
    page = pages.error_page(
        "Too many sign-in requests",
        f"Too many sign-in requests from your network. Try again in {seconds} seconds.",
        status=429,
    )
    page.headers["Retry-After"] = str(seconds)
    return page


async def _login_form(
    request: Request,
    runtime: Runtime,
    auth: AuthorizationRequest,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if passwords.dummy_hash.cache_info().currsize == 0:
        # Made before the first password is posted: an unknown email must not cost more.
        await run_in_threadpool(passwords.dummy_hash)
    csrf, new = _csrf_of(request)
    ticket = sign_login_ticket(
        auth, csrf=csrf, key=_ticket_key(request), issuer=runtime.settings.issuer, now=time.time()
    )
    client = await run_in_threadpool(
        oidc.OidcStore(runtime.db, runtime.settings.issuer).find_public_client, auth.client_id
    )
    response = pages.login_page(
        ticket=ticket,
        csrf=csrf,
        client_name=client.name if client is not None else auth.client_id,
        redirect_uri=auth.redirect_uri,
        email=email,
        error=error,
        status=status,
        headers=headers,
    )
    if new:
        _set_cookie(response, request, runtime.settings, CSRF_COOKIE, csrf)
    return response


async def _continue(
    request: Request,
    runtime: Runtime,
    auth: AuthorizationRequest,
    sign_in: oidc.SignIn,
    *,
    error: str | None = None,
) -> Response:
    """A signed-in user: pick the workspace (or ask), then answer with a code."""
    choices = await run_in_threadpool(oidc.workspaces_of, runtime.db, user_id=sign_in.user_id)
    try:
        workspace = choose_workspace(auth, [c.slug for c in choices])
    except AuthorizeRedirectError as exc:
        return _redirect(exc.url(runtime.settings.issuer))
    if workspace is not None:
        return await _answer_with_code(runtime, auth, sign_in, workspace)
    csrf, new = _csrf_of(request)
    ticket = sign_login_ticket(
        auth, csrf=csrf, key=_ticket_key(request), issuer=runtime.settings.issuer, now=time.time()
    )
    response = pages.chooser_page(
        ticket=ticket,
        csrf=csrf,
        email=sign_in.email,
        choices=[(c.slug, c.name) for c in choices],
        redirect_uri=auth.redirect_uri,
        error=error,
        status=400 if error else 200,
    )
    if new:
        _set_cookie(response, request, runtime.settings, CSRF_COOKIE, csrf)
    return response


async def _answer_with_code(
    runtime: Runtime, auth: AuthorizationRequest, sign_in: oidc.SignIn, workspace: str
) -> Response:
    code = await run_in_threadpool(
        oidc.issue_code,
        runtime.db,
        request=auth,
        sign_in=sign_in,
        workspace=workspace,
        refresh_ttl=runtime.settings.refresh_token_ttl,
        now=time.time(),
    )
    issuer = runtime.settings.issuer
    if code is None:
        refusal = auth.refuse("access_denied", f"You are not a member of workspace {workspace}.")
        return _redirect(refusal.url(issuer))
    return _redirect(auth.code_url(code, issuer))


# --- the sign-in form ------------------------------------------------------------------------


def _login_buckets(settings: Settings, ip: str, email: str) -> list[Bucket]:
    """Failed sign-ins per source address (an IPv6 address by its /64: ``address_key``),
    per email (its digest: no address is kept in the limiter) and all of them together,
    refilled per minute like the token endpoint's (``oauth.limits``)."""
    account = hashlib.sha256(email.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]
    buckets = []
    if settings.login_failures_per_ip:
        buckets.append(Bucket(f"l:ip:{address_key(ip)}", settings.login_failures_per_ip))
    if settings.login_failures_per_account:
        buckets.append(Bucket(f"l:acct:{account}", settings.login_failures_per_account))
    if settings.login_failures_global:
        buckets.append(Bucket("l:all", settings.login_failures_global))
    return buckets


def _bucket_store(request: Request, runtime: Runtime) -> BucketStore:
    """The token endpoint's bucket store (Redis when configured, so the limits are shared
    between instances), or one in this process when the token limits are off."""
    state = request.app.state
    store: BucketStore | None = getattr(state, "login_buckets", None)
    if store is None:
        store = runtime.limiter.store if runtime.limiter is not None else MemoryBucketStore()
        state.login_buckets = store
    return store


@router.post("/oidc/login")
async def login(request: Request) -> Response:
    """The sign-in form's answer."""
    runtime = get_runtime(request)
    form = await _form(request)
    auth = None if form is None else _ticket_request(runtime, request, form)
    if form is None or auth is None:
        return pages.error_page("Sign-in form refused", _FORM_EXPIRED, status=403)
    email = form.get("email", "")[:320]
    password = form.get("password", "")
    settings = runtime.settings
    if not email or not password:
        return await _login_form(
            request, runtime, auth, email=email, error="Enter your email and password."
        )
    # A token from each budget is taken before the password is checked (so concurrent
    # guesses cannot all slip past one check) and given back if the password was right.
    buckets = _login_buckets(settings, _client_ip(request), email)
    limits = _bucket_store(request, runtime)
    if buckets:
        wait = await limits.take(buckets, time.time())
        if wait > 0:
            seconds = max(1, min(MAX_RETRY_AFTER, math.ceil(wait)))
            return await _login_form(
                request,
                runtime,
                auth,
                email=email,
                error=f"Too many sign-in attempts. Try again in {seconds} seconds.",
                status=429,
                headers={"Retry-After": str(seconds)},
            )
    gate: PasswordGate = request.app.state.password_gate
    try:
        user = await gate.run(
            check_password, runtime.db, email=email, password=password[: _MAX_FORM_PASSWORD + 1]
        )
    except PasswordGateFull:
        if buckets:  # no password was checked: nothing spent
            await limits.give_back(buckets, time.time())
        return await _login_form(
            request,
            runtime,
            auth,
            email=email,
            error="The server is busy. Try again in a moment.",
            status=503,
            headers={"Retry-After": "1"},
        )
    if user is None:
        return await _login_form(
            request, runtime, auth, email=email, error="Incorrect email or password."
        )
    if buckets:
        await limits.give_back(buckets, time.time())
    now = time.time()
    cookie, sign_in = await run_in_threadpool(
        oidc.start_sign_in,
        runtime.db,
        user_id=user.id,
        ttl=settings.session_ttl,
        now=now,
        refresh_ttl=settings.refresh_token_ttl,
    )
    response = await _continue(request, runtime, auth, sign_in)
    _set_cookie(response, request, settings, SESSION_COOKIE, cookie)
    return response


@router.post("/oidc/select-workspace")
async def select_workspace(request: Request) -> Response:
    """The workspace chooser's answer."""
    runtime = get_runtime(request)
    form = await _form(request)
    auth = None if form is None else _ticket_request(runtime, request, form)
    if form is None or auth is None:
        return pages.error_page("Sign-in form refused", _FORM_EXPIRED, status=403)
    sign_in = await run_in_threadpool(
        oidc.find_sign_in, runtime.db, cookie=request.cookies.get(SESSION_COOKIE), now=time.time()
    )
    if sign_in is None:
        return await _login_form(request, runtime, auth, error="Sign in to continue.")
    workspace = form.get("workspace")
    choices = await run_in_threadpool(oidc.workspaces_of, runtime.db, user_id=sign_in.user_id)
    if workspace not in {c.slug for c in choices}:
        return await _continue(request, runtime, auth, sign_in, error="Choose a workspace.")
    assert workspace is not None
    return await _answer_with_code(runtime, auth, sign_in, workspace)


# --- userinfo ----------------------------------------------------------------------------------


def _bearer_error(status: int, error: str | None, description: str) -> JSONResponse:
    """RFC 6750 §3: a challenge naming the error (none when no token was sent at all, §3.1);
    the body says why in every case."""
    body = {"error": error or "unauthorized", "error_description": description}
    challenge = bearer_challenge(error, description)
    return JSONResponse(body, status, headers={**_NO_STORE, "WWW-Authenticate": challenge})


async def _userinfo_token(request: Request) -> str | JSONResponse:
    """The access token of a userinfo request: the ``Authorization: Bearer`` header
    (RFC 6750 §2.1) or, on a POST, the form body's ``access_token`` (§2.2: a single-part
    ``application/x-www-form-urlencoded`` body). One of the two, never both (§2: 400
    ``invalid_request``); never the URI query (§2.3, refused with a 400 saying so).
    Raises UnauthorizedError when there is none or the header is malformed."""
    if "access_token" in request.query_params:
        return _bearer_error(
            400,
            "invalid_request",
            "access_token in the URI query is not accepted; "
            "send it in the Authorization header (Bearer)",
        )
    form_token = None
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if request.method == "POST" and media_type == FORM_CONTENT_TYPE:
        try:
            form_token = parse_form(media_type, await request.body()).get("access_token")
        except InvalidRequestError as exc:
            return _bearer_error(400, "invalid_request", exc.description or "malformed form body")
    header = request.headers.get("authorization")
    if form_token is not None:
        if header is not None:
            return _bearer_error(
                400,
                "invalid_request",
                "the access token was sent both in the Authorization header and in the body",
            )
        return form_token
    return auth.bearer_token(header)


def _bearer_refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "WWW-Authenticate": {
                "description": "Bearer challenge (RFC 6750 §3)",
                "schema": {"type": "string"},
            }
        },
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}},
    }


_USERINFO_DOC: dict[str, Any] = {
    "summary": "Userinfo",
    "description": (
        "OpenID Connect Core §5.3: the claims of a user access token's holder (scope "
        "openid). The token in the Authorization header (Bearer), or on a POST in an "
        "application/x-www-form-urlencoded body's access_token (RFC 6750 §2.2); never in "
        "the query."
    ),
    "response_class": JSONResponse,
    "responses": {
        200: {
            "description": "The holder's claims",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["sub", "email", "workspace"],
                        "properties": {
                            "sub": {"type": "string"},
                            "email": {"type": "string"},
                            "workspace": {"type": "string"},
                        },
                    }
                }
            },
        },
        400: _bearer_refusal(
            "invalid_request: the token in the query, sent twice, or a malformed form body"
        ),
        401: _bearer_refusal(
            "invalid_token: invalid, expired or revoked, or a service account's token; "
            "unauthorized when no token was sent (the challenge then names no error)"
        ),
        403: _bearer_refusal("insufficient_scope: the token lacks scope openid"),
    },
}


_USERINFO_FORM: dict[str, Any] = {
    "required": False,
    "content": {
        FORM_CONTENT_TYPE: {
            "schema": {"type": "object", "properties": {"access_token": {"type": "string"}}}
        }
    },
}


@userinfo_router.get("/oidc/userinfo", operation_id="userinfo", **_USERINFO_DOC)
@userinfo_router.post(
    "/oidc/userinfo",
    operation_id="userinfo_post",
    openapi_extra={"requestBody": _USERINFO_FORM},
    **_USERINFO_DOC,
)
async def userinfo(request: Request) -> Response:
    """OpenID Connect Core §5.3: ``sub``, ``email``, ``workspace`` of a user access token."""
    runtime = get_runtime(request)
    try:
        token = await _userinfo_token(request)
        if isinstance(token, JSONResponse):
            return token
        verified = auth.verify(token, runtime.policy, time.time())
    except UnauthorizedError as exc:
        reason = exc.reason or "invalid token"
        return _bearer_error(401, "invalid_token" if exc.token_sent else None, reason)
    if verified.is_service_account:
        return _bearer_error(401, "invalid_token", "not a user's access token")
    if "openid" not in verified.scope.split():
        return _bearer_error(403, "insufficient_scope", "the access token lacks scope openid")
    info = await run_in_threadpool(oidc.user_info, runtime.db, verified)
    if info is None:
        return _bearer_error(
            401, "invalid_token", "Token revoked (or its user is no longer a member)"
        )
    return JSONResponse(info, headers=_NO_STORE)


# --- logout ------------------------------------------------------------------------------------


@router.api_route("/oidc/logout", methods=["GET", "POST"])
async def logout(request: Request) -> Response:
    """RP-Initiated Logout 1.0: ends the sign-in, and revokes the refresh tokens it started.

    With a valid ``id_token_hint`` it happens at once; without one a browser that is signed
    in is asked to confirm (a form with a CSRF token), so a foreign page cannot sign the
    user out. ``post_logout_redirect_uri`` must be registered exactly for the client (the
    hint's audience or ``client_id``); without it the answer is a "signed out" page.
    """
    runtime = get_runtime(request)
    settings = runtime.settings
    if request.method == "POST":
        posted = await _form(request)
        if posted is None:
            return pages.error_page("Sign-out refused", "The request is malformed.")
        params: Mapping[str, str] = posted
    else:
        params = {k: v for k, v in request.query_params.items() if v}
    hint: IdTokenHint | None = None
    if "id_token_hint" in params:
        try:
            hint = read_id_token_hint(
                params["id_token_hint"], runtime.keys.public_keys, issuer=settings.issuer
            )
        except TokenError:
            return pages.error_page("Sign-out refused", "The id_token_hint is not valid.")
    client_id = params.get("client_id")
    if hint is not None and client_id is not None and client_id != hint.client_id:
        return pages.error_page("Sign-out refused", "The client_id does not match the hint.")
    client_id = client_id or (hint.client_id if hint is not None else None)
    after = params.get("post_logout_redirect_uri")
    target = None
    if after is not None:
        store = oidc.OidcStore(runtime.db, settings.issuer)
        client = (
            None
            if client_id is None
            else await run_in_threadpool(store.find_public_client, client_id)
        )
        if client is None or after not in client.post_logout_redirect_uris:
            return pages.error_page(
                "Sign-out refused", "The post_logout_redirect_uri is not registered."
            )
        target = response_url(after, {"state": params.get("state")})
    cookie = request.cookies.get(SESSION_COOKIE)
    confirmed = hint is not None or (
        request.method == "POST"
        and csrf_matches(request.cookies.get(CSRF_COOKIE), params.get("csrf_token"))
    )
    if not confirmed:
        now = time.time()
        signed_in = await run_in_threadpool(oidc.find_sign_in, runtime.db, cookie=cookie, now=now)
        if signed_in is not None:
            csrf, new = _csrf_of(request)
            fields = {
                "client_id": client_id,
                "post_logout_redirect_uri": after,
                "state": params.get("state"),
            }
            page = pages.logout_confirm_page(csrf=csrf, fields=fields, redirect_to=target)
            if new:
                _set_cookie(page, request, settings, CSRF_COOKIE, csrf)
            return page
    cookie_done = await run_in_threadpool(
        oidc.end_sign_ins,
        runtime.db,
        cookie=cookie,
        sid=hint.sid if hint is not None else None,
        subject=hint.subject if hint is not None else None,
        now=time.time(),
    )
    response = _redirect(target) if target is not None else pages.signed_out_page()
    if cookie_done:  # another user's hint does not sign this browser out
        _clear_cookie(response, request, settings, SESSION_COOKIE)
    return response
