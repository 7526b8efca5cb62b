"""The web console in a real browser: Playwright driving Debian's Chromium against a real
``centrali serve``.

An admin signs in through the OpenID Connect login page, creates a service account and
reads its secret once, reloads and finds it gone, gets a token with it over HTTP, rotates
(the old secret is refused, the new one works), revokes, activates, edits, deletes with
confirmation, and reads the audit log. A second scenario manages several secrets of one
account: adds one (shown once), rotates with a grace period, deletes one (and is refused the
last one), and finds "last used" and the expiry badge in the list. A third adds keys (a PEM
converted in the browser, a JWK) and a federated credential from the GitHub Actions preset,
gets a token with a private_key_jwt assertion, and is refused deleting the last credential.
A fourth reads the audit log by names and emails (the IDs on hover), filters it by email,
picks groups from the workspace's, checks at 390x844 that no page scrolls sideways, and
signs in as a member without service-accounts:manage (refused, with a link back that works
once they are granted it).
Each page is saved as a screenshot under ``test-artifacts/console/<store>/``
(``.../secrets/<store>/``, ``.../keys/<store>/`` and ``.../people/<store>/`` for the
others); with
``CENTRALI_UPDATE_DOCS_SCREENSHOT=1`` the service-account list also goes to
``docs/console-service-accounts.png``, the secrets of an account to
``docs/console-secrets.png`` and its keys and federated credentials to
``docs/console-keys.png`` for the README.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from centrali.web.routes.console import CONSOLE_CSP, load_bundle
from tests.e2e.conftest import CENTRALI, CLI_TIMEOUT, Launch, Server, base_env, cli_inproc

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
DOCS_SCREENSHOT = ROOT / "docs" / "console-service-accounts.png"
DOCS_SECRETS_SCREENSHOT = ROOT / "docs" / "console-secrets.png"
DOCS_KEYS_SCREENSHOT = ROOT / "docs" / "console-keys.png"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
WORKSPACE = "acme-corp"
ADMIN = "admin@acme.test"
PASSWORD = "correct horse battery staple"
STEP_TIMEOUT_MS = 10_000
# The whole scenario, store and server start included, stays inside this.
BUDGET_SECONDS = 90
SECRET = re.compile(r"sk_[0-9a-f]{64}")
# Uses of a credential are flushed to the store every 5 s and show within 10 s.
LAST_USED_WAIT_SECONDS = 15
CONSOLE_FILES = ROOT / "src" / "centrali" / "web" / "console"


@dataclass
class Shots:
    """Numbered full-page screenshots of one run."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page: Any, name: str, *, full_page: bool = True) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.taken.append(path)
        return path


@pytest.fixture
def started_at() -> float:
    return time.monotonic()


@pytest.fixture(params=["sqlite", "postgres"])
def console_server(
    started_at: float, request: pytest.FixtureRequest, launch: Launch, tmp_path: Path
) -> Server:
    """A served store with a workspace whose admin has a password."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: Debian's chromium package drives these tests")
    settings = {"CENTRALI_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        settings["CENTRALI_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    env = base_env(**settings)
    result = subprocess.run(
        [str(CENTRALI), "bootstrap", "--workspace", WORKSPACE, "--admin", ADMIN]
        + ["--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (server,) = launch(env)
    return server


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    backend = request.node.callspec.params.get("console_server", "run")
    folder = ARTIFACTS / backend
    if request.node.originalname == "test_console_manages_secrets":
        folder = ARTIFACTS / "secrets" / backend
    elif request.node.originalname == "test_console_manages_keys_and_federated_credentials":
        folder = ARTIFACTS / "keys" / backend
    elif request.node.originalname == "test_console_names_people_and_fits_a_phone":
        folder = ARTIFACTS / "people" / backend
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Shots(folder)


@pytest.fixture
def browser_page(console_server: Server) -> Iterator[tuple[Any, list[str]]]:
    """A fresh Chromium page, and the CSP violations and script errors it reports."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 820}, locale="en-GB", timezone_id="UTC"
            )
            context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=console_server.base_url
            )
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            # Page time runs as usual, but can be moved ahead to reach a token's expiry.
            page.clock.install()
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}")
                    if msg.type == "error" and "Content Security Policy" in msg.text
                    else None
                ),
            )
            yield page, problems
        finally:
            browser.close()


def client_token(server: Server, client_id: str, secret: str) -> httpx.Response:
    with server.client() as http:
        return http.post(
            "/oidc/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )


def sign_in(page: Any) -> None:
    """Fill in and send the provider's login form."""
    page.locator("input[name=email]").fill(ADMIN)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")


def page_text_values(page: Any) -> str:
    """Everything a user could read or copy from the page, input values included."""
    values = page.evaluate(
        "() => [...document.querySelectorAll('input, textarea')].map((e) => e.value)"
    )
    return page.content() + "\n".join(values)


def stored_in_browser(page: Any) -> str:
    return str(
        page.evaluate(
            "() => JSON.stringify([Object.entries(sessionStorage),"
            " Object.entries(localStorage), document.cookie])"
        )
    )


@pytest.mark.e2e
def test_console_manages_service_accounts(
    started_at: float, console_server: Server, browser_page: tuple[Any, list[str]], shots: Shots
) -> None:
    from playwright.sync_api import expect

    server = console_server
    page, problems = browser_page
    base = server.base_url
    expect.set_options(timeout=STEP_TIMEOUT_MS)

    # The console's own answer: strict CSP, never cached.
    with server.client() as http:
        html = http.get("/console")
    csp = html.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert html.headers["cache-control"] == "no-store"
    assert "<script>" not in html.text and " style=" not in html.text

    # --- sign in ---------------------------------------------------------------------
    page.goto(f"{base}/console")
    expect(page.locator("input[name=password]")).to_be_visible()
    shots(page, "sign-in")
    with page.expect_response(f"{base}/oidc/token") as exchange:
        sign_in(page)
    lifetime = exchange.value.json()["expires_in"]
    expect(page.get_by_role("heading", name="Service accounts")).to_be_visible()
    assert page.url == f"{base}/console"
    expect(page.locator("#who-workspace")).to_have_text(WORKSPACE)
    expect(page.locator("#who-user")).to_have_text(ADMIN)
    shots(page, "service-accounts-empty")
    for cookie in page.context.cookies():
        assert cookie["httpOnly"], cookie["name"]
        assert cookie["sameSite"] == "Lax", cookie["name"]

    # --- create, and the secret shown once ---------------------------------------------
    page.get_by_role("link", name="New service account").click()
    page.locator("#name").fill("Production API Client")
    page.locator("#description").fill("Main service account for production API access")
    shots(page, "create")
    page.get_by_role("button", name="Create service account").click()
    panel = page.locator("#secret-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("shown this once")
    secret = page.locator("#one-time-secret").input_value()
    assert SECRET.fullmatch(secret), secret
    client_id = page.locator("#client-id").inner_text()
    assert re.fullmatch(r"ci_[a-z0-9]{20}", client_id), client_id
    account_url = page.url
    assert re.fullmatch(rf"{re.escape(base)}/console/accounts/\d+", account_url)
    page.locator("#copy-secret").click()
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    assert secret not in stored_in_browser(page)
    assert secret not in page.url
    shots(page, "secret-shown-once")

    # --- reload: the secret is gone, the session comes back without a password ----------
    page.reload()
    expect(page.locator("#details")).to_be_visible()
    assert page.url == account_url
    expect(page.locator("#secret-panel")).to_have_count(0)
    assert secret not in page_text_values(page)
    assert secret not in stored_in_browser(page)
    shots(page, "after-reload-secret-gone")

    # --- the secret works over plain HTTP ---------------------------------------------
    assert client_token(server, client_id, secret).status_code == 200

    # --- rotate --------------------------------------------------------------------------
    page.locator("#rotate").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("other secrets stop working at once")
    # No grace period unless one is chosen: the old secret stops now.
    expect(dialog.locator("#rotate-grace")).to_have_value("0")
    shots(page, "rotate-confirm", full_page=False)
    dialog.get_by_role("button", name="Rotate secret").click()
    expect(page.locator("#secret-panel h2")).to_have_text("New client secret")
    new_secret = page.locator("#one-time-secret").input_value()
    assert SECRET.fullmatch(new_secret) and new_secret != secret
    shots(page, "rotated-new-secret")
    refused = client_token(server, client_id, secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert client_token(server, client_id, new_secret).status_code == 200
    page.locator("#hide-secret").click()
    expect(page.locator("#secret-panel")).to_have_count(0)

    # --- revoke, activate ---------------------------------------------------------------
    page.locator("#revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.locator("#details")).to_contain_text("Revoked")
    expect(page.locator("#activate")).to_be_visible()
    shots(page, "revoked")
    assert client_token(server, client_id, new_secret).status_code == 401
    page.locator("#activate").click()
    expect(page.locator("#revoke")).to_be_visible()
    expect(page.locator("#details")).to_contain_text("Active")
    assert client_token(server, client_id, new_secret).status_code == 200
    shots(page, "activated")

    # --- the access token is refreshed before it expires ------------------------------
    def refresh_grant(response: Any) -> bool:
        request = response.request
        return (
            request.method == "POST"
            and response.url == f"{base}/oidc/token"
            and "grant_type=refresh_token" in (request.post_data or "")
        )

    with page.expect_response(refresh_grant) as refreshed:
        page.clock.fast_forward(lifetime * 1000)
    assert refreshed.value.status == 200

    # --- rename, describe, change groups (an error first, shown in words) --------------
    page.locator("#edit-name").fill("Production API Client (EU)")
    page.locator("#rename-form button").click()
    expect(page.locator("#rename-form [role=status]")).to_have_text("Name saved.")
    expect(page.locator("h1.account-title")).to_contain_text("Production API Client (EU)")
    page.locator("#edit-description").fill("Calls the records API from the EU cluster")
    page.locator("#describe-form button").click()
    expect(page.locator("#describe-form [role=status]")).to_have_text("Description saved.")
    page.locator("#edit-name").fill("x" * 201)
    page.locator("#rename-form button").click()
    error = page.locator("#rename-form [role=alert]")
    expect(error).to_contain_text("The name was not saved.")
    error_text = error.inner_text()
    assert "{" not in error_text and '"error"' not in error_text, error_text
    assert "200 characters" in error_text, error_text
    shots(page, "error-in-words")
    # The workspace's groups are offered as choices, the account's own ticked.
    expect(page.locator("#edit-groups-api-users")).to_be_checked()
    expect(page.locator("#edit-groups-developers")).not_to_be_checked()
    page.locator("#edit-groups-developers").check()
    page.locator("#groups-form button").click()
    expect(page.locator("#groups-form [role=status]")).to_contain_text("Groups saved.")
    shots(page, "edited")
    account_id = account_url.rsplit("/", 1)[1]
    user_token = cli_inproc(server.env, "user", "token", ADMIN, "--workspace", WORKSPACE).strip()
    api = f"/workspace/{WORKSPACE}/api/v1/service-accounts"
    with server.client() as http:
        http.headers["Authorization"] = f"Bearer {user_token}"
        stored = http.get(f"{api}/{account_id}").json()
        assert stored["name"] == "Production API Client (EU)"
        assert stored["description"] == "Calls the records API from the EU cluster"
        assert stored["groups"] == ["api-users", "developers"]
        # Two more, for a list worth a screenshot.
        http.post(f"{api}", json={"name": "Nightly import job", "groups": ["developers"]})
        staging = http.post(f"{api}", json={"name": "Staging API client"}).json()
        http.post(f"{api}/{staging['id']}/revoke")

    # --- the list ------------------------------------------------------------------------
    page.locator("#nav").get_by_role("link", name="Service accounts").click()
    rows = page.locator("#accounts tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#accounts")).to_contain_text("Production API Client (EU)")
    expect(page.locator("#accounts")).to_contain_text("Revoked")
    expect(page.locator(".pager")).to_contain_text("1\u20133 of 3 service accounts")
    listed = shots(page, "service-accounts")
    if os.environ.get("CENTRALI_UPDATE_DOCS_SCREENSHOT"):
        end = page.locator(".pager").bounding_box()
        assert end is not None
        height = end["y"] + end["height"] + 24
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(
            path=str(DOCS_SCREENSHOT), clip={"x": 0, "y": 0, "width": 1280, "height": height}
        )

    # --- delete, with a confirmation that can be declined ------------------------------
    page.get_by_role("link", name="Production API Client (EU)").click()
    page.locator("#delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("cannot be undone")
    shots(page, "delete-confirm", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert client_token(server, client_id, new_secret).status_code == 200
    page.locator("#delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete for good").click()
    expect(page.locator("#flash")).to_contain_text("was deleted")
    expect(rows).to_have_count(2)
    shots(page, "deleted")
    assert client_token(server, client_id, new_secret).status_code == 401

    # --- the audit log -------------------------------------------------------------------
    page.locator("#nav").get_by_role("link", name="Audit log").click()
    events = page.locator("#audit-events tbody tr")
    expect(events.first).to_be_visible()
    audit_text = page.locator("#audit-events").inner_text()
    for label in [
        "Created",
        "Secret rotated",
        "Revoked",
        "Activated",
        "Renamed",
        "Description changed",
        "Groups changed",
        "Deleted",
    ]:
        assert label in audit_text, label
    assert secret not in audit_text and new_secret not in audit_text
    shots(page, "audit-log")
    page.locator("#filter-action").select_option("service_account.deleted")
    page.locator("#filter-target").fill(client_id)
    page.get_by_role("button", name="Filter").click()
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("Deleted")
    shots(page, "audit-log-filtered")

    # --- sign out ------------------------------------------------------------------------
    page.locator("#sign-out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    shots(page, "signed-out")
    page.goto(f"{base}/console")
    expect(page.locator("input[name=password]")).to_be_visible()

    assert problems == []
    assert listed.exists()
    assert time.monotonic() - started_at < BUDGET_SECONDS


@pytest.mark.e2e
def test_console_manages_secrets(
    started_at: float, console_server: Server, browser_page: tuple[Any, list[str]], shots: Shots
) -> None:
    """Several secrets of one account: listed with their hints, added (shown once), rotated
    with a grace period (the old ones listed with their new expiry, and still working),
    deleted (the last one refused in words); "last used" and the expiry badge in the list."""
    from playwright.sync_api import expect

    server = console_server
    page, problems = browser_page
    base = server.base_url
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    user_token = cli_inproc(server.env, "user", "token", ADMIN, "--workspace", WORKSPACE).strip()
    api = f"/workspace/{WORKSPACE}/api/v1/service-accounts"

    def management(method: str, path: str, **kwargs: Any) -> httpx.Response:
        with server.client() as http:
            http.headers["Authorization"] = f"Bearer {user_token}"
            return http.request(method, f"{api}{path}", **kwargs)

    def hint(secret: str) -> str:
        return "\u2026" + secret[-4:]

    page.goto(f"{base}/console")
    sign_in(page)
    expect(page.get_by_role("heading", name="Service accounts")).to_be_visible()

    # --- a new account: its one secret, listed by its hint -----------------------------
    page.get_by_role("link", name="New service account").click()
    page.locator("#name").fill("Billing exporter")
    page.get_by_role("button", name="Create service account").click()
    expect(page.locator("#secret-panel")).to_be_visible()
    first = page.locator("#one-time-secret").input_value()
    assert SECRET.fullmatch(first), first
    client_id = page.locator("#client-id").inner_text()
    account_id = int(page.url.rsplit("/", 1)[1])
    rows = page.locator("#secrets tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".hint")).to_have_text(hint(first))
    expect(rows.first.locator(".expires")).to_have_text("never")
    expect(rows.first.locator(".last-used")).to_have_text("never")
    expect(rows.first).to_contain_text("you")
    expect(page.locator("#secret-panel")).to_contain_text(f"listed below as {hint(first)}")
    expect(page.locator("#details")).to_contain_text("Last used")
    page.locator("#hide-secret").click()
    expect(page.locator("#secret-panel")).to_have_count(0)
    assert client_token(server, client_id, first).status_code == 200

    # --- add a second secret that expires in 10 days: shown once -----------------------
    expiry_day = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    page.locator("#secret-expires").fill(expiry_day)
    page.locator("#add-secret").click()
    panel = page.locator("#secret-panel")
    expect(panel.locator("h2")).to_have_text("New client secret")
    expect(panel).to_contain_text("shown this once")
    expect(panel).to_contain_text("other secrets keep working")
    added = page.locator("#one-time-secret").input_value()
    assert SECRET.fullmatch(added) and added != first
    expect(panel).to_contain_text(hint(added))
    expect(rows).to_have_count(2)
    # Newest first; the browser runs in UTC, so the day starts at 00:00Z.
    expect(rows.first.locator(".hint")).to_have_text(hint(added))
    expect(rows.first.locator(".expires time")).to_have_attribute(
        "datetime", re.compile(rf"^{expiry_day}T00:00")
    )
    expect(rows.last.locator(".hint")).to_have_text(hint(first))
    assert added not in stored_in_browser(page) and added not in page.url
    shots(page, "secret-added")
    assert client_token(server, client_id, added).status_code == 200
    assert client_token(server, client_id, first).status_code == 200
    page.locator("#hide-secret").click()

    # A third one, through the API, that expires in 3 s: listed later as expired.
    short_until = datetime.now(UTC) + timedelta(seconds=3)
    short = management(
        "POST", f"/{account_id}/secrets", json={"expiresAt": short_until.isoformat()}
    )
    assert short.status_code == 201, short.text
    short_id = short.json()["id"]

    # --- rotate, the old secrets kept for 24 hours --------------------------------------
    page.locator("#rotate").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("grace period")
    grace = dialog.locator("#rotate-grace")
    expect(grace).to_have_value("0")
    assert grace.locator("option").all_inner_texts() == [
        "None \u2014 old secret stops now",
        "1 hour",
        "24 hours",
        "7 days",
    ]
    grace.select_option(label="24 hours")
    shots(page, "rotate-with-grace", full_page=False)
    with page.expect_request(f"{base}{api}/{account_id}/rotate") as rotate_request:
        dialog.get_by_role("button", name="Rotate secret").click()
    assert rotate_request.value.post_data_json == {
        "revokeTokens": False,
        "gracePeriodSeconds": 86400,
    }
    rotated_at = datetime.now(UTC)
    expect(page.locator("#secret-after")).to_contain_text("keep working until")
    rotated = page.locator("#one-time-secret").input_value()
    assert SECRET.fullmatch(rotated) and rotated not in {first, added}
    # The new secret and the old ones, each old one now with an expiry within the grace.
    expect(rows).to_have_count(4)
    expect(rows.first.locator(".hint")).to_have_text(hint(rotated))
    expect(page.locator("#secret-panel")).to_contain_text(f"listed below as {hint(rotated)}")
    expect(rows.first.locator(".expires")).to_have_text("never")
    for old in [rows.nth(2), rows.nth(3)]:
        expect(old.locator(".expires time")).to_have_count(1)
    expect(rows.nth(2).locator(".hint")).to_have_text(hint(added))
    expect(rows.nth(3).locator(".hint")).to_have_text(hint(first))
    listed = management("GET", f"/{account_id}/secrets").json()["data"]
    assert [s["hint"] for s in listed] == [
        hint(rotated),
        short.json()["hint"],
        hint(added),
        hint(first),
    ]
    assert listed[0]["expiresAt"] is None
    for old in listed[1:]:
        until = datetime.fromisoformat(old["expiresAt"])
        assert until <= rotated_at + timedelta(days=1, seconds=5), old
    shots(page, "rotated-with-grace")
    # Within the grace period the old secrets still work, and so does the new one.
    assert client_token(server, client_id, first).status_code == 200
    assert client_token(server, client_id, rotated).status_code == 200
    page.locator("#hide-secret").click()

    # --- delete the oldest secret, with confirmation ----------------------------------
    rows.last.locator("[data-delete-secret]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(hint(first))
    expect(dialog).to_contain_text("stops working at once")
    shots(page, "secret-delete-confirm", full_page=False)
    dialog.get_by_role("button", name="Delete secret").click()
    expect(page.locator("#secrets-slot [role=status]")).to_contain_text("was deleted")
    expect(rows).to_have_count(3)
    expect(page.locator("#secrets")).not_to_contain_text(hint(first))
    refused = client_token(server, client_id, first)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"

    # --- the short one has expired: marked so after a fresh look ---------------------
    time.sleep(max(0.0, (short_until - datetime.now(UTC)).total_seconds() + 0.2))
    page.locator("a.back").click()
    page.get_by_role("link", name="Billing exporter").click()
    expired_row = page.locator(f"#secrets tbody tr[data-secret-id='{short_id}']")
    expect(expired_row.locator(".badge-expired")).to_have_text("expired")
    expect(rows).to_have_count(3)
    shots(page, "secrets")
    # --- the last working credential cannot be deleted: the server's reason in words ---
    nightly = management("POST", "", json={"name": "Nightly report"}).json()
    page.locator("a.back").click()
    page.get_by_role("link", name="Nightly report").click()
    expect(rows).to_have_count(1)
    rows.first.locator("[data-delete-secret]").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete secret").click()
    alert = page.locator("#secrets-slot [role=alert]")
    expect(alert).to_contain_text("The secret was not deleted.")
    alert_text = alert.inner_text().strip()
    assert "{" not in alert_text and '"error"' not in alert_text, alert_text
    assert alert_text.endswith("."), alert_text
    expect(rows).to_have_count(1)
    shots(page, "last-secret-refused")

    # --- the list: "last used" once the server has flushed it, and the expiry badge -----
    # Poll the API (not the page) until the uses above are flushed, then look once.
    def used_seen() -> bool:
        account = management("GET", f"/{account_id}").json()
        listed = management("GET", f"/{account_id}/secrets").json()["data"]
        by_hint = {s["hint"]: s for s in listed}
        return bool(account["lastUsedAt"] and by_hint[hint(added)]["lastUsedAt"])

    deadline = time.monotonic() + LAST_USED_WAIT_SECONDS
    while not used_seen():
        assert time.monotonic() < deadline, f"no lastUsedAt after {LAST_USED_WAIT_SECONDS} s"
        time.sleep(0.5)
    page.locator("#nav").get_by_role("link", name="Service accounts").click()
    billing = page.locator(f"#accounts tbody tr[data-account-id='{account_id}']")
    report = page.locator(f"#accounts tbody tr[data-account-id='{nightly['id']}']")
    expect(billing.locator(".last-used time")).to_have_text(
        re.compile(r"^(just now|\d+ minutes? ago)$")
    )
    # The old secret kept for 24 hours is the first to expire.
    expect(billing.locator(".badge-expiring")).to_have_text("expires in 1 day")
    expect(report.locator(".last-used")).to_have_text("never")
    expect(report.locator(".badge-expiring")).to_have_count(0)
    shots(page, "service-accounts-last-used")

    # And each secret's own last use on the account page.
    page.get_by_role("link", name="Billing exporter").click()
    used = page.locator("#secrets tbody tr", has=page.locator(".hint", has_text=hint(added)))
    expect(used.locator(".last-used time")).to_have_count(1)
    expect(expired_row.locator(".last-used")).to_have_text("never")
    last_used = page.locator("#details dt", has_text="Last used").locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(last_used.locator("time")).to_have_count(1)
    shots(page, "secrets-last-used")
    if os.environ.get("CENTRALI_UPDATE_DOCS_SCREENSHOT"):
        end = page.locator("#secrets-section").bounding_box()
        assert end is not None
        height = end["y"] + end["height"] + 24
        page.screenshot(
            path=str(DOCS_SECRETS_SCREENSHOT),
            clip={"x": 0, "y": 0, "width": 1280, "height": height},
            full_page=True,
        )

    # --- the audit log names the changes, never a secret -------------------------------
    page.locator("#nav").get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-events tbody tr").first).to_be_visible()
    audit_text = page.locator("#audit-events").inner_text()
    for label in ["Secret added", "Secret deleted", "Secret rotated", "grace period: 1 day"]:
        assert label in audit_text, label
    for secret in [first, added, rotated]:
        assert secret not in audit_text

    assert problems == []
    assert time.monotonic() - started_at < BUDGET_SECONDS


@pytest.mark.e2e
def test_console_manages_keys_and_federated_credentials(
    started_at: float, console_server: Server, browser_page: tuple[Any, list[str]], shots: Shots
) -> None:
    """Keys and federated credentials of one account: a private key and a weak key refused
    (the first in the browser, the second by the server, in words), an RSA key pasted as PEM
    (turned into a JWK in the browser, listed by its thumbprint) and an EC key as a JWK with
    an expiry; a token with a private_key_jwt assertion signed by the RSA key; a federated
    credential from the GitHub Actions preset (the issuer is not contacted); the secret, the
    EC key and the federated credential deleted with confirmation, and the last key refused."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm
    from playwright.sync_api import expect

    from centrali.oauth.keys import thumbprint

    server = console_server
    page, problems = browser_page
    base = server.base_url
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    user_token = cli_inproc(server.env, "user", "token", ADMIN, "--workspace", WORKSPACE).strip()
    api = f"/workspace/{WORKSPACE}/api/v1/service-accounts"

    def management(method: str, path: str, **kwargs: Any) -> httpx.Response:
        with server.client() as http:
            http.headers["Authorization"] = f"Bearer {user_token}"
            return http.request(method, f"{api}{path}", **kwargs)

    def public_pem(key: Any) -> str:
        return str(
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    with server.client() as http:
        issuer = http.get("/.well-known/openid-configuration").json()["issuer"]

    def key_token(key: Any, kid: str, client_id: str) -> httpx.Response:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": f"{issuer}/oidc/token",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
        }
        assertion = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        with server.client() as http:
            return http.post(
                "/oidc/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
            )

    created = management("POST", "", json={"name": "Deploy bot"})
    assert created.status_code == 201, created.text
    account_id, client_id = created.json()["id"], created.json()["clientId"]
    page.goto(f"{base}/console")
    sign_in(page)
    page.get_by_role("link", name="Deploy bot").click()
    expect(page.locator("#no-keys")).to_have_text("This account has no keys.")
    expect(page.locator("#no-federated")).to_be_visible()
    keys_slot, federated_slot = page.locator("#keys-slot"), page.locator("#federated-slot")
    key_rows = page.locator("#keys tbody tr")

    # --- a private key never leaves the browser ------------------------------------------
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    posted_keys: list[str] = []
    page.on(
        "request",
        lambda r: (
            posted_keys.append(r.post_data or "")
            if r.method == "POST" and r.url.endswith("/keys")
            else None
        ),
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    page.locator("#key-text").fill(private_pem)
    page.locator("#add-key").click()
    expect(keys_slot.locator("[role=alert]")).to_contain_text(
        "The key was not added. This is a private key"
    )
    private_jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    page.locator("#key-text").fill(json.dumps(private_jwk))
    page.locator("#add-key").click()
    expect(keys_slot.locator("[role=alert]")).to_contain_text("holds a private key (d, p, q")
    assert posted_keys == []

    # --- a 1024-bit RSA key: the server's reason, as a sentence ---------------------------
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    page.locator("#key-text").fill(public_pem(weak))
    page.locator("#add-key").click()
    alert = keys_slot.locator("[role=alert]")
    expect(alert).to_contain_text("2048 to 8192 bits, not 1024")
    alert_text = alert.inner_text().strip()
    assert alert_text.startswith("The key was not added. The server did not accept this:")
    assert alert_text.endswith(".") and "{" not in alert_text, alert_text
    assert len(posted_keys) == 1
    shots(page, "weak-key-refused", full_page=False)

    # --- the RSA key as PEM: a JWK made in the browser, listed by its thumbprint -----------
    kid = thumbprint(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
    with page.expect_request(f"{base}{api}/{account_id}/keys") as posted:
        page.locator("#key-text").fill(public_pem(key))
        page.locator("#add-key").click()
    sent = posted.value.post_data_json
    assert set(sent) == {"jwk"} and sent["jwk"]["alg"] == "RS256", sent
    assert set(sent["jwk"]) == {"kty", "n", "e", "alg"}, sent
    expect(keys_slot.locator("[role=status]")).to_contain_text(f"key ID {kid} (RS256)")
    row = page.locator(f"#keys tbody tr[data-kid='{kid}']")
    expect(row.locator(".kid")).to_have_text(kid)
    expect(row.locator(".alg")).to_have_text("RS256 (RSA)")
    expect(row.locator(".expires")).to_have_text("never")
    expect(row.locator(".last-used")).to_have_text("never")
    expect(row).to_contain_text("you")
    expect(page.locator("#key-text")).to_have_value("")

    # --- an EC key pasted as a JWK, expiring in 20 days ----------------------------------
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    ec_kid = thumbprint(ec_jwk)
    expiry_day = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
    page.locator("#key-text").fill(json.dumps(ec_jwk, indent=2))
    page.locator("#key-expires").fill(expiry_day)
    page.locator("#add-key").click()
    ec_row = page.locator(f"#keys tbody tr[data-kid='{ec_kid}']")
    expect(ec_row.locator(".alg")).to_have_text("ES256 (EC)")
    expect(ec_row.locator(".expires time")).to_have_attribute(
        "datetime", re.compile(rf"^{expiry_day}T00:00")
    )
    expect(key_rows).to_have_count(2)
    # The account's details follow: its first credential expiry is now the EC key's.
    expect(
        page.locator("#details dt", has_text="Credentials expire")
        .locator("xpath=following-sibling::dd[1]")
        .locator("time")
    ).to_have_attribute("datetime", re.compile(rf"^{expiry_day}T00:00"))

    # --- a token with a private_key_jwt assertion signed by the RSA key --------------------
    token = key_token(key, kid, client_id)
    assert token.status_code == 200, token.text
    assert token.json()["access_token"]

    # --- a federated credential from the GitHub Actions preset ---------------------------
    # The Kubernetes preset first: the issuer left to fill in, with a hint where to find it.
    page.locator("#preset-kubernetes").click()
    expect(page.locator("#federated-issuer")).to_have_value("")
    expect(page.locator("#federated-issuer")).to_be_focused()
    expect(page.locator("#federated-subject")).to_have_value("system:serviceaccount:NAMESPACE:NAME")
    expect(page.locator("#federated-hint")).to_contain_text("kubectl get --raw")
    page.locator("#preset-github").click()
    expect(page.locator("#federated-name")).to_have_value("GitHub Actions")
    expect(page.locator("#federated-issuer")).to_have_value(GITHUB_ISSUER)
    expect(page.locator("#federated-subject")).to_have_value("repo:ORG/REPO:ref:refs/heads/main")
    audience = page.locator("#federated-audience")
    expect(audience).to_have_value("")
    expect(audience).to_have_attribute("placeholder", issuer)
    expect(page.locator("#federated-hint")).to_contain_text("id-token: write")
    selection = (
        "() => [document.activeElement.id, document.activeElement.value.slice("
        "document.activeElement.selectionStart, document.activeElement.selectionEnd)]"
    )
    assert page.evaluate(selection) == ["federated-subject", "ORG/REPO"]
    # Sent as it stands, the template is caught here, its placeholder selected again.
    page.locator("#add-federated").click()
    expect(federated_slot.locator("[role=alert]")).to_contain_text(
        "Replace ORG/REPO in the subject with your own."
    )
    assert page.evaluate(selection) == ["federated-subject", "ORG/REPO"]
    page.keyboard.type("acme/billing")
    subject = "repo:acme/billing:ref:refs/heads/main"
    expect(page.locator("#federated-subject")).to_have_value(subject)
    shots(page, "federated-github-preset")
    # Created without a word to the issuer (its keys are read at the first token request).
    with page.expect_response(f"{base}{api}/{account_id}/federated-credentials") as answer:
        page.locator("#add-federated").click()
    assert answer.value.status == 201
    assert answer.value.request.post_data_json == {
        "name": "GitHub Actions",
        "issuer": GITHUB_ISSUER,
        "subject": subject,
    }
    expect(federated_slot.locator("[role=status]")).to_contain_text("was added")
    federated_rows = page.locator("#federated tbody tr")
    expect(federated_rows).to_have_count(1)
    github = federated_rows.first
    expect(github.locator(".name")).to_have_text("GitHub Actions")
    expect(github.locator(".issuer")).to_have_text(GITHUB_ISSUER)
    expect(github.locator(".subject-claim")).to_have_text(subject)
    expect(github.locator(".audience")).to_have_text(f"{issuer} (this server)")
    expect(github.locator(".expires")).to_have_text("never")
    expect(page.locator("#federated-issuer")).to_have_value("")
    [stored] = management("GET", f"/{account_id}/federated-credentials").json()["data"]
    assert (stored["issuer"], stored["subject"], stored["audience"]) == (
        GITHUB_ISSUER,
        subject,
        issuer,
    )
    shots(page, "keys-and-federated")
    if os.environ.get("CENTRALI_UPDATE_DOCS_SCREENSHOT"):
        # From the Keys heading to the end of the federated credentials' table, in page
        # coordinates (bounding boxes are the viewport's).
        top, end = page.evaluate(
            "() => [document.querySelector('#keys-section').getBoundingClientRect().top,"
            " document.querySelector('#federated').getBoundingClientRect().bottom]"
            ".map((y) => y + window.scrollY)"
        )
        page.screenshot(
            path=str(DOCS_KEYS_SCREENSHOT),
            clip={"x": 0, "y": top - 12, "width": 1280, "height": end - top + 36},
            full_page=True,
        )

    # --- the secret goes: the keys and the federated credential remain --------------------
    page.locator("#secrets tbody tr [data-delete-secret]").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete secret").click()
    expect(page.locator("#secrets-slot [role=status]")).to_contain_text("was deleted")
    expect(page.locator("#no-secrets")).to_be_visible()

    # --- the EC key: declined once, then deleted -------------------------------------------
    ec_row.locator("[data-delete-key]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(ec_kid)
    expect(dialog).to_contain_text("refused at once")
    shots(page, "key-delete-confirm", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(key_rows).to_have_count(2)
    ec_row.locator("[data-delete-key]").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete key").click()
    expect(keys_slot.locator("[role=status]")).to_have_text(f"The key {ec_kid} was deleted.")
    expect(key_rows).to_have_count(1)

    # --- the federated credential ---------------------------------------------------------
    github.locator("[data-delete-federated]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(GITHUB_ISSUER)
    dialog.get_by_role("button", name="Delete federated credential").click()
    expect(federated_slot.locator("[role=status]")).to_contain_text("was deleted")
    expect(page.locator("#no-federated")).to_be_visible()

    # --- the RSA key is the last working credential: refused, the server's reason ---------
    row.locator("[data-delete-key]").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete key").click()
    alert = keys_slot.locator("[role=alert]")
    expect(alert).to_have_text(
        f"The key {kid} was not deleted. This is the account's last live credential; "
        "add another one first, or delete the account."
    )
    alert_text = alert.inner_text().strip()
    assert alert_text.endswith(".") and "{" not in alert_text, alert_text
    expect(key_rows).to_have_count(1)
    shots(page, "last-key-refused")
    assert key_token(key, kid, client_id).status_code == 200

    # --- the audit log names the changes, never key material ------------------------------
    page.locator("#nav").get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-events tbody tr").first).to_be_visible()
    audit_text = page.locator("#audit-events").inner_text()
    for label in [
        "Key added",
        "Key deleted",
        "Federated credential added",
        "Federated credential deleted",
        kid,
        subject,
    ]:
        assert label in audit_text, label
    public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    assert public["n"][:24] not in audit_text
    shots(page, "audit-log-keys")

    assert problems == []
    assert time.monotonic() - started_at < BUDGET_SECONDS


@pytest.mark.e2e
def test_console_names_people_and_fits_a_phone(
    started_at: float, console_server: Server, browser_page: tuple[Any, list[str]], shots: Shots
) -> None:
    """The audit log names people by email and accounts by name (the IDs in the tooltips);
    its "By" filter takes an email; groups are the workspace's, ticked; at 390 px wide no
    page scrolls sideways; a member without service-accounts:manage is told why, with a
    link back to the page that refused them, which works once they are granted it."""
    from playwright.sync_api import expect

    server = console_server
    page, problems = browser_page
    base = server.base_url
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    api = f"/workspace/{WORKSPACE}/api/v1"
    ops, reader = "ops@acme.test", "reader@acme.test"
    # Another manager, who creates an account; a member in no group, with a password.
    cli_inproc(server.env, "user", "create", ops, "--workspace", WORKSPACE)
    cli_inproc(server.env, "group", "add-member", "workspace-admins", ops, "--workspace", WORKSPACE)
    made = subprocess.run(
        [str(CENTRALI), "user", "create", reader, "--workspace", WORKSPACE, "--password-stdin"],
        input=PASSWORD + "\n",
        env=server.env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    ops_token = cli_inproc(server.env, "user", "token", ops, "--workspace", WORKSPACE).strip()
    with server.client() as http:
        http.headers["Authorization"] = f"Bearer {ops_token}"
        by_ops = http.post(f"{api}/service-accounts", json={"name": "Ops exporter"}).json()
        members = {m["email"]: m["subject"] for m in http.get(f"{api}/members").json()["data"]}
    assert set(members) == {ADMIN, ops, reader}

    page.goto(f"{base}/console")
    sign_in(page)
    expect(page.get_by_role("heading", name="Service accounts")).to_be_visible()

    # --- groups: the workspace's, as choices; the default ones ticked on a new account -----
    page.get_by_role("link", name="New service account").click()
    choices = page.locator("#groups input[type=checkbox]")
    expect(choices).to_have_count(3)
    assert [c.get_attribute("value") for c in choices.all()] == [
        "api-users",
        "developers",
        "workspace-admins",
    ]
    expect(page.locator("#groups-api-users")).to_be_checked()
    expect(page.locator("label[for=groups-developers]")).to_have_attribute(
        "title", re.compile("records:write")
    )
    page.locator("#name").fill("Phone-made account")
    page.locator("#groups-api-users").uncheck()
    page.locator("#groups-developers").check()
    page.get_by_role("button", name="Create service account").click()
    expect(page.locator("#secret-panel")).to_be_visible()
    expect(page.locator("#details")).to_contain_text("developers")
    account_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#edit-groups-developers")).to_be_checked()
    expect(page.locator("#edit-groups-api-users")).not_to_be_checked()
    page.locator("#hide-secret").click()
    # Created by you: your email and subject in the tooltip.
    created_by = page.locator("#details .actor")
    expect(created_by).to_have_text("you")
    expect(created_by).to_have_attribute("title", f"{ADMIN} \u00b7 {members[ADMIN]}")
    page.locator("#edit-groups-developers").uncheck()
    page.locator("#groups-form button").click()
    expect(page.locator("#groups-form [role=status]")).to_contain_text("Groups saved.")
    expect(page.locator("#details")).to_contain_text("no groups")
    with server.client() as http:
        http.headers["Authorization"] = f"Bearer {ops_token}"
        assert http.get(f"{api}/service-accounts/{account_id}").json()["groups"] == []

    # --- the audit log: emails and names, the IDs on hover --------------------------------
    page.locator("#nav").get_by_role("link", name="Audit log").click()
    rows = page.locator("#audit-events tbody tr")
    # Ops joining workspace-admins (by the command line), ops' account, and mine (twice).
    expect(rows).to_have_count(4)
    expect(rows.last.locator(".by .actor")).to_have_text(re.compile(r"^command line \(.+\)$"))
    ops_row = page.locator("#audit-events tbody tr", has_text="Ops exporter")
    expect(ops_row.locator(".by .actor")).to_have_text(ops)
    expect(ops_row.locator(".by .actor")).to_have_attribute("title", members[ops])
    expect(ops_row.locator(".target a")).to_have_attribute("title", by_ops["clientId"])
    mine = rows.filter(has_text="Phone-made account")
    expect(mine).to_have_count(2)
    expect(mine.first.locator(".by")).to_have_text("you")
    audit_text = page.locator("#audit-events").inner_text()
    for subject in members.values():
        assert subject not in audit_text, subject
    assert by_ops["clientId"] not in audit_text
    shots(page, "audit-names")

    # --- "By" takes an email ---------------------------------------------------------------
    expect(page.locator("#filter-actor-people option")).to_have_count(3)
    page.locator("#filter-actor").fill(ops)
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Ops exporter")
    assert "actor=ops%40acme.test" in page.url
    expect(page.locator("#filter-actor")).to_have_value(ops)

    # --- a phone: nothing scrolls sideways; the tables scroll in their own box ------------
    page.set_viewport_size({"width": 390, "height": 844})
    wide = "() => document.documentElement.scrollWidth"
    page.locator("#audit-filters a", has_text="Clear").click()
    expect(rows).to_have_count(4)
    assert page.evaluate(wide) <= 390
    wrap = (
        "(s) => { const e = document.querySelector(s).closest('.table-wrap');"
        " return [e.scrollWidth, e.clientWidth]; }"
    )
    inner, box = page.evaluate(wrap, "#audit-events")
    assert inner > 390 and box <= 390, (inner, box)
    shots(page, "phone-audit")
    page.locator("#nav").get_by_role("link", name="Service accounts").click()
    expect(page.locator("#accounts tbody tr")).to_have_count(2)
    assert page.evaluate(wide) <= 390
    shots(page, "phone-accounts")
    page.get_by_role("link", name="Phone-made account").click()
    expect(page.locator("#details")).to_be_visible()
    expect(page.locator("#keys-section")).to_be_visible()
    assert page.evaluate(wide) <= 390
    shots(page, "phone-account")
    page.locator("a.back").click()
    page.get_by_role("link", name="New service account").click()
    expect(page.locator("#create-form")).to_be_visible()
    assert page.evaluate(wide) <= 390
    shots(page, "phone-create")
    page.set_viewport_size({"width": 1280, "height": 820})

    # --- a member without service-accounts:manage: why, and a way back -------------------
    page.locator("#sign-out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    page.goto(f"{base}/console/audit?action=service_account.created")
    page.locator("input[name=email]").fill(reader)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")
    expect(page.get_by_role("heading", name="You cannot see this page")).to_be_visible()
    expect(page.locator("#refused")).to_contain_text("service-accounts:manage")
    again = page.locator("#try-again")
    expect(again).to_have_attribute("href", "/console/audit?action=service_account.created")
    shots(page, "refused")
    cli_inproc(
        server.env, "group", "add-member", "workspace-admins", reader, "--workspace", WORKSPACE
    )
    again.click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(rows).to_have_count(2)
    assert page.url == f"{base}/console/audit?action=service_account.created"

    assert problems == []
    assert time.monotonic() - started_at < BUDGET_SECONDS


# --- without a browser: what the server hands out, and what the files may not do ----------


def test_console_paths_serve_one_locked_down_page(client: TestClient) -> None:
    for path in ["/console", "/console/", "/console/callback?code=c&state=s", "/console/audit"]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CONSOLE_CSP
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
    version = load_bundle().version
    assert f'src="/console/assets/{version}/app.js"' in page.text
    assert f'href="/console/assets/{version}/style.css"' in page.text
    assert "{{" not in page.text


def test_console_assets_are_cached_for_good_only_under_their_version(client: TestClient) -> None:
    version = load_bundle().version
    script = client.get(f"/console/assets/{version}/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "immutable" in script.headers["cache-control"]
    style = client.get(f"/console/assets/{version}/style.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    stale = client.get("/console/assets/0000000000000000/app.js")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    for missing in ["nope.js", "index.html"]:
        assert client.get(f"/console/assets/{version}/{missing}").status_code == 404, missing
    # Only the bundle's own files by name: a path that climbs out is just another page.
    climb = client.get(f"/console/assets/{version}/..%2F..%2Froutes%2Fconsole.py")
    assert climb.headers["content-type"] == "text/html; charset=utf-8"


def test_console_is_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


def test_console_files_hold_no_inline_code_and_keep_no_secret() -> None:
    html = (CONSOLE_FILES / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="{{assets}}/app.js">'
    ]
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.IGNORECASE)
    # The code, without its comments (which may name what the code must not do).
    scripts = {
        p.name: re.sub(r"^\s*//.*$|/\*\*.*?\*/", "", p.read_text(), flags=re.M)
        for p in CONSOLE_FILES.glob("*.js")
    }
    assert {"app.js", "auth.js", "api.js"} <= set(scripts)
    # The one address the code may hold: the GitHub Actions preset's issuer, a value the
    # form fills in (the console never fetches it: connect-src is 'self').
    preset = f"issuer: '{GITHUB_ISSUER}',"
    assert scripts["credentials.js"].count(preset) == 1
    scripts["credentials.js"] = scripts["credentials.js"].replace(preset, "")
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"localStorage|document\.cookie|https?://"
    )
    for name, text in scripts.items():
        assert not forbidden.search(text), (name, forbidden.search(text))
        # Web Storage holds only the PKCE verifier, state and nonce of a sign-in under way.
        if name != "auth.js":
            assert "sessionStorage" not in text, name
    assert "sessionStorage.setItem(\n    PENDING_KEY," in scripts["auth.js"]
    assert scripts["auth.js"].count("sessionStorage.setItem") == 1
