"""Operations endpoints (contract "Operations and security"): ``/healthz`` while the process
runs, ``/readyz`` 200 when the store answers and a key is loaded (else 503 with a reason),
``/metrics`` in Prometheus text format with token counters and latency histograms labelled
by route template, never by raw path."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import create_app
from centrali.web.logs import JsonFormatter, TextFormatter
from centrali.web.runtime import Runtime
from tests.factories import Factory, bearer

ISSUER = "http://testserver"
WS = "acme-corp"
RECORD_TEMPLATE = "/workspace/{workspace_slug}/api/v1/records/{record_id}"
STRUCTURE_TEMPLATE = "/workspace/{workspace_slug}/api/v1/structures/{slug}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (n, labels) in samples if n == name and label in dict(labels)}


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]
    return runtime


@pytest.fixture
def account(factory: Factory) -> dict[str, Any]:
    factory.workspace()
    return factory.service_account(factory.admin(), name="Metered Client")


# --- liveness and readiness ------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_readyz_when_store_answers_and_key_loaded(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert r.headers["cache-control"] == "no-store"


class BrokenEngine:
    """An engine whose every connection attempt fails like an unreachable server."""

    def connect(self) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))


class BrokenDatabase:
    autocommit_engine = BrokenEngine()


def assert_not_ready(r: httpx.Response, reason_words: str) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] != "ready"
    assert reason_words in body["reason"]
    assert r.headers["cache-control"] == "no-store"


def test_readyz_503_with_reason_when_store_raises(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_of(client)
    with monkeypatch.context() as patched:
        patched.setattr(runtime, "db", BrokenDatabase())
        assert_not_ready(client.get("/readyz"), "store")
        assert client.get("/healthz").status_code == 200  # alive, just not ready
    assert client.get("/readyz").status_code == 200  # and ready again once it answers


@pytest.fixture
def unreachable_store() -> Iterator[Database]:
    """A real Database whose server is not there (a port nothing listens on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = Database(f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    yield db
    db.dispose()


def test_readyz_503_when_store_unreachable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, unreachable_store: Database
) -> None:
    monkeypatch.setattr(runtime_of(client), "db", unreachable_store)
    assert_not_ready(client.get("/readyz"), "store")


def test_readyz_503_without_signing_key(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_of(client), "keys", None)
    assert_not_ready(client.get("/readyz"), "key")


def test_ops_endpoints_need_no_authentication_and_reveal_no_secret(
    factory: Factory, account: dict[str, Any]
) -> None:
    token = factory.sa_token(account)
    for path in ("/healthz", "/readyz", "/metrics"):
        r = factory.client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert account["clientSecret"] not in r.text
        assert token not in r.text
        assert account["clientId"] not in r.text  # no per-client label: bounded cardinality


# --- metrics ---------------------------------------------------------------------------------


ISSUED = "centrali_tokens_issued_total"
REFUSED = "centrali_tokens_refused_total"
GRANT = {"grant_type": "client_credentials"}


def test_metrics_is_prometheus_text_with_the_token_counters(
    factory: Factory, account: dict[str, Any]
) -> None:
    factory.sa_token(account)
    factory.token_response(account["clientId"], "wrong")
    r = factory.client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=")
    assert r.headers["cache-control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["centrali_tokens_issued"].type == "counter"
    assert families["centrali_tokens_refused"].type == "counter"
    assert families["centrali_http_request_duration_seconds"].type == "histogram"
    assert 'centrali_tokens_issued_total{grant_type="client_credentials"}' in r.text
    assert 'centrali_tokens_refused_total{reason="wrong_secret"}' in r.text


def test_token_counters_go_up_by_exactly_what_happened(
    settings: Settings, db: Database, factory: Factory, account: dict[str, Any]
) -> None:
    config = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        issuer=settings.issuer,
        token_failures_per_client_ip=3,
    )
    client_id, secret = account["clientId"], account["clientSecret"]
    with TestClient(create_app(config, db=db), base_url=ISSUER) as http:

        def token(cid: str, sec: str, **extra: str) -> int:
            form = {"grant_type": "client_credentials", "client_id": cid, "client_secret": sec}
            return http.post("/oidc/token", data={**form, **extra}).status_code

        before = scrape(http)
        assert [token(client_id, secret) for _ in range(4)] == [200] * 4
        assert token(client_id, secret, scope="admin") == 400
        assert [token(client_id, "wrong") for _ in range(3)] == [401] * 3
        assert token("ci_nobody00000000000000", "wrong") == 401
        assert token(client_id, secret) == 429
        r = http.post("/oidc/token", content=b"x" * (settings.max_body_bytes + 1))
        assert r.status_code == 413
        after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(ISSUED, **GRANT) == 4
    assert delta(REFUSED, reason="wrong_secret") == 3
    assert delta(REFUSED, reason="unknown_client") == 1
    assert delta(REFUSED, reason="rate_limited") == 1
    assert delta(REFUSED, reason="invalid_scope") == 1
    assert delta(REFUSED, reason="body_too_large") == 1
    requests = "centrali_http_requests_total"
    assert delta(requests, route="/oidc/token", method="POST", status="200") == 4
    assert delta(requests, route="/oidc/token", method="POST", status="429") == 1
    count = "centrali_http_request_duration_seconds_count"
    assert delta(count, route="/oidc/token", method="POST") == 11


def test_latency_is_labelled_by_route_template_not_raw_path(
    factory: Factory, account: dict[str, Any]
) -> None:
    client = factory.client
    token = factory.sa_token(account)
    record_id = "918273645"
    r = client.get(f"/workspace/{WS}/api/v1/records/{record_id}", headers=bearer(token))
    assert r.status_code == 404, r.text
    r = client.get(f"/workspace/{WS}/api/v1/structures/zebra-quokka", headers=bearer(token))
    assert r.status_code == 404, r.text
    r = client.get("/workspace/other-ws-314159/api/v1/records/271828")  # 401, no token
    assert r.status_code == 401
    assert client.get("/no/such/path-quux-42?q=secret-query").status_code == 404
    samples = scrape(client)
    latency = "centrali_http_request_duration_seconds_bucket"
    routes = label_values(samples, latency, "route")
    assert RECORD_TEMPLATE in routes
    assert STRUCTURE_TEMPLATE in routes
    assert "/oidc/token" in routes
    assert value(samples, latency.replace("_bucket", "_count"), route=RECORD_TEMPLATE, method="GET")
    every_label = {v for (_, labels) in samples for (_, v) in labels}
    for raw in (record_id, "zebra-quokka", WS, "other-ws-314159", "271828", "quux", "secret-query"):
        assert not any(raw in v for v in every_label), (raw, sorted(every_label))
    statuses = {
        dict(labels).get("status")
        for (name, labels) in samples
        if name == "centrali_http_requests_total" and dict(labels).get("route") == RECORD_TEMPLATE
    }
    assert {"401", "404"} <= statuses


def test_a_client_that_hangs_up_is_not_counted_as_a_server_error(
    settings: Settings, db: Database
) -> None:
    """A client gone before its body arrived got no answer at all; counting it as a 500
    would page someone for nothing."""
    app = create_app(settings, db=db)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/oidc/token",
        "raw_path": b"/oidc/token",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", b"60"),
        ],
        "client": ("192.0.2.8", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    labels = {"route": "/oidc/token", "method": "POST", "status": "500"}
    before = REGISTRY.get_sample_value("centrali_http_requests_total", labels) or 0.0
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    after = REGISTRY.get_sample_value("centrali_http_requests_total", labels) or 0.0
    assert sent == []  # nobody to answer
    assert after - before == 0, "a client disconnect was counted as a 500"


# --- access log ------------------------------------------------------------------------------


@contextmanager
def access_log(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    """The access log lines, formatted as the server's handler formats them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("centrali.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_access_log_json_line_per_request(client: TestClient) -> None:
    with access_log(JsonFormatter()) as out:
        r = client.get("/healthz?token=never-logged", headers={"X-Request-Id": "ops-rid-1"})
        r2 = client.post("/oidc/token", data={"grant_type": "client_credentials"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2, lines
    first, second = lines
    assert first["requestId"] == "ops-rid-1" == r.headers["x-request-id"]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/healthz", 200)
    assert first["durationMs"] >= 0
    assert first["logger"] == "centrali.access"
    assert second["requestId"] == r2.headers["x-request-id"]
    assert (second["method"], second["path"], second["status"]) == ("POST", "/oidc/token", 401)
    assert "never-logged" not in out.getvalue()


def test_access_log_json_escapes_a_newline_in_the_path(client: TestClient) -> None:
    with access_log(JsonFormatter()) as out:
        client.get("/healthz%0Aforged-line")
    assert len(out.getvalue().splitlines()) == 1


@pytest.mark.parametrize(
    ("encoded", "escaped"),
    [("%0A", "\\n"), ("%0D", "\\r"), ("%0D%0A", "\\r\\n")],
    ids=["lf", "cr", "crlf"],
)
def test_access_log_text_lines_cannot_be_forged(
    client: TestClient, encoded: str, escaped: str
) -> None:
    forged = "2026-01-01 00:00:00,000 INFO centrali.access [forged] GET /admin 200"
    with access_log(TextFormatter()) as out:
        client.get("/healthz" + encoded + forged.replace(" ", "%20"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert f"/healthz{escaped}{forged}" in lines[0]  # escaped, not dropped


def _expiring(factory: Factory) -> dict[str, float]:
    r = factory.client.get("/metrics")
    family = {f.name: f for f in text_string_to_metric_families(r.text)}[
        "centrali_credentials_expiring"
    ]
    assert family.type == "gauge"
    return {s.labels["within"]: s.value for s in family.samples}


def test_metrics_count_live_credentials_expiring_within_7_and_30_days(
    factory: Factory, account: dict[str, Any]
) -> None:
    assert _expiring(factory) == {"7d": 0, "30d": 0}  # the account's secret never expires
    admin = {"Authorization": f"Bearer {factory.admin()}"}
    base = f"/workspace/{account['workspace']}/api/v1/service-accounts/{account['id']}/secrets"
    now = datetime.now(UTC)
    for days in (3, 20, 60):
        at = (now + timedelta(days=days)).isoformat()
        r = factory.client.post(base, headers=admin, json={"expiresAt": at})
        assert r.status_code == 201, r.text
    assert _expiring(factory) == {"7d": 1, "30d": 2}
    # A deleted account's credentials no longer count.
    r = factory.client.delete(base.removesuffix("/secrets"), headers=admin)
    assert r.status_code == 204
    assert _expiring(factory) == {"7d": 0, "30d": 0}
