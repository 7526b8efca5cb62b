"""Dict-backed fakes for the Protocols of ``centrali.oauth.ports`` (and the public-client
lookup and the limiter the client authentication pipeline runs over)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Any

import jwt
import jwt.api_jwt
import pytest

from centrali.oauth.credentials import hash_secret
from centrali.oauth.limits import (
    Admission,
    LimitSettings,
    MemoryBucketStore,
    SlowDownError,
    TokenLimiter,
)
from centrali.oauth.ports import ClientRecord, StoredSecret
from centrali.oauth.user_ports import PublicClient

CLIENT_ID = "ci_0123456789abcdefghij"
SECRET = "sk_" + "0123456789abcdef" * 4
SECRET_ID = 1
NOW = 1_700_000_000.0
ISSUER = "https://auth.centrali.localhost"
AUDIENCE = "https://centrali.localhost"
IP = "203.0.113.7"

# What the fakes below did, in order, when they share one list: ("lookup", client_id),
# ("public-lookup", client_id), ("check", client_id), ("conclude", client_id, authenticated),
# ("refund", issuance taken).
Events = list[tuple[Any, ...]]


def stored(secret: str, secret_id: int, expires_at_ms: int | None = None) -> StoredSecret:
    """How the store holds ``secret``: its id, its hash and its expiry."""
    return StoredSecret(id=secret_id, hash=hash_secret(secret), expires_at_ms=expires_at_ms)


def make_client(**overrides: Any) -> ClientRecord:
    """An active client_credentials client of ``acme-corp`` whose one secret is ``SECRET``
    (id ``SECRET_ID``, never expires)."""
    base = ClientRecord(
        client_id=CLIENT_ID,
        secrets=(stored(SECRET, SECRET_ID),),
        active=True,
        workspace="acme-corp",
        grant_types=("client_credentials",),
        scopes=("openid",),
        groups=("api-users",),
    )
    return replace(base, **overrides)


class FakeClientStore:
    """An async ``ClientStore`` over a dict; remembers every id it was asked for."""

    def __init__(self, clients: Iterable[ClientRecord] = (), events: Events | None = None) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.lookups: list[str] = []
        self.events = events if events is not None else []

    async def find_client(self, client_id: str) -> ClientRecord | None:
        self.lookups.append(client_id)
        self.events.append(("lookup", client_id))
        return self.clients.get(client_id)


class FakePublicClients:
    """An async ``PublicClientLookup`` over a dict; remembers every id it was asked for."""

    def __init__(self, clients: Iterable[PublicClient] = (), events: Events | None = None) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.lookups: list[str] = []
        self.events = events if events is not None else []

    async def find_public_client(self, client_id: str) -> PublicClient | None:
        self.lookups.append(client_id)
        self.events.append(("public-lookup", client_id))
        return self.clients.get(client_id)


class FakeFailureLog:
    """A ``FailureLog`` that keeps every (client_id, reason) it was told."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def record(self, client_id: str, reason: str) -> None:
        self.records.append((client_id, reason))


class FakeCredentialUsage:
    """A ``CredentialUsage`` that keeps every (client_id, credential id, at) it was told,
    and the kinds in ``kinds``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, float]] = []
        self.kinds: list[str] = []

    def record(self, client_id: str, kind: str, credential_id: int, at: float) -> None:
        self.records.append((client_id, credential_id, at))
        self.kinds.append(kind)


class RecordingLimiter(TokenLimiter):
    """The real limiter over in-process buckets (an issuance budget by default, so that an
    authenticated confidential client holds an issuance token), noting each call in
    ``events``; ``refuse_check`` / ``refuse_conclude`` make that step raise SlowDownError."""

    def __init__(
        self,
        events: Events | None = None,
        *,
        settings: LimitSettings | None = None,
        refuse_check: bool = False,
        refuse_conclude: bool = False,
    ) -> None:
        super().__init__(settings or LimitSettings(issuance_per_client=10), MemoryBucketStore())
        self.events = events if events is not None else []
        self.refuse_check = refuse_check
        self.refuse_conclude = refuse_conclude
        self.refunds: list[Admission] = []

    async def check(
        self, ip: str, client_id: str | None, now: float, *, public: bool = False
    ) -> None:
        self.events.append(("check", client_id))
        if self.refuse_check:
            raise SlowDownError(7)
        await super().check(ip, client_id, now, public=public)

    async def conclude(
        self,
        ip: str,
        client_id: str | None,
        authenticated: bool,
        now: float,
        *,
        public: bool = False,
    ) -> Admission:
        self.events.append(("conclude", client_id, authenticated))
        if self.refuse_conclude:
            raise SlowDownError(7)
        return await super().conclude(ip, client_id, authenticated, now, public=public)

    async def refund(self, admission: Admission, now: float) -> None:
        self.events.append(("refund", bool(admission.issuance)))
        self.refunds.append(admission)
        await super().refund(admission, now)


class FakeClock:
    """A ``Clock`` that stands still (set ``current`` to move it)."""

    def __init__(self, now: float = NOW) -> None:
        self.current = now

    def now(self) -> float:
        return self.current


def pyjwt_decode_at(
    token: str, public_key: Any, alg: str, now: float, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """PyJWT's own ``jwt.decode`` (signature, iss, aud, iat, exp; no leeway) with its clock
    frozen at ``now``: what a third-party verifier without leeway says at that moment."""

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> _Frozen:
            return cls.fromtimestamp(now, tz or UTC)

    monkeypatch.setattr(jwt.api_jwt, "datetime", _Frozen)
    claims: dict[str, Any] = jwt.decode(
        token,
        public_key,
        algorithms=[alg],
        issuer=ISSUER,
        audience=AUDIENCE,
        options={"require": ["iat", "exp"], "verify_iat": True, "verify_exp": True},
        leeway=0,
    )
    return claims
