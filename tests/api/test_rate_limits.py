"""Abuse limits on ``POST /oidc/token`` over HTTP (contract "Operations and security"):
failed authentications per source address and per address and client_id, tokens issued per
client; 429 ``slow_down`` with ``Retry-After`` (at most 60 s) before any secret is checked;
``0`` turns a limit off; with ``redis_url`` several instances share one budget, and an
unreachable Redis lets requests through."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import httpx2 as httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from centrali.config import Settings
from centrali.oauth import credentials
from centrali.store.db import Database
from centrali.web import token_asgi
from centrali.web.app import CentraliApp, create_app
from centrali.web.runtime import Runtime
from centrali.web.supervisor import uvicorn_options
from tests.factories import Factory

ISSUER = "http://testserver"
REDIS_URL = "redis://127.0.0.1:6379/0"
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.10"
PEER_HEADER = "x-test-peer"
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client credentials"}


class PeerAddress:
    """Takes the source address of a request from the test's ``X-Test-Peer`` header, so one
    app (one limiter) sees requests from several addresses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == PEER_HEADER.encode():
                    scope = {**scope, "client": (value.decode(), 40000)}
        await self.app(scope, receive, send)


class Server:
    """One app instance (one Runtime, one limiter) under a TestClient."""

    def __init__(self, app: CentraliApp, client: TestClient) -> None:
        self.app = app
        self.http = client

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.app.state.runtime
        return runtime

    def token(
        self, client_id: str | None, secret: str | None, *, ip: str = ATTACKER, **form: str
    ) -> httpx.Response:
        data = {"grant_type": "client_credentials", **form}
        if client_id is not None:
            data["client_id"] = client_id
        if secret is not None:
            data["client_secret"] = secret
        return self.http.post("/oidc/token", data=data, headers={PEER_HEADER: ip})

    def basic(self, client_id: str, secret: str, *, ip: str = ATTACKER) -> httpx.Response:
        raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return self.http.post(
            "/oidc/token",
            data={"grant_type": "client_credentials"},
            headers={PEER_HEADER: ip, "Authorization": f"Basic {raw}"},
        )


MakeServer = Callable[..., Server]


@pytest.fixture
def make_server(settings: Settings, db: Database) -> Iterator[MakeServer]:
    """``make_server(token_failures_per_client_ip=5, ...)``: an app on the test's store with
    these settings; several calls give several instances (as behind a load balancer)."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> Server:
            config = Settings(
                database_url=settings.database_url,
                data_dir=settings.data_dir,
                issuer=settings.issuer,
                **overrides,
            )
            app = create_app(config, db=db)
            client = TestClient(PeerAddress(app), base_url=ISSUER, client=(ATTACKER, 40000))
            return Server(app, stack.enter_context(client))

        yield make


@pytest.fixture
def account(factory: Factory) -> dict[str, Any]:
    factory.workspace()
    return factory.service_account(factory.admin(), name="Limited Client")


@pytest.fixture
def other_account(factory: Factory, account: dict[str, Any]) -> dict[str, Any]:
    return factory.service_account(factory.admin(), name="Other Client")


class SecretSpy:
    """Counts secret checks and client lookups of one runtime."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
        self.verified = 0
        self.lookups = 0
        verify = credentials.match_secret  # what client_auth calls
        find = runtime.clients.find_clients

        def counting_verify(*args: Any, **kwargs: Any) -> Any:
            self.verified += 1
            return verify(*args, **kwargs)

        def counting_find(client_ids: Sequence[str]) -> Any:
            self.lookups += len(client_ids)
            return find(client_ids)

        monkeypatch.setattr("centrali.oauth.client_auth.match_secret", counting_verify)
        monkeypatch.setattr(runtime.clients, "find_clients", counting_find)


def assert_slow_down(response: httpx.Response, *, max_retry_after: int = 60) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "slow_down"
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= max_retry_after <= 60
    return retry_after


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == INVALID_CLIENT


def assert_token(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


# --- per address and client_id ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "basic"])
def test_wrong_secrets_then_slow_down_even_for_the_right_secret(
    make_server: MakeServer,
    account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    server = make_server(token_failures_per_client_ip=5)
    client_id, secret = account["clientId"], account["clientSecret"]
    send = server.basic if method == "basic" else server.token
    for _ in range(5):
        assert_invalid_client(send(client_id, "sk_" + "0" * 64))
    retry_after = assert_slow_down(send(client_id, "sk_" + "0" * 64))
    assert 10 <= retry_after <= 12  # 5 a minute: one back every 12 s

    spy = SecretSpy(monkeypatch, server.runtime)
    assert_slow_down(send(client_id, secret))  # the right secret, from that address
    assert (spy.verified, spy.lookups) == (0, 0)  # refused before any secret was checked

    assert_token(send(client_id, secret, ip=OWNER))  # the owner, from its own address
    assert (spy.verified, spy.lookups) == (1, 1)


def test_slow_down_keeps_the_attacker_out_but_no_other_client(
    make_server: MakeServer, account: dict[str, Any], other_account: dict[str, Any]
) -> None:
    server = make_server(token_failures_per_client_ip=3, token_failures_per_ip=0)
    for _ in range(3):
        assert_invalid_client(server.token(account["clientId"], "wrong"))
    assert_slow_down(server.token(account["clientId"], "wrong"))
    # Another client_id from the same address has its own budget (per-IP limit off here).
    assert_token(server.token(other_account["clientId"], other_account["clientSecret"]))


def test_default_limit_is_20_failures_per_address_and_client(
    client: TestClient, account: dict[str, Any]
) -> None:
    form = {"grant_type": "client_credentials", "client_id": account["clientId"]}
    for _ in range(20):
        r = client.post("/oidc/token", data={**form, "client_secret": "wrong"})
        assert_invalid_client(r)
    r = client.post("/oidc/token", data={**form, "client_secret": account["clientSecret"]})
    assert_slow_down(r)


# --- per address ------------------------------------------------------------------------------


def test_failures_per_address_across_many_client_ids(
    make_server: MakeServer, account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server(token_failures_per_ip=5, token_failures_per_client_ip=0)
    for i in range(5):  # unknown ids count as failures exactly like wrong secrets
        assert_invalid_client(server.token(f"ci_guess{i:017d}", "sk_guess"))
    assert_slow_down(server.token("ci_never_tried_before", "sk_guess"))
    spy = SecretSpy(monkeypatch, server.runtime)
    assert_slow_down(server.token(account["clientId"], account["clientSecret"]))
    assert (spy.verified, spy.lookups) == (0, 0)
    assert_token(server.token(account["clientId"], account["clientSecret"], ip=OWNER))


def test_requests_without_credentials_are_failures_of_the_address(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    server = make_server(token_failures_per_ip=3, token_failures_per_client_ip=0)
    for _ in range(3):
        assert_invalid_client(server.token(None, None))
    assert_slow_down(server.token(account["clientId"], account["clientSecret"]))
    assert_token(server.token(account["clientId"], account["clientSecret"], ip=OWNER))


def test_request_without_credentials_from_a_limited_address_gets_slow_down(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    server = make_server(token_failures_per_ip=3, token_failures_per_client_ip=0)
    for _ in range(3):
        assert_invalid_client(server.token(account["clientId"], "wrong"))
    assert_slow_down(server.token(account["clientId"], account["clientSecret"]))
    assert_slow_down(server.token(None, None))


# --- what is not a failure, what turns limits off --------------------------------------------


def test_successes_and_non_authentication_errors_are_not_charged(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    server = make_server(token_failures_per_ip=2, token_failures_per_client_ip=2)
    client_id, secret = account["clientId"], account["clientSecret"]
    for _ in range(5):
        assert_token(server.token(client_id, secret))
    for _ in range(5):
        r = server.token(client_id, secret, scope="admin")
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text
    for _ in range(3):
        r = server.token(client_id, secret, grant_type="password")
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
    assert_token(server.token(client_id, secret))


def test_limits_of_0_are_off(make_server: MakeServer, account: dict[str, Any]) -> None:
    server = make_server(
        token_failures_per_ip=0, token_failures_per_client_ip=0, token_issuance_per_client=0
    )
    assert server.runtime.limiter is None
    for _ in range(30):
        assert_invalid_client(server.token(account["clientId"], "wrong"))
    for _ in range(10):
        assert_invalid_client(server.token(None, None))
    for _ in range(5):
        assert_token(server.token(account["clientId"], account["clientSecret"]))


# --- issuance per client ----------------------------------------------------------------------


def test_issuance_limit_per_client(
    make_server: MakeServer, account: dict[str, Any], other_account: dict[str, Any]
) -> None:
    server = make_server(token_issuance_per_client=3)
    client_id, secret = account["clientId"], account["clientSecret"]
    for _ in range(3):
        assert_token(server.token(client_id, secret, ip=OWNER))
    retry_after = assert_slow_down(server.token(client_id, secret, ip=OWNER))
    assert 10 <= retry_after <= 20  # 3 a minute: one back every 20 s
    assert_slow_down(server.token(client_id, secret, ip="192.0.2.44"))  # per client, anywhere
    for _ in range(3):  # another client has its own budget
        assert_token(server.token(other_account["clientId"], other_account["clientSecret"]))


def test_failures_do_not_spend_the_issuance_budget(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    server = make_server(
        token_issuance_per_client=2, token_failures_per_ip=0, token_failures_per_client_ip=0
    )
    for _ in range(10):  # only the holder of the secret can spend it
        assert_invalid_client(server.token(account["clientId"], "wrong"))
    assert_token(server.token(account["clientId"], account["clientSecret"]))
    assert_token(server.token(account["clientId"], account["clientSecret"]))
    assert_slow_down(server.token(account["clientId"], account["clientSecret"]))


def test_introspection_and_revocation_do_not_spend_the_issuance_budget(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    server = make_server(token_issuance_per_client=2)
    client_id, secret = account["clientId"], account["clientSecret"]
    token = server.token(client_id, secret, ip=OWNER).json()["access_token"]
    auth = {"client_id": client_id, "client_secret": secret, "token": token}
    for _ in range(5):  # they issue nothing, so they spend nothing
        r = server.http.post("/oidc/introspect", data=auth, headers={PEER_HEADER: OWNER})
        assert r.status_code == 200 and r.json()["active"] is True, r.text
    r = server.http.post("/oidc/revoke", data=auth, headers={PEER_HEADER: OWNER})
    assert r.status_code == 200, r.text
    assert_token(server.token(client_id, secret, ip=OWNER))  # the second of two
    assert_slow_down(server.token(client_id, secret, ip=OWNER))


# --- refill -----------------------------------------------------------------------------------


class ShiftedClock:
    """``time`` as the token endpoint sees it, ``offset`` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.time

    def time(self) -> float:
        return self._real() + self.offset


def test_limit_refills_as_time_passes(
    make_server: MakeServer, account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ShiftedClock()
    monkeypatch.setattr(token_asgi, "time", clock)
    server = make_server(token_failures_per_client_ip=2, token_failures_per_ip=0)
    client_id, secret = account["clientId"], account["clientSecret"]
    assert_invalid_client(server.token(client_id, "wrong"))
    assert_invalid_client(server.token(client_id, "wrong"))
    first = assert_slow_down(server.token(client_id, secret))
    assert 28 <= first <= 30  # 2 a minute: one back every 30 s
    for _ in range(20):  # refused attempts are not charged: they do not push the limit out
        assert_slow_down(server.token(client_id, "wrong"))
    clock.offset = 20.0
    later = assert_slow_down(server.token(client_id, secret))
    assert later <= first - 19
    clock.offset = 31.0
    assert_token(server.token(client_id, secret))
    # One token came back, and the success did not spend it: one more failure empties it.
    assert_invalid_client(server.token(client_id, "wrong"))
    assert_slow_down(server.token(client_id, secret))


# --- Redis: one budget for several instances -------------------------------------------------


def redis_reachable(url: str) -> bool:
    try:
        conn = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(conn.ping())
        finally:
            conn.close()
    except (redis.RedisError, OSError):
        return False


@pytest.fixture
def redis_url() -> str:
    if not redis_reachable(REDIS_URL):
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (.ci/run starts one)")
    return REDIS_URL


def unique_ip() -> str:
    """An address no other test run has used lately, so Redis keys never collide."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_redis_limit_is_shared_between_instances(
    make_server: MakeServer, account: dict[str, Any], redis_url: str
) -> None:
    limits = {"token_failures_per_client_ip": 3, "redis_url": redis_url}
    server_a, server_b = make_server(**limits), make_server(**limits)
    assert server_a.runtime is not server_b.runtime
    attacker = unique_ip()
    client_id, secret = account["clientId"], account["clientSecret"]
    for _ in range(3):
        assert_invalid_client(server_a.token(client_id, "wrong", ip=attacker))
    assert_slow_down(server_b.token(client_id, secret, ip=attacker))
    assert_slow_down(server_a.token(client_id, secret, ip=attacker))
    assert_token(server_b.token(client_id, secret, ip=unique_ip()))


def test_redis_issuance_limit_is_shared_between_instances(
    make_server: MakeServer, account: dict[str, Any], redis_url: str
) -> None:
    limits = {"token_issuance_per_client": 2, "redis_url": redis_url}
    server_a, server_b = make_server(**limits), make_server(**limits)
    client_id, secret = account["clientId"], account["clientSecret"]
    assert_token(server_a.token(client_id, secret, ip=unique_ip()))
    assert_token(server_b.token(client_id, secret, ip=unique_ip()))
    assert_slow_down(server_a.token(client_id, secret, ip=unique_ip()))
    assert_slow_down(server_b.token(client_id, secret, ip=unique_ip()))


def test_redis_unreachable_lets_requests_through(
    make_server: MakeServer, account: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(
        token_failures_per_client_ip=2, redis_url=f"redis://127.0.0.1:{closed_port()}/0"
    )
    client_id, secret = account["clientId"], account["clientSecret"]
    with caplog.at_level(logging.WARNING, logger="centrali.limits"):
        for _ in range(5):
            assert_invalid_client(server.token(client_id, "wrong"))
        started = time.monotonic()
        assert_token(server.token(client_id, secret))
        assert time.monotonic() - started < 3.0
    warnings = [r for r in caplog.records if r.name == "centrali.limits"]
    assert len(warnings) == 1, warnings  # said once, not once per request
    assert "Redis" in warnings[0].getMessage()


# --- concurrency: the check and the charge must not be split by a burst ----------------------


def burst(
    server: Server, ip: str, client_id: str, attempts: int, secret: str | None = None
) -> list[int]:
    """``attempts`` requests sent at once, on the app's own event loop: with ``secret``, or
    else each with a different wrong secret."""

    async def send_all() -> list[int]:
        transport = httpx.ASGITransport(app=server.app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            form = {"grant_type": "client_credentials", "client_id": client_id}
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/oidc/token", data={**form, "client_secret": secret or f"sk_guess{i}"}
                    )
                    for i in range(attempts)
                )
            )
        return sorted(r.status_code for r in answers)

    assert server.http.portal is not None
    return server.http.portal.call(send_all)


def test_a_burst_of_wrong_secrets_gets_no_more_tries_than_the_limit(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    server = make_server(token_failures_per_client_ip=3, token_failures_per_ip=0)
    assert burst(server, unique_ip(), account["clientId"], 20) == [401] * 3 + [429] * 17


def test_a_burst_of_good_requests_is_not_held_back_by_the_failure_budget(
    make_server: MakeServer, account: dict[str, Any]
) -> None:
    # Many more concurrent requests than the failure budget, all with the right secret:
    # none may be refused because the others were in flight (their lookups are gathered
    # into one statement while they wait).
    server = make_server(token_failures_per_client_ip=3, token_failures_per_ip=3)
    codes = burst(server, unique_ip(), account["clientId"], 40, account["clientSecret"])
    assert codes == [200] * 40


def test_a_burst_of_wrong_secrets_gets_no_more_tries_than_the_limit_with_redis(
    make_server: MakeServer, account: dict[str, Any], redis_url: str
) -> None:
    server = make_server(
        token_failures_per_client_ip=3, token_failures_per_ip=0, redis_url=redis_url
    )
    codes = burst(server, unique_ip(), account["clientId"], 20)
    assert codes.count(401) <= 3, codes


# --- behind a proxy: X-Forwarded-For from the proxies listed, and only from them --------------


PROXY = "10.0.0.1"


def test_behind_a_proxy_the_limits_key_on_the_forwarded_address_from_it_alone(
    settings: Settings, db: Database, account: dict[str, Any]
) -> None:
    """``serve``'s own uvicorn set-up (supervisor.uvicorn_options) with
    CENTRALI_FORWARDED_ALLOW_IPS: X-Forwarded-For from the proxy names the client, so one
    attacker behind it does not shut out the others; from anyone else it is ignored."""
    config_settings = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        issuer="https://auth.example",
        forwarded_allow_ips=PROXY,
        token_failures_per_ip=2,
        token_failures_per_client_ip=0,
    )
    options = {**uvicorn_options(config_settings), "factory": False, "log_config": None}
    config = uvicorn.Config(create_app(config_settings, db=db), **options)
    config.load()  # what uvicorn serves: the app behind its proxy-headers middleware
    client_id, secret = account["clientId"], account["clientSecret"]

    def token(peer: str, forwarded: str, secret: str) -> int:
        form = {"grant_type": "client_credentials", "client_id": client_id}
        headers = {PEER_HEADER: peer, "X-Forwarded-For": forwarded}
        r = http.post("/oidc/token", data={**form, "client_secret": secret}, headers=headers)
        return r.status_code

    with TestClient(PeerAddress(config.loaded_app), base_url=ISSUER) as http:
        # Through the proxy: each client has its own budget.
        assert [token(PROXY, "203.0.113.5", "wrong") for _ in range(3)] == [401, 401, 429]
        assert token(PROXY, "203.0.113.5", secret) == 429
        assert token(PROXY, "198.51.100.7", secret) == 200  # another client behind the proxy
        assert token(PROXY, "2001:db8:7::1, 203.0.113.5", secret) == 429  # the proxy's entry
        # From anyone else the header is a lie: the peer's own address is limited.
        spoofed = [token("192.0.2.9", f"198.51.100.{i}", "wrong") for i in range(3)]
        assert spoofed == [401, 401, 429]
        assert token("192.0.2.9", "198.51.100.99", secret) == 429
