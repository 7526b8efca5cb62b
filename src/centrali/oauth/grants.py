"""Grant handlers keyed by ``grant_type``; client_credentials (RFC 6749 §4.4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from centrali.oauth.errors import InvalidScopeError, UnauthorizedClientError
from centrali.oauth.keys import KeySet
from centrali.oauth.ports import ClientRecord, Clock
from centrali.oauth.reuse import TokenReuseCache, reuse_key
from centrali.oauth.tokens import TokenSubject, issue_access_token


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """A successful token answer (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"

    def body(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    keys: KeySet
    issuer: str
    audience: str
    ttl: int
    reuse: TokenReuseCache | None = None


class Grant(Protocol):
    grant_type: ClassVar[str]

    def handle(
        self, client: ClientRecord, form: Mapping[str, str], config: IssuerConfig, clock: Clock
    ) -> TokenResponse: ...


def resolve_scope(requested: str | None, allowed: tuple[str, ...]) -> str:
    """The granted scope: all of the client's scopes, or the requested subset of them."""
    if requested is None:
        return " ".join(allowed)
    wanted = requested.split()
    if not wanted or any(s not in allowed for s in wanted):
        raise InvalidScopeError()
    return " ".join(dict.fromkeys(wanted))


class ClientCredentialsGrant:
    grant_type: ClassVar[str] = "client_credentials"

    def handle(
        self, client: ClientRecord, form: Mapping[str, str], config: IssuerConfig, clock: Clock
    ) -> TokenResponse:
        if self.grant_type not in client.grant_types:
            raise UnauthorizedClientError()
        scope = resolve_scope(form.get("scope"), client.scopes)
        now = clock.now()
        if now < client.tokens_valid_after:
            # Re-activated within the second of a revoke: a token minted now would carry
            # an iat that the revocation cut-off also kills. Wait out that second.
            clock.sleep(client.tokens_valid_after - now)
            now = clock.now()
        who = TokenSubject(
            subject=client.client_id,
            client_id=client.client_id,
            workspace=client.workspace,
            is_service_account=True,
            groups=client.groups,
            scope=scope,
        )
        reuse = config.reuse
        if reuse is not None:
            held = reuse.get(reuse_key(client, scope), now)
            if held is not None:
                remaining = held.issued_at + held.expires_in - int(now)
                return TokenResponse(access_token=held.token, expires_in=remaining, scope=scope)
        issued = issue_access_token(
            who,
            keys=config.keys,
            issuer=config.issuer,
            audience=config.audience,
            ttl=config.ttl,
            now=now,
        )
        if reuse is not None:
            reuse.put(reuse_key(client, scope), issued)
        return TokenResponse(access_token=issued.token, expires_in=issued.expires_in, scope=scope)


GRANTS: dict[str, Grant] = {g.grant_type: g for g in (ClientCredentialsGrant(),)}
