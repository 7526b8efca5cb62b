"""What the protocol core needs from the outside world, as Protocols and plain values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
class ClientRecord:
    """A confidential client as the token endpoint sees it."""

    client_id: str
    secrets: tuple[StoredSecret, ...]
    active: bool
    workspace: str
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    # Tokens whose iat (epoch ms) is at or below this are dead; new ones are minted after it.
    tokens_cutoff_ms: int = 0


class ClientStore(Protocol):
    async def find_client(self, client_id: str) -> ClientRecord | None:
        """The confidential client with this id, or None (the store's adapter may gather
        the lookups of many requests into one statement)."""
        ...


class FailureLog(Protocol):
    def record(self, client_id: str, reason: str) -> None:
        """Count one refused request of ``client_id`` (as sent) for ``reason``; no I/O."""
        ...


class CredentialUsage(Protocol):
    def record(self, client_id: str, secret_id: int, at: float) -> None:
        """Note that the credential was used at ``at``; no I/O (flushed later)."""
        ...


class Clock(Protocol):
    def now(self) -> float: ...
