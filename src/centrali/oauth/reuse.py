"""Optional token reuse (``CENTRALI_TOKEN_REUSE_SECONDS``): a client asking again within the
window gets the token it already holds (same ``jti``, ``expires_in`` counting down) instead of
a new signature.

The key holds everything that must change the answer: the client, the scope, and the
client's credential state (its secrets, revocation cut-off, workspace, groups), so a rotation,
a revoke/re-activate or a group change is never answered from memory. Per process, bounded.

A token revoked by itself (``POST /oidc/revoke``) changes nothing in the key, and the revoke
may have reached another worker or instance: an answer from memory says so
(``TokenResponse.reused_jti``), the token endpoint asks the store's revoked tokens (shared by
every instance; batched, off the event loop) and, for a revoked one, ``forget``s it and asks
the grant again, which then signs a new token.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from centrali.oauth.ports import ClientRecord
from centrali.oauth.tokens import IssuedToken

ReuseKey = tuple[str, str, tuple[int, ...], int, str, tuple[str, ...]]


def reuse_key(client: ClientRecord, scope: str) -> ReuseKey:
    return (
        client.client_id,
        scope,
        tuple(s.id for s in client.secrets),
        client.tokens_epoch,
        client.workspace,
        client.groups,
    )


@dataclass
class TokenReuseCache:
    window: int
    max_entries: int = 10_000

    def __post_init__(self) -> None:
        self._tokens: OrderedDict[ReuseKey, IssuedToken] = OrderedDict()

    def get(self, key: ReuseKey, now: float) -> IssuedToken | None:
        """The held token while it is younger than the window and not about to expire."""
        issued = self._tokens.get(key)
        if issued is None:
            return None
        age = now - issued.issued_at
        if age >= self.window or issued.issued_at + issued.expires_in - now < 1:
            del self._tokens[key]
            return None
        return issued

    def forget(self, jti: str) -> None:
        """Drop the held token with this ``jti`` (it was revoked)."""
        for key, issued in list(self._tokens.items()):
            if issued.jti == jti:
                del self._tokens[key]

    def put(self, key: ReuseKey, issued: IssuedToken) -> None:
        self._tokens[key] = issued
        self._tokens.move_to_end(key)
        while len(self._tokens) > self.max_entries:
            self._tokens.popitem(last=False)
