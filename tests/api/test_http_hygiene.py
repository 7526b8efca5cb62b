"""HTTP hygiene of every answer: security headers, the request id, CORS (off unless
configured), and slow or oversized request bodies (contract "Operations and security")."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import CentraliApp, create_app
from tests.factories import Factory, bearer

ISSUER = "http://testserver"
WS = "acme-corp"
API = f"/workspace/{WS}/api/v1"
FORM = "application/x-www-form-urlencoded"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
GENERATED_ID = re.compile(r"[0-9a-f]{16}")
APP_ORIGIN = "https://app.example"


def app_settings(settings: Settings, **overrides: Any) -> Settings:
    return Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        issuer=settings.issuer,
        **overrides,
    )


@dataclass
class World:
    client: TestClient
    account: dict[str, Any]
    admin: str
    sa_token: str
    max_body: int

    def token(self, secret: str | None = None) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.account["clientId"],
            "client_secret": secret or self.account["clientSecret"],
        }
        return self.client.post("/oidc/token", data=form)


@pytest.fixture
def world(factory: Factory, settings: Settings) -> World:
    factory.workspace()
    admin = factory.admin()
    account = factory.service_account(admin, name="Hygienic Client")
    return World(factory.client, account, admin, factory.sa_token(account), settings.max_body_bytes)


def assert_security_headers(r: httpx.Response) -> None:
    for name, expected in SECURITY_HEADERS.items():
        assert r.headers.get(name) == expected, (name, dict(r.headers))
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, csp
    assert GENERATED_ID.fullmatch(r.headers.get("x-request-id", "")), dict(r.headers)


CASES: list[tuple[str, int, Callable[[World], httpx.Response]]] = [
    ("token-200", 200, lambda w: w.token()),
    ("token-401", 401, lambda w: w.token("sk_wrong")),
    (
        "token-413",
        413,
        lambda w: w.client.post(
            "/oidc/token", content=b"a" * (w.max_body + 1), headers={"Content-Type": FORM}
        ),
    ),
    ("token-405", 405, lambda w: w.client.get("/oidc/token")),
    (
        "api-200",
        200,
        lambda w: w.client.get(f"{API}/service-accounts", headers=bearer(w.admin)),
    ),
    ("api-401", 401, lambda w: w.client.get(f"{API}/structures")),
    (
        "api-404",
        404,
        lambda w: w.client.get(f"{API}/structures/missing", headers=bearer(w.sa_token)),
    ),
    (
        "api-413",
        413,
        lambda w: w.client.post(
            f"{API}/records",
            content=b"{" + b" " * (w.max_body + 1) + b"}",
            headers={**bearer(w.sa_token), "Content-Type": "application/json"},
        ),
    ),
    ("discovery", 200, lambda w: w.client.get("/.well-known/openid-configuration")),
    ("jwks", 200, lambda w: w.client.get("/oidc/jwks")),
    ("metrics", 200, lambda w: w.client.get("/metrics")),
    ("healthz", 200, lambda w: w.client.get("/healthz")),
    ("unknown-path", 404, lambda w: w.client.get("/no/such/thing")),
]


@pytest.mark.parametrize(("status", "call"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_security_headers_on_every_answer(
    world: World, status: int, call: Callable[[World], httpx.Response]
) -> None:
    r = call(world)
    assert r.status_code == status, r.text
    assert_security_headers(r)
    assert "strict-transport-security" not in r.headers  # plain HTTP: HSTS means nothing


def test_hsts_over_https_only(settings: Settings, db: Database) -> None:
    with TestClient(create_app(settings, db=db), base_url="https://testserver") as https:
        r = https.get("/healthz")
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert int(r.headers["strict-transport-security"].split("=")[1].split(";")[0]) > 0
        r = https.post("/oidc/token", data={"grant_type": "client_credentials"})
        assert r.status_code == 401
        assert "strict-transport-security" in r.headers


# --- request id ------------------------------------------------------------------------------


def test_request_id_generated_when_absent(world: World) -> None:
    ids = [world.client.get("/healthz").headers["x-request-id"] for _ in range(3)]
    ids.append(world.token().headers["x-request-id"])
    assert all(GENERATED_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        ("req-42", True),
        ("Ab9._:-z", True),
        ("0123456789abcdef0123456789abcdef", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("x" * 200, False),
        ("has space", False),
        ("semi;colon", False),
        ("<script>", False),
        ('quote"s', False),
    ],
    ids=[
        "simple",
        "punctuation",
        "uuid-hex",
        "64-chars",
        "65-chars",
        "200-chars",
        "space",
        "semicolon",
        "markup",
        "quote",
    ],
)
def test_request_id_echoed_only_when_sane(client: TestClient, given: str, echoed: bool) -> None:
    headers = {"X-Request-Id": given}
    answers = {
        "api": client.get("/healthz", headers=headers),
        "token": client.post(
            "/oidc/token", data={"grant_type": "client_credentials"}, headers=headers
        ),
    }
    for where, r in answers.items():
        rid = r.headers["x-request-id"]
        if echoed:
            assert rid == given, where
        else:
            assert GENERATED_ID.fullmatch(rid), (where, rid)


# --- CORS ------------------------------------------------------------------------------------


def preflight(client: TestClient, path: str, origin: str) -> httpx.Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def test_cors_off_by_default(world: World) -> None:
    client = world.client
    for path in ("/oidc/token", f"{API}/records", "/.well-known/openid-configuration"):
        r = preflight(client, path, APP_ORIGIN)
        assert r.status_code != 200 or not cors_headers(r), r.text
        assert cors_headers(r) == {}, path
    r = client.get("/.well-known/openid-configuration", headers={"Origin": APP_ORIGIN})
    assert r.status_code == 200 and cors_headers(r) == {}
    form = {
        "grant_type": "client_credentials",
        "client_id": world.account["clientId"],
        "client_secret": world.account["clientSecret"],
    }
    r = client.post("/oidc/token", data=form, headers={"Origin": APP_ORIGIN})
    assert r.status_code == 200 and cors_headers(r) == {}


@pytest.fixture
def cors_client(settings: Settings, db: Database) -> Iterator[TestClient]:
    config = app_settings(settings, cors_origins=f"{APP_ORIGIN}, https://other-app.example")
    with TestClient(create_app(config, db=db), base_url=ISSUER) as client:
        yield client


@pytest.mark.parametrize("path", ["/oidc/token", f"{API}/records"])
@pytest.mark.parametrize("origin", [APP_ORIGIN, "https://other-app.example"])
def test_cors_preflight_for_a_configured_origin(
    cors_client: TestClient, path: str, origin: str
) -> None:
    r = preflight(cors_client, path, origin)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == origin
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert "POST" in methods
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert r.headers.get("access-control-allow-credentials") != "true"


def test_cors_answers_for_a_configured_origin_expose_the_request_id(
    cors_client: TestClient,
) -> None:
    r = cors_client.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers={"Origin": APP_ORIGIN}
    )
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert "x-request-id" in exposed
    assert "retry-after" in exposed
    assert_security_headers(r)
    r = cors_client.get("/oidc/jwks", headers={"Origin": APP_ORIGIN})
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://app.example", "https://app.example.evil.example", "null"],
)
def test_cors_nothing_for_another_origin(cors_client: TestClient, origin: str) -> None:
    r = preflight(cors_client, "/oidc/token", origin)
    assert r.status_code != 200
    assert "access-control-allow-origin" not in r.headers
    r = cors_client.get("/oidc/jwks", headers={"Origin": origin})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


# --- slow and oversized bodies ---------------------------------------------------------------


def http_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("192.0.2.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


def stalling_receive(*chunks: bytes) -> Receive:
    """Delivers ``chunks`` (more to come after each), then never anything again."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


def call_app(app: CentraliApp, scope: dict[str, Any], receive: Receive, limit: float) -> Answer:
    """Call the ASGI app directly; fail the test if it has not answered after ``limit`` s."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def run(call: Awaitable[None]) -> None:
        await asyncio.wait_for(call, limit)

    started = time.monotonic()
    try:
        asyncio.run(run(app(scope, receive, send)))
    except TimeoutError:
        pytest.fail(f"no answer after {limit} s; sent so far: {sent}")
    elapsed = time.monotonic() - started
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return Answer(start["status"], headers, json.loads(body), elapsed)


@pytest.fixture
def slow_app(settings: Settings, db: Database) -> CentraliApp:
    return create_app(app_settings(settings, body_timeout=0.2), db=db)


TOKEN_HEADERS = [(b"content-type", FORM.encode()), (b"content-length", b"120")]


@pytest.mark.parametrize(
    "chunks", [(), (b"grant_type=client_credentials&client_id=",)], ids=["nothing", "half"]
)
def test_token_body_too_slow_gets_408(slow_app: CentraliApp, chunks: tuple[bytes, ...]) -> None:
    answer = call_app(
        slow_app, http_scope("/oidc/token", TOKEN_HEADERS), stalling_receive(*chunks), 5
    )
    assert answer.status == 408
    assert answer.body["error"] == "invalid_request"
    assert answer.body["error_description"]
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert 0.15 <= answer.seconds < 2.0, answer.seconds


@pytest.mark.parametrize(
    ("path", "content_type", "refusal"),
    [
        (
            f"{API}/records",
            b"application/json",
            {"error": "request_timeout", "message": "Request body too slow"},
        ),
        (
            "/oidc/authorize",
            FORM.encode(),
            {"error": "invalid_request", "error_description": "Request body too slow"},
        ),
    ],
    ids=["api", "oidc"],
)
def test_api_body_too_slow_gets_408_too(
    slow_app: CentraliApp, path: str, content_type: bytes, refusal: dict[str, str]
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"120")]
    answer = call_app(slow_app, http_scope(path, headers), stalling_receive(), 1.5)
    assert answer.status == 408
    assert answer.body == refusal
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.seconds >= 0.15, answer.seconds  # the timeout, not an early refusal


def test_chunked_token_body_over_the_limit_gets_413(world: World) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"grant_type=client_credentials&scope="
        for _ in range(world.max_body // 1024 + 1):
            yield b"a" * 1024

    r = world.client.post("/oidc/token", content=chunks(), headers={"Content-Type": FORM})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.headers["cache-control"] == "no-store"
    assert_security_headers(r)


def test_token_body_over_the_limit_is_refused_before_it_ends(
    settings: Settings, db: Database
) -> None:
    """Without Content-Length the 413 comes as soon as the limit is passed, not after a
    body that might never end."""
    app = create_app(app_settings(settings, body_timeout=30), db=db)
    headers = [(b"content-type", FORM.encode()), (b"transfer-encoding", b"chunked")]
    big = b"a" * (40 * 1024)
    answer = call_app(app, http_scope("/oidc/token", headers), stalling_receive(big, big), 5)
    assert answer.status == 413
    assert answer.body["error"] == "invalid_request"
    assert answer.seconds < 5  # long before the body timeout


def test_chunked_api_body_over_the_limit_gets_413(world: World) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"recordSlug": "products", "data": {"name": "'
        for _ in range(world.max_body // 1024 + 1):
            yield b"a" * 1024
        yield b'"}}'

    r = world.client.post(
        f"{API}/records",
        content=chunks(),
        headers={**bearer(world.sa_token), "Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert r.json() == {"error": "payload_too_large", "message": "Request body too large"}
    assert_security_headers(r)
