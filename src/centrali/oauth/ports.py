"""What the protocol core needs from the outside world, as Protocols and plain values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A confidential client as the token endpoint sees it."""

    client_id: str
    secret_hash: str | None
    active: bool
    workspace: str
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    # Tokens with iat < this (epoch seconds) are dead; new ones must not be minted before it.
    tokens_valid_after: int = 0


class ClientStore(Protocol):
    def find_client(self, client_id: str) -> ClientRecord | None:
        """The client with this id, or None; one indexed lookup."""
        ...


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...
