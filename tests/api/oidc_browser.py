"""Drive the provider's sign-in like a browser and a public client would: authorize, read the
form's hidden inputs, post it, follow nothing automatically, trade the code."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
from fastapi.testclient import TestClient

from tests.conftest import ISSUER

CONSOLE = "centrali-console"
CALLBACK = f"{ISSUER}/console/callback"
PASSWORD = "correct horse battery staple"

_INPUT = re.compile(r"<input\b[^>]*>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form_inputs(page: str) -> dict[str, dict[str, str]]:
    """Every <input> of a page by name, with its attributes (values unescaped)."""
    found = {}
    for tag in _INPUT.findall(page):
        attrs = {k: html.unescape(v) for k, v in _ATTR.findall(tag)}
        if "name" in attrs:
            found[attrs["name"]] = attrs
    return found


def hidden_fields(page: str) -> dict[str, str]:
    return {
        name: attrs.get("value", "")
        for name, attrs in form_inputs(page).items()
        if attrs.get("type") == "hidden"
    }


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Flow:
    """One authorization request of a client, its PKCE pair, state and nonce."""

    client: TestClient
    client_id: str = CONSOLE
    redirect_uri: str = CALLBACK
    verifier: str = ""
    challenge: str = ""
    state: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        if not self.verifier:
            self.verifier, self.challenge = pkce_pair()

    def params(self, **overrides: str | None) -> dict[str, str]:
        base: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def authorize(self, **overrides: str | None) -> httpx.Response:
        return self.client.get(
            "/oidc/authorize", params=self.params(**overrides), follow_redirects=False
        )

    def login(self, page: httpx.Response, email: str, password: str = PASSWORD) -> httpx.Response:
        assert page.status_code in (200, 429), page.text
        data = {**hidden_fields(page.text), "email": email, "password": password}
        return self.client.post("/oidc/login", data=data, follow_redirects=False)

    def code_of(self, answer: httpx.Response) -> str:
        """The code of a successful answer, after checking where it goes and what it says."""
        assert answer.status_code == 303, answer.text
        location = answer.headers["location"]
        joiner = "&" if "?" in self.redirect_uri else "?"
        assert location.startswith(self.redirect_uri + joiner), location
        query = query_of(location)
        assert query["state"] == self.state
        assert query["iss"] == ISSUER
        assert "error" not in query, query
        return query["code"]

    def sign_in(self, email: str, password: str = PASSWORD, **overrides: str | None) -> str:
        """authorize → login form → code."""
        page = self.authorize(**overrides)
        if page.status_code == 303:  # already signed in
            return self.code_of(page)
        return self.code_of(self.login(page, email, password))

    def exchange(self, code: str, **overrides: str | None) -> httpx.Response:
        data: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "code_verifier": self.verifier,
        }
        data.update(overrides)
        return self.client.post("/oidc/token", data={k: v for k, v in data.items() if v})

    def tokens(self, email: str, password: str = PASSWORD, **overrides: str | None) -> Any:
        r = self.exchange(self.sign_in(email, password, **overrides))
        assert r.status_code == 200, r.text
        return r.json()

    def refresh(self, refresh_token: str, **extra: str) -> httpx.Response:
        data = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.client_id,
            **extra,
        }
        return self.client.post("/oidc/token", data=data)
