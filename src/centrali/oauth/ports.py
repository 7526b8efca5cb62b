"""What the protocol core needs from the outside world, as Protocols and plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """One of a client's secrets as the token endpoint sees it: its id, its one-way hash and
    when it stops working (epoch milliseconds; None: never)."""

    id: int
    hash: str
    expires_at_ms: int | None = None

    def live(self, now: float) -> bool:
        return self.expires_at_ms is None or now * 1000 < self.expires_at_ms


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One of a client's public keys for ``private_key_jwt`` (RFC 7523 §2.2): its public JWK
    (no private member), the one algorithm it verifies, when it stops working (epoch ms)."""

    id: int
    kid: str
    alg: str
    jwk: Mapping[str, Any]
    expires_at_ms: int | None = None

    def live(self, now: float) -> bool:
        return self.expires_at_ms is None or now * 1000 < self.expires_at_ms


@dataclass(frozen=True, slots=True)
class FederatedCredential:
    """A workload identity the client trusts: tokens of ``issuer`` about ``subject`` whose
    audience holds ``audience`` stand for the client, with no stored secret."""

    id: int
    issuer: str
    subject: str
    audience: str
    expires_at_ms: int | None = None

    def live(self, now: float) -> bool:
        return self.expires_at_ms is None or now * 1000 < self.expires_at_ms


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A confidential client as the token endpoint sees it."""

    client_id: str
    secrets: tuple[StoredSecret, ...]
    active: bool
    workspace: str
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    # Tokens whose iat (epoch ms) is at or below this are dead (the check for tokens without
    # an epoch claim, issued before there was one).
    tokens_cutoff_ms: int = 0
    # Tokens carry the epoch they were issued at; a revoke moves it on (tokens.revoked_by_account).
    tokens_epoch: int = 0
    keys: tuple[ClientKey, ...] = ()
    federated: tuple[FederatedCredential, ...] = ()


class ClientStore(Protocol):
    async def find_client(self, client_id: str) -> ClientRecord | None:
        """The confidential client with this id, or None (the store's adapter may gather
        the lookups of many requests into one statement)."""
        ...


class FailureLog(Protocol):
    def record(self, client_id: str, reason: str) -> None:
        """Count one refused request of ``client_id`` (as sent) for ``reason``; no I/O."""
        ...


# Credential kinds (CredentialUsage, Authenticated.credential).
SECRET = "secret"
KEY = "key"
FEDERATED = "federated"


class CredentialUsage(Protocol):
    def record(self, client_id: str, kind: str, credential_id: int, at: float) -> None:
        """Note that the credential (``kind``: SECRET, KEY or FEDERATED, and its id) was
        used at ``at``; no I/O (flushed later)."""
        ...


class Clock(Protocol):
    def now(self) -> float: ...
