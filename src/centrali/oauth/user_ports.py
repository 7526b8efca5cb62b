"""What human sign-in needs from the outside world: public clients, authorization codes and
the refresh-token chains they start (RFC 6749 §4.1, §6; RFC 9700 §2.2.2, §4.14).

A chain is headed by its authorization code: the code's grant (user, workspace, client,
scope, sign-in time) is shared by every refresh token rotated from it, and revoking the
chain revokes them all. Stores find values by their SHA-256 only (``opaque_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PublicClient:
    """A client without a secret (a browser or native app); it proves itself with PKCE."""

    client_id: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    name: str = ""


class PublicClientLookup(Protocol):
    async def find_public_client(self, client_id: str) -> PublicClient | None:
        """The registered (or built-in) public client with this id, or None."""
        ...


class PublicClientStore(Protocol):
    def find_public_client(self, client_id: str) -> PublicClient | None:
        """The registered (or built-in) public client with this id, or None."""
        ...


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An authorization code as issued; times in epoch seconds."""

    chain_id: int
    client_id: str
    subject: str
    workspace: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    auth_time: int
    expires_at: float
    consumed: bool
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """A refresh token and the grant of its chain."""

    chain_id: int
    client_id: str
    subject: str
    workspace: str
    scope: str
    auth_time: int
    expires_at: float
    # Presented before (rotated away), or its chain revoked: presenting it is a replay.
    spent: bool
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class UserStanding:
    """A user as a member of a workspace now: what a new token for them carries."""

    subject: str
    email: str
    workspace: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewRefreshToken:
    """A refresh token to store (its digest), and the access token issued with it."""

    token_hash: str
    scope: str
    expires_at: float
    access_jti: str
    access_expires_at: int


class UserGrantStore(PublicClientStore, Protocol):
    """Each method is one transaction."""

    def find_code(self, code_hash: str) -> CodeRecord | None: ...

    def redeem_code(self, code_hash: str, refresh: NewRefreshToken, now: float) -> bool:
        """Mark the code consumed and store the chain's first refresh token, atomically.
        False when it was consumed meanwhile: then the chain is revoked, nothing stored."""
        ...

    def find_refresh_token(self, token_hash: str) -> RefreshRecord | None: ...

    def rotate_refresh_token(self, token_hash: str, refresh: NewRefreshToken, now: float) -> bool:
        """Mark the token used and store its successor in the same chain, atomically.
        False when it was used (or its chain revoked) meanwhile: then the chain is revoked."""
        ...

    def revoke_chain(self, chain_id: int, now: float) -> None:
        """Revoke every refresh token of the chain, and the access tokens issued with them."""
        ...

    def user_standing(self, subject: str, workspace: str) -> UserStanding | None:
        """The user's email and groups in ``workspace``; None when no longer a member."""
        ...


@dataclass(frozen=True, slots=True)
class UserGrantContext:
    """What the user grants need besides the issuer's keys: the store and the lifetimes."""

    store: UserGrantStore
    access_ttl: int
    refresh_ttl: int
