"""Dict-backed fakes for the Protocols of ``centrali.oauth.ports``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from centrali.oauth.credentials import hash_secret
from centrali.oauth.ports import ClientRecord

CLIENT_ID = "ci_0123456789abcdefghij"
SECRET = "sk_" + "0123456789abcdef" * 4
NOW = 1_700_000_000.0
ISSUER = "https://auth.centrali.localhost"
AUDIENCE = "https://centrali.localhost"


def make_client(**overrides: Any) -> ClientRecord:
    """An active client_credentials client of ``acme-corp`` whose secret is ``SECRET``."""
    base = ClientRecord(
        client_id=CLIENT_ID,
        secret_hash=hash_secret(SECRET),
        active=True,
        workspace="acme-corp",
        grant_types=("client_credentials",),
        scopes=("openid",),
        groups=("api-users",),
    )
    return replace(base, **overrides)


class FakeClientStore:
    """A ``ClientStore`` over a dict; remembers every id it was asked for."""

    def __init__(self, clients: Iterable[ClientRecord] = ()) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.lookups: list[str] = []

    def find_client(self, client_id: str) -> ClientRecord | None:
        self.lookups.append(client_id)
        return self.clients.get(client_id)


class FakeClock:
    """A ``Clock`` that stands still until slept; records every sleep."""

    def __init__(self, now: float = NOW) -> None:
        self.current = now
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += max(0.0, seconds)
